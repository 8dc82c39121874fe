"""`launch render` as a transaction: lock, crypto never moved, signals, sweep, modes."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import stat
from pathlib import Path

import pytest
from launch_testlib import EXAMPLES, example, render, write_spec

from fabkit.clikit import run_main
from fabkit.errors import InputError
from launch.cli import cli
from launch.render import bundle, cloudinit


def _ca(out: Path) -> bytes:
    found = sorted((out / "crypto/peerOrganizations/org1.example.com/ca").glob("*"))
    return b"".join(p.read_bytes() for p in found)


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_a_second_render_into_the_same_out_fails_fast_with_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "b"
    render("local", out)
    before = _ca(out)
    # Another render holds the lock (the same flock a concurrent `launch render` takes).
    fd = os.open(tmp_path / ".b.lock", os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b"4242\n")
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        code = run_main(cli, ["render", str(EXAMPLES / "local.yaml"), "--out", str(out)])
        assert code == 2
        err = capsys.readouterr().err
        assert "another `launch render` is writing this bundle (pid 4242" in err
    finally:
        os.close(fd)
    assert _ca(out) == before
    render("local", out)  # the lock is free again
    assert _ca(out) == before and _leftovers(tmp_path) == []


@pytest.mark.parametrize("crypto_changes", [True, False])
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                           (signal.SIGINT, 130)])
def test_a_signal_during_a_rerender_keeps_the_previous_bundle(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: int, code: int,
        crypto_changes: bool) -> None:
    out = tmp_path / "b"
    render("local", out)
    before, plan = _ca(out), (out / "plan.json").read_bytes()
    doc = example("local")
    if crypto_changes:  # a new user: the crypto tree is hard-linked and brought up to date
        doc["organisations"][0]["users"] = 2
    spec_path = write_spec(tmp_path, doc)
    real = cloudinit.fit
    seen = {}

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen["crypto still in place"] = (out / "crypto").is_dir() and _ca(out) == before
        os.kill(os.getpid(), sig)
        signal.sigtimedwait([], 0)
        raise AssertionError("not interrupted")

    monkeypatch.setattr(cloudinit, "fit", interrupted)
    assert run_main(cli, ["render", str(spec_path), "--out", str(out)]) == code
    assert seen == {"crypto still in place": True}
    assert _ca(out) == before and (out / "plan.json").read_bytes() == plan
    assert _leftovers(tmp_path) == []
    monkeypatch.setattr(cloudinit, "fit", real)
    assert run_main(cli, ["render", str(spec_path), "--out", str(out)]) == 0
    assert _ca(out) == before  # the next render reuses the CAs, it does not issue new ones
    users = out / "crypto/peerOrganizations/org1.example.com/users"
    assert (users / "User2@org1.example.com").is_dir() == crypto_changes


def test_an_unchanged_crypto_tree_is_not_copied(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "b"
    render("local", out)
    key = next((out / "crypto").rglob("priv_sk"))
    inode = key.stat().st_ino
    monkeypatch.setattr(bundle, "_link_tree", lambda *a: pytest.fail("linked"))
    render("local", out)
    assert next((out / "crypto").rglob("priv_sk")).stat().st_ino == inode
    assert _leftovers(tmp_path) == []


def test_a_swap_killed_after_the_crypto_joined_is_completed(tmp_path: Path) -> None:
    """SIGKILL between the two renames of the unchanged-crypto swap: out has no crypto, the
    complete new bundle waits in its staging directory; the next render completes it."""
    out = tmp_path / "b"
    render("local", out)
    before = _ca(out)
    dead = tmp_path / ".b.render-999999"
    shutil.copytree(out, dead, copy_function=os.link)
    shutil.rmtree(out / "crypto")
    render("local", out)
    assert _ca(out) == before and _leftovers(tmp_path) == []


def test_staging_of_a_dead_render_is_swept_or_restored(tmp_path: Path) -> None:
    out = tmp_path / "b"
    render("local", out)
    before = _ca(out)
    dead = tmp_path / ".b.render-999999"
    (dead / "crypto").mkdir(parents=True)
    (dead / "crypto" / "half").write_text("x")
    render("local", out)
    assert _leftovers(tmp_path) == [] and _ca(out) == before
    # killed (SIGKILL) between the two renames of a swap: out is missing, the old tree waits
    os.rename(out, tmp_path / ".b.old-999999")
    render("local", out)
    assert _ca(out) == before and _leftovers(tmp_path) == []


def test_modes_are_explicit_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        out = tmp_path / "b"
        render("local", out)
        render("local", out)  # the re-render (hard-linked crypto) too
    finally:
        os.umask(old)
    for dirpath, dirnames, filenames in os.walk(out):
        for d in dirnames:
            assert stat.S_IMODE(os.stat(os.path.join(dirpath, d)).st_mode) == 0o755, d
        for f in filenames:
            p = os.path.join(dirpath, f)
            mode = stat.S_IMODE(os.stat(p).st_mode)
            secret = f.endswith(("_sk", ".key")) or f in ("user-data", "grafana.env", "priv_sk") \
                or f.startswith("networkconfig") or "keystore" in p
            assert mode == (0o600 if secret else 0o644), (p, oct(mode))
    assert stat.S_IMODE(out.stat().st_mode) == 0o755


def test_ssh_public_key_is_not_world_writable_and_not_trusted(tmp_path: Path) -> None:
    from launch.machines import ssh

    old = os.umask(0)
    try:
        pair = ssh.ensure_keypair(tmp_path / "ssh", "c")
    finally:
        os.umask(old)
    pub = tmp_path / "ssh" / "id_ed25519.pub"
    assert stat.S_IMODE(pub.stat().st_mode) == 0o644
    assert stat.S_IMODE(pair.private_key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ssh").stat().st_mode) == 0o700
    pub.write_text("ssh-ed25519 AAAAattacker evil\n")  # swapped by someone else
    assert ssh.ensure_keypair(tmp_path / "ssh", "c") == pair
    assert pub.read_text() == pair.public_key + "\n"


def test_an_unusable_out_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "b"
    assert run_main(cli, ["render", str(EXAMPLES / "local.yaml"), "--out", str(out)]) == 2
    assert "--out: expected a directory that can be created" in capsys.readouterr().err


def test_an_edited_grafana_env_is_an_input_error(tmp_path: Path) -> None:
    out = tmp_path / "b"
    render("local", out)
    (out / "monitor" / "grafana.env").write_bytes(b"GF_SECURITY_ADMIN_PASSWORD=\xff\xfe\n")
    with pytest.raises(InputError, match="grafana.env: Grafana admin file is not UTF-8"):
        render("local", out)
    (out / "monitor" / "grafana.env").write_text("GF_SECURITY_ADMIN_PASSWORD=a b$(x)\n")
    with pytest.raises(InputError, match="GF_SECURITY_ADMIN_PASSWORD: expected a password"):
        render("local", out)
    assert _leftovers(tmp_path) == []
