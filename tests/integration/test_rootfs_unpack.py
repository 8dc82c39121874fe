"""rootfs.ensure unpacks a real qcow2 (qemu-img, losetup, mount, cp) and leaves no loop
device and no mount behind, even when a mount namespace is made while it copies.

That is what a lab does: its containers start (each systemd-nspawn makes a mount namespace)
while the next image is still being unpacked. On these machines "/" is not a shared mount,
so a namespace made meanwhile keeps a copy of every mount of this one: an unpack mount
copied into a container kept its loop device attached for the container's whole life (CI
saw one outlive the lab). The unpack now mounts in a namespace of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fabkit import runner
from launch.machines.providers import rootfs

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0 or any(shutil.which(t) is None for t in (
        "qemu-img", "losetup", "mke2fs", "unshare")), reason="needs root, qemu-img, losetup, "
        "mke2fs and unshare"),
]


@pytest.fixture
def qcow2(tmp_path: Path) -> Path:
    """A small qcow2 whose disk is one ext4 filesystem holding usr/ and a file."""
    src = tmp_path / "src"
    (src / "usr" / "bin").mkdir(parents=True)
    (src / "usr" / "bin" / "hello").write_text("#!/bin/sh\necho hello\n")
    (src / "usr" / "bin" / "hello").chmod(0o755)
    raw, out = tmp_path / "disk.raw", tmp_path / "fabperf-test-000000000000.qcow2"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(src), str(raw), "16M"],
                   check=True)
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(out)], check=True)
    raw.unlink()
    return out


def ns_mounts(pid: int) -> list[str]:
    return [line.split()[4] for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()]


def test_an_unpack_leaves_no_loop_or_mount_though_a_namespace_is_made_while_it_copies(
        qcow2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    real = runner.run
    namespaces: list[subprocess.Popen[bytes]] = []

    def run(argv, **kw):  # type: ignore[no-untyped-def]
        if "cp" in [str(a) for a in argv]:
            # a container starting now: a mount namespace of its own, made mid-unpack
            ns = subprocess.Popen(["unshare", "--mount", "sleep", "600"])
            namespaces.append(ns)
            for _ in range(100):
                if Path(f"/proc/{ns.pid}/exe").resolve().name == "sleep":
                    break
                subprocess.run(["sleep", "0.05"], check=True)
        return real(argv, **kw)

    monkeypatch.setattr(rootfs.runner, "run", run)
    try:
        root = rootfs.ensure(qcow2, cache, log_path=tmp_path / "rootfs.log")
        assert namespaces, "the copy was never run"
        assert (root / "usr" / "bin" / "hello").read_text() == "#!/bin/sh\necho hello\n"
        assert rootfs.up_to_date(qcow2, cache) == root
        # nothing of the unpack is left, here or in the namespace made during it
        assert rootfs.loops_on(cache) == []
        assert rootfs.mounts_under(cache) == []
        assert not [m for m in ns_mounts(namespaces[0].pid) if m.startswith(str(cache))]
        assert [p.name for p in cache.iterdir() if ".unpack-" in p.name] == []
    finally:
        for ns in namespaces:
            ns.kill()
            ns.wait()
        for loop in rootfs.loops_on(cache):        # what the old code left: do not leak it
            rootfs.detach(loop)


def test_a_failed_copy_leaves_no_loop_mount_or_work_directory(
        qcow2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy fails half-way (a full disk, a signal): its namespace ends with it, the loop
    device is detached, the work directory removed, the cache has no entry."""
    cache = tmp_path / "cache"
    real = runner.run

    def run(argv, **kw):  # type: ignore[no-untyped-def]
        argv = [str(a) for a in argv]
        if "cp" in argv:
            argv = argv[:argv.index("cp")] + ["sh", "-c", "ls \"$1\"/usr >/dev/null; exit 3",
                                               "copy", argv[-2].removesuffix("/.")]
        return real(argv, **kw)

    monkeypatch.setattr(rootfs.runner, "run", run)
    with pytest.raises(Exception, match="copy the root filesystem"):
        rootfs.ensure(qcow2, cache, log_path=tmp_path / "rootfs.log")
    assert rootfs.loops_on(cache) == []
    assert rootfs.mounts_under(cache) == []
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []
