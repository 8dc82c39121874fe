"""bake.build: skip unchanged before anything runs; keys; manifest; machine-readable parsing."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from bake import build, manifest, packer, profiles
from bake.profiles import Provider
from fabkit import runner
from fabkit.errors import InputError


def _targets(root: Path, build_dir: Path, provider: Provider = Provider.QEMU,
             vars_: tuple[str, ...] = ()) -> list[build.Target]:
    return build.plan(root, build_dir, provider, [],
                      profiles.make_overrides(None, list(vars_), env={}))


def _fake_built(targets: list[build.Target], build_dir: Path) -> None:
    """A manifest + artifact as a finished build leaves them."""
    for t in targets:
        art = build_dir / "images" / f"{t.name}.qcow2"
        art.parent.mkdir(parents=True, exist_ok=True)
        art.write_bytes(b"qcow2")
        manifest.record(build_dir, t.spec.name, t.provider.value, manifest.Entry(
            name=t.name, fingerprint=t.fingerprint.digest,
            artifact={"path": str(art), "sha256": "00"}, versions=t.spec.versions_dict,
            built_at="2026-01-01T00:00:00+00:00", packer_version="1.6.6"))


class _Recorder:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, msg: str) -> None:
        self.lines.append(msg)


def test_second_build_runs_no_subprocess(fake_repo: Path, build_dir: Path) -> None:
    # The runner's door is closed in unit tests: any packer call would raise.
    targets = _targets(fake_repo, build_dir)
    _fake_built(targets, build_dir)
    info = build.PackerInfo()
    out = _Recorder()
    outcomes = build.build_targets(_targets(fake_repo, build_dir), fake_repo, build_dir, info,
                                   out)
    assert [o.action for o in outcomes] == ["skipped"] * 3
    assert info._version is None                      # packer was not even asked its version
    assert all("up to date, skipped" in line for line in out.lines)


def test_the_door_is_really_closed(fake_repo: Path, build_dir: Path) -> None:
    # The proof above means something only if a needed build would hit the runner.
    targets = _targets(fake_repo, build_dir)
    _fake_built(targets, build_dir)
    (fake_repo / "packer/scripts/monitor/monitor.sh").write_text("#!/bin/bash\necho v2\n")
    with pytest.raises(runner.SubprocessForbidden, match="packer version"):
        build.build_targets(_targets(fake_repo, build_dir), fake_repo, build_dir,
                            build.PackerInfo(), _Recorder())
    assert not (build_dir / "keys").exists() or not any((build_dir / "keys").iterdir())


def test_up_to_date_reasons(fake_repo: Path, build_dir: Path) -> None:
    targets = _targets(fake_repo, build_dir)
    t = targets[0]
    assert build.up_to_date(t, {}, print) == (False, "not in the manifest")
    _fake_built(targets, build_dir)
    entries = manifest.load(build_dir)
    assert build.up_to_date(t, entries, print) == (True, "up to date")
    Path(entries[t.spec.name]["qemu"].artifact["path"]).unlink()
    ok, why = build.up_to_date(t, entries, print)
    assert not ok and "missing" in why
    other = _targets(fake_repo, build_dir, vars_=("base_image=/b.qcow2",
                                                  "base_image_checksum=" + "ee" * 32))[0]
    ok, why = build.up_to_date(other, entries, print)
    assert not ok and why.startswith("inputs changed")


def test_cloud_without_sdk_trusts_manifest(fake_repo: Path, build_dir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_sdk(name, *a, **kw):  # type: ignore[no-untyped-def]
        if name in ("boto3", "openstack"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_sdk)
    t = _targets(fake_repo, build_dir, Provider.AWS)[0]
    manifest.record(build_dir, t.spec.name, "aws", manifest.Entry(
        name=t.name, fingerprint=t.fingerprint.digest,
        artifact={"ami": "ami-0123", "region": "us-east-1"}))
    notes = _Recorder()
    ok, why = build.up_to_date(t, manifest.load(build_dir), notes)
    assert ok and why == "up to date (manifest trusted)"
    assert "boto3 is not installed" in notes.lines[0]


def test_qemu_base_from_base_image_json_or_error(fake_repo: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-build"
    with pytest.raises(Exception, match="run `bake base-image` first"):
        _targets(fake_repo, empty)
    assert not empty.exists()
    with pytest.raises(Exception, match="base_image_checksum"):
        _targets(fake_repo, empty, vars_=("base_image=/x.qcow2",))


def test_build_keys_are_private_and_removed(fake_repo: Path, build_dir: Path) -> None:
    t = _targets(fake_repo, build_dir)[0]
    with build.build_keys(t, build_dir) as p:
        key = Path(p["ssh_key"])
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert key.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
        seed = Path(p["user_data"]).read_text()
        assert seed.startswith("#cloud-config\n")
        doc = yaml.safe_load(seed)
        user = doc["users"][0]
        assert user["name"] == "fabperf-build" and user["sudo"] == "ALL=(ALL) NOPASSWD:ALL"
        assert user["ssh_authorized_keys"][0].startswith("ssh-ed25519 ")
        assert "instance-id:" in Path(p["meta_data"]).read_text()
    assert not Path(p["key_dir"]).exists() and not (build_dir / "keys").exists()


def test_concurrent_bake_of_the_same_target_is_refused(fake_repo: Path,
                                                        build_dir: Path) -> None:
    t = _targets(fake_repo, build_dir)[0]
    with build.build_keys(t, build_dir) as p, pytest.raises(Exception,
                                                            match="another bake of"):
        with build.build_keys(t, build_dir):
            pass
    assert not Path(p["key_dir"]).exists()
    with build.build_keys(t, build_dir):     # released afterwards
        pass


def test_accelerator_heuristic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(build.KVM_ENV, raising=False)
    assert build.resolve_accelerator("auto") == "tcg"
    assert build.resolve_accelerator("kvm") == "kvm"
    monkeypatch.setenv(build.KVM_ENV, "1")
    monkeypatch.setattr(build.os, "access", lambda *_: True)
    assert build.resolve_accelerator("auto") == "kvm"


def test_goss_binary_needs_the_pinned_checksum(build_dir: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(build.GOSS_BINARY_ENV, raising=False)   # CI exports one
    q = profiles.resolve(Provider.QEMU, profiles.make_overrides(None, [], env={}))
    cached = build_dir / "cache" / "goss" / f"goss-{build.GOSS_VERSION}-linux-amd64"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not goss")
    assert build.goss_binary(q, build_dir) is None     # wrong sha256: host-side bake.goss
    own = tmp_path / "goss"
    own.write_bytes(b"x")
    q2 = profiles.resolve(Provider.QEMU, profiles.make_overrides(None, [f"goss_binary={own}"],
                                                                  env={}))
    assert build.goss_binary(q2, build_dir) == str(own)
    # $GOSS_BINARY, as .ci/run and `make GOSS_BINARY=...` pass it
    monkeypatch.setenv(build.GOSS_BINARY_ENV, str(own))
    assert build.goss_binary(q, build_dir) == str(own)
    monkeypatch.setenv(build.GOSS_BINARY_ENV, str(tmp_path / "missing"))
    with pytest.raises(InputError, match="goss_binary"):
        build.goss_binary(q, build_dir)


def test_manifest_roundtrip_is_atomic(tmp_path: Path) -> None:
    e = manifest.Entry(name="fabperf-monitor-abc", fingerprint="abc",
                       artifact={"ami": "ami-1", "region": "eu-west-1"})
    manifest.record(tmp_path, "monitor", "aws", e)
    manifest.record(tmp_path, "monitor", "qemu", e)
    assert manifest.load(tmp_path)["monitor"]["aws"] == e
    assert sorted(json.loads((tmp_path / "manifest.json").read_text())["images"]["monitor"]) \
        == ["aws", "qemu"]
    # no temp file left (the lock file stays: removing it would race with a waiter)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".manifest.lock", "manifest.json"]
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(InputError, match="corrupt bake manifest: .*not valid JSON"):
        manifest.load(tmp_path)


@pytest.mark.parametrize(("text", "message"), [
    ('{"images": []}', "images: expected a mapping"),
    ('{"images": {"monitor": {"qemu": {"name": "x"}}}}',
     "images.monitor.qemu.fingerprint: expected a string (required field)"),
    ('{"images": {"monitor": {"qemu": {"name": "x", "fingerprint": "f", "artifact": '
     '{"path": 1}}}}}', "images.monitor.qemu.artifact.path: expected a string"),
    ('{"images": {}, "images": {}}', "duplicate key 'images'"),
    ("[" * 200 + "]" * 200, "nesting deeper than 64"),
])
def test_corrupt_manifest_is_a_clear_input_error(tmp_path: Path, text: str,
                                                 message: str) -> None:
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(InputError, match="corrupt bake manifest") as exc:
        manifest.load(tmp_path)
    assert message in str(exc.value) and "delete it" in str(exc.value)


def test_concurrent_records_keep_every_entry(tmp_path: Path, monkeypatch) -> None:
    """Two bakes record at once: the lock serialises the read-modify-write."""
    import threading

    real_load = manifest.load
    barrier = threading.Barrier(2, timeout=2)

    def slow_load(build_dir: Path):  # both readers meet here unless the lock keeps one out
        entries = real_load(build_dir)
        try:
            barrier.wait(timeout=0.3)
        except threading.BrokenBarrierError:
            pass
        return entries

    monkeypatch.setattr(manifest, "load", slow_load)
    # Threads of one process: flock is per open file description, so it excludes them too.
    threads = [threading.Thread(target=manifest.record, args=(
        tmp_path, image, "qemu", manifest.Entry(name=image, fingerprint="f",
                                                artifact={"path": "p"})))
        for image in ("monitor", "fabric-node")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(real_load(tmp_path)) == ["fabric-node", "monitor"]


def test_machine_readable_parsing() -> None:
    seen: list[str] = []
    w = packer.BuildWatcher(seen.append, [], [])
    for raw in [
        "1795857714,,ui,say,==> qemu.monitor: Running local shell script: /tmp/packer-shell1",
        "1795857714,,ui,message,    qemu.monitor: a%!(PACKER_COMMA) b",
        "1795857714,,ui,error,==> qemu.monitor: boom",
        "1795857714,amazon-ebs.monitor,artifact,0,builder-id,mitchellh.amazonebs",
        "1795857714,amazon-ebs.monitor,artifact,0,id,eu-west-1:ami-0abc%!(PACKER_COMMA)"
        "us-east-1:ami-0def",
        "not a machine-readable line",
    ]:
        w(raw)
    assert seen == ["==> qemu.monitor: Running local shell script: /tmp/packer-shell1",
                    "qemu.monitor: a, b", "==> qemu.monitor: boom"]
    assert w.artifact_ids == ["eu-west-1:ami-0abc,us-east-1:ami-0def"]
    assert w.errors == ["==> qemu.monitor: boom"]
    assert packer.parse_version("Packer v1.6.6\n") == (1, 6, 6)
    assert packer.parse_version("Packer v1.11.2\n\nYour version is out of date") == (1, 11, 2)


def test_one_failing_image_does_not_stop_the_others(fake_repo: Path, build_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from fabkit.errors import ExternalError

    targets = _targets(fake_repo, build_dir)
    tried: list[str] = []

    def fake_build_one(t, root, bdir, info, progress):  # type: ignore[no-untyped-def]
        tried.append(t.spec.name)
        if t.spec.name == "fabric-node":
            raise ExternalError("fabric.sh: cannot clone FABRIC_REPO\n  log: build/logs/x.log")
        return build.Outcome(t.spec.name, t.provider.value, t.name, t.fingerprint.digest,
                             "built", "new", {"path": "x.qcow2"})

    monkeypatch.setattr(build, "_build_one", fake_build_one)
    with pytest.raises(ExternalError) as err:
        build.build_targets(targets, fake_repo, build_dir, build.PackerInfo(), _Recorder())
    assert tried == ["caliper-worker", "fabric-node", "monitor"]
    text = str(err.value)
    assert text.startswith("1 of 3 images failed to bake")
    assert "caliper-worker built" in text and "monitor built" in text
    assert "fabric-node/qemu: fabric.sh: cannot clone FABRIC_REPO" in text


def test_stages_are_timed_and_named_by_script() -> None:
    seen: list[str] = []
    w = packer.BuildWatcher(seen.append, [], [])
    base = 1795857000
    for dt, msg in [
        (0, "==> qemu.fabric-node: Waiting for SSH to become available..."),
        (69, "==> qemu.fabric-node: Connected to SSH!"),
        (70, "==> qemu.fabric-node: Uploading /r/packer/files/common => /tmp/fabperf/files/"),
        (75, "==> qemu.fabric-node: Uploading /r/build/prebuilt/x.tar.gz => /tmp/fabperf/p.tgz"),
        (100, "==> qemu.fabric-node: Provisioning with shell script: /r/packer/scripts/common/"
              "base.sh"),
        (409, "==> qemu.fabric-node: Provisioning with shell script: /r/packer/scripts/"
              "fabric-node/fabric.sh"),
        (430, "==> qemu.fabric-node: Uploading /r/goss/goss => /tmp/fabperf/goss/goss"),
        (431, "==> qemu.fabric-node: Uploading /r/images/a.yaml => /tmp/fabperf/goss/specs/a"),
        (470, "==> qemu.fabric-node: Gracefully halting virtual machine..."),
        (500, "==> qemu.fabric-node: Converting hard drive..."),
    ]:
        w(f"{base + dt},,ui,say,{msg}")
    w(f"{base + 530},,ui,say,Build 'qemu.fabric-node' finished.")
    w.finish()
    assert [(s.name, s.seconds) for s in w.stages] == [
        ("boot -> SSH", 70), ("uploads", 30), ("common/base.sh", 309),
        ("fabric-node/fabric.sh", 21), ("goss", 40), ("seal + shutdown", 30), ("convert", 30)]
    assert "stage common/base.sh: 5:09" in seen



def test_an_earlier_bake_of_the_same_fingerprint_is_a_cache_hit(fake_repo: Path,
                                                                 build_dir: Path) -> None:
    """A/B: bake ref A, bake ref B (A goes to the history), ask for A again: no Packer
    (the runner's door is closed), A is current again, B is in the history."""
    def fabric(ref: str) -> build.Target:
        return build.plan(fake_repo, build_dir, Provider.QEMU, ["fabric-node"],
                          profiles.make_overrides(None, [], env={}),
                          version_sets=[f"FABRIC_REF={ref}"])[0]

    a, b = fabric("v2.5.12"), fabric("v3.0.0")
    assert a.fingerprint.digest != b.fingerprint.digest
    _fake_built([a], build_dir)
    _fake_built([b], build_dir)
    hist = manifest.load_history(build_dir)["fabric-node"]["qemu"]
    assert [e.fingerprint for e in hist] == [a.fingerprint.digest]
    out = _Recorder()
    (o,) = build.build_targets([a], fake_repo, build_dir, build.PackerInfo(), out)
    assert o.action == "skipped" and "baked before" in o.reason
    assert manifest.load(build_dir)["fabric-node"]["qemu"].fingerprint == a.fingerprint.digest
    hist = manifest.load_history(build_dir)["fabric-node"]["qemu"]
    assert [e.fingerprint for e in hist] == [b.fingerprint.digest]
    # an earlier artifact that was deleted is no hit: the door (Packer) is reached
    Path(hist[0].artifact["path"]).unlink()
    with pytest.raises(runner.SubprocessForbidden):
        build.build_targets([b], fake_repo, build_dir, build.PackerInfo(), _Recorder())


def test_the_history_is_bounded(build_dir: Path) -> None:
    for i in range(manifest.HISTORY_LIMIT + 5):
        manifest.record(build_dir, "fabric-node", "qemu", manifest.Entry(
            name=f"n{i}", fingerprint=f"{i:064x}", artifact={"path": f"/x/{i}"}))
    hist = manifest.load_history(build_dir)["fabric-node"]["qemu"]
    assert len(hist) == manifest.HISTORY_LIMIT and hist[0].name == f"n{manifest.HISTORY_LIMIT + 3}"
    assert manifest.load(build_dir)["fabric-node"]["qemu"].name == \
        f"n{manifest.HISTORY_LIMIT + 4}"
