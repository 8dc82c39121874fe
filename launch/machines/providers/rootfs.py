"""A baked qcow2 as a read-only root filesystem tree for containers (the nspawn provider).

The qemu artifact of an image (build/manifest.json) is unpacked once into a plain directory
under CACHE (qcow2 -> sparse raw -> read-only loop device -> `mount -o ro,noload` -> copy),
named by the artifact's fingerprint name (fabperf-<image>-<hash12>) and checked against
the qcow2's size and mtime (a forced re-bake under the same fingerprint is unpacked anew).
The loop device exists only while the copy runs, and its mount only in a mount namespace
of the copy's own (no container starting meanwhile inherits it); what stays is a directory,
so a running lab holds no loop device, and every host's overlayfs uses the tree as its
read-only lower layer.

`launch gc` removes trees no running container uses (collect / remove below), and the
leftovers of an unpack that was killed half-way (a loop device on a cache file, a mount
under the cache).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fabkit import runner
from fabkit.atomic import write_atomic
from fabkit.errors import ExternalError, InputError

log = logging.getLogger("fabperf.rootfs")

CACHE = Path(os.environ.get("FABPERF_NSPAWN_CACHE", "/var/cache/fabperf/nspawn"))
MARKER = "source.json"          # beside root/: what it was unpacked from


@dataclass(frozen=True)
class Source:
    """The qcow2 a tree is unpacked from, as far as a change of it shows."""

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, qcow2: Path) -> Source:
        st = qcow2.stat()
        return cls(str(qcow2.resolve()), st.st_size, st.st_mtime_ns)


def tree_name(qcow2: Path) -> str:
    """The cache entry of an artifact: its fingerprint name (fabperf-<image>-<hash12>, the
    file name bake gave it) and a digest of the file itself (path, size, mtime), so another
    checkout's bake, or a forced re-bake, of the same fingerprint gets an entry of its own:
    an entry is never replaced while a container may be using it."""
    src = Source.of(qcow2)
    digest = hashlib.sha256(f"{src.path}\0{src.size}\0{src.mtime_ns}".encode()).hexdigest()
    return f"{qcow2.name.removesuffix('.qcow2')}-{digest[:8]}"


def entry(qcow2: Path, cache: Path | None = None) -> Path:
    return (CACHE if cache is None else cache) / tree_name(qcow2)


def up_to_date(qcow2: Path, cache: Path | None = None) -> Path | None:
    """The tree of ``qcow2`` when it is unpacked and current (else None)."""
    e = entry(qcow2, cache)
    try:
        recorded = json.loads((e / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if recorded != Source.of(qcow2).__dict__ or not (e / "root" / "usr").is_dir():
        return None
    return e / "root"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def ensure(qcow2: Path, cache: Path | None = None, log_path: Path | None = None) -> Path:
    """The read-only root tree of ``qcow2``, unpacked now unless the cache has it."""
    cache = CACHE if cache is None else cache
    if not qcow2.is_file():
        raise InputError(f"image {qcow2} does not exist",
                         hint="bake it: `bake build --provider qemu` (the nspawn provider "
                              "boots the qemu images)")
    e = entry(qcow2, cache)
    with _locked(cache / f".{e.name}.lock"):
        found = up_to_date(qcow2, cache)
        if found is not None:
            return found
        log.info("unpacking %s into %s (once per image)", qcow2.name, e)
        work = cache / f".{e.name}.unpack-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True, mode=0o700)
        try:
            _unpack(qcow2, work, log_path)
            if e.exists():
                shutil.rmtree(e)
            os.chmod(work, 0o755)
            write_atomic(work / MARKER, json.dumps(Source.of(qcow2).__dict__) + "\n")
            os.replace(work, e)
        finally:
            if work.exists():
                _release(work, log_path)
                shutil.rmtree(work, ignore_errors=True)
        return e / "root"


def _unpack(qcow2: Path, work: Path, log_path: Path | None) -> None:
    raw, mnt, root = work / "disk.raw", work / "mnt", work / "root"
    runner.run(["qemu-img", "convert", "-O", "raw", qcow2, raw], log_path=log_path,
               what=f"qemu-img convert {qcow2.name}")
    res = runner.run(["losetup", "--find", "--partscan", "--read-only", "--show", raw],
                     log_path=log_path, what="losetup")
    loop = res.stdout.strip()
    try:
        part = Path(f"{loop}p1")
        if not part.exists():
            # the partition node does not always appear without it (MACHINE-FACTS)
            runner.run(["partx", "-u", loop], log_path=log_path, check=False, what="partx")
        device = str(part) if part.exists() else loop
        mnt.mkdir()
        root.mkdir(mode=0o755)
        runner.run(private_mount_argv(device, mnt, ["cp", "-a", f"{mnt}/.", str(root)]),
                   log_path=log_path, what=f"copy the root filesystem of {qcow2.name}")
    finally:
        detach(loop, log_path)
        raw.unlink(missing_ok=True)


def private_mount_argv(device: str, mnt: Path, command: list[str]) -> list[str]:
    """`command` run with ``device`` mounted read-only on ``mnt`` in a mount namespace of
    its own (private propagation), gone with it when it ends, however it ends.

    Mounted in this machine's namespace instead, the mount is copied into every mount
    namespace made while it exists: a container that starts meanwhile (another host of the
    lab) keeps its copy for its whole life, since "/" is not a shared mount on these
    machines, and with it the loop device open. `losetup -d` then only marks the device
    auto-clear, and it stays attached until that container stops (CI saw one outlive a whole
    lab)."""
    return ["unshare", "--mount", "--propagation", "private", "--",
            "sh", "-ec", 'mount -o ro,noload "$1" "$2"; shift 2; exec "$@"',
            "unpack", device, str(mnt), *command]


def detach(loop: str, log_path: Path | None = None, attempts: int = 20) -> bool:
    """Detach a loop device and see it gone: a device still opened for a moment (a
    partition probe) is only marked auto-clear by `losetup -d`, so its partitions are
    dropped first and the detach is retried until /sys says it is free."""
    backing = Path("/sys/block") / Path(loop).name / "loop" / "backing_file"
    for _ in range(attempts):
        runner.run(["partx", "-d", loop], log_path=log_path, check=False, what="partx -d")
        runner.run(["losetup", "-d", loop], log_path=log_path, check=False,
                   what="losetup -d")
        if not backing.exists():
            return True
        time.sleep(0.5)
    log.warning("loop device %s is still attached (`launch gc` detaches it later)", loop)
    return False


def _release(work: Path, log_path: Path | None) -> None:
    """Undo what an unpack in ``work`` left (its mount, its loop device)."""
    for mnt in mounts_under(work):
        runner.run(["umount", "-l", mnt], log_path=log_path, check=False, what="umount")
    for loop in loops_on(work):
        detach(loop, log_path)


def mounts_under(path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> list[str]:
    """Mount points at or below ``path`` (deepest first)."""
    prefix = str(path.resolve() if path.exists() else path)
    found = []
    for line in mountinfo.read_text().splitlines():
        fields = line.split()
        point = fields[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def loops_on(path: Path, sys_block: Path = Path("/sys/block")) -> list[str]:
    """Loop devices whose backing file is at or below ``path``."""
    prefix = str(path)
    found = []
    for dev in sys_block.glob("loop*"):
        try:
            backing = (dev / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
        if backing == prefix or backing.startswith(prefix + "/"):
            found.append(f"/dev/{dev.name}")
    return found


def orphan_loops(cache: Path | None = None) -> list[str]:
    """Loop devices on files of the cache whose unpack is over (its process is gone, or the
    file was already deleted): what an interrupted unpack left attached."""
    cache = CACHE if cache is None else cache
    found = []
    for loop in loops_on(cache):
        backing = (Path("/sys/block") / Path(loop).name / "loop" / "backing_file")
        try:
            text = backing.read_text().strip()
        except OSError:
            continue
        owner = Path(text.removesuffix(" (deleted)")).parent.name.rpartition(".unpack-")[2]
        alive = owner.isdigit() and (Path("/proc") / owner).exists()
        if text.endswith(" (deleted)") or not alive:
            found.append(loop)
    return found


def lower_dirs_in_use(mountinfo: Path = Path("/proc/self/mountinfo")) -> set[str]:
    """The lowerdir of every overlayfs mounted now (trees a container may be using)."""
    used: set[str] = set()
    for line in mountinfo.read_text().splitlines():
        pre, _, post = line.partition(" - ")
        if not post.startswith("overlay "):
            continue
        for opt in post.split()[-1].split(","):
            if opt.startswith("lowerdir="):
                used.update(opt.removeprefix("lowerdir=").split(":"))
    return used


@dataclass(frozen=True)
class CachedTree:
    """A tree in the cache (or an unpack's leftover)."""

    path: Path
    in_use: bool


def listing(cache: Path | None = None) -> list[CachedTree]:
    """Every entry of the cache (default CACHE), and whether a mounted overlay uses it."""
    cache = CACHE if cache is None else cache
    if not cache.is_dir():
        return []
    used = lower_dirs_in_use()
    out = []
    for e in sorted(cache.iterdir()):
        if not e.is_dir():
            continue
        root = str(e / "root")
        out.append(CachedTree(e, any(u == root or u.startswith(root + "/") for u in used)))
    return out


def remove(tree: Path, log_path: Path | None = None) -> None:
    """Remove one cache entry (and an unpack's leftover mount/loop device in it)."""
    if tree.parent != tree.parent.resolve() or ".." in tree.parts:
        raise ExternalError(f"refusing to remove {tree}: not a plain cache path")
    _release(tree, log_path)
    shutil.rmtree(tree)
    (tree.parent / f".{tree.name}.lock").unlink(missing_ok=True)
