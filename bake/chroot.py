"""Chroot plumbing shared by the base image and the build roots: the host's /dev, /proc and
/sys bind-mounted into a tree, and a work tree removed only once nothing is mounted in it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fabkit import runner
from fabkit.errors import ExternalError


@contextmanager
def chroot_mounts(root: Path, log_path: Path) -> Iterator[None]:
    done: list[Path] = []
    try:
        for sub in ("dev", "dev/pts", "proc", "sys"):
            runner.run(["mount", "--bind", f"/{sub}", root / sub], log_path=log_path,
                       what=f"bind-mount /{sub}")
            done.append(root / sub)
        yield
    finally:
        for m in reversed(done):
            umount(m, log_path)


def umount(path: Path, log_path: Path) -> None:
    res = runner.run(["umount", path], log_path=log_path, what="umount", check=False)
    if not res.ok:
        runner.run(["umount", "-l", path], log_path=log_path, what="lazy umount", check=False)


def remove_tree(work: Path, log_path: Path) -> None:
    """Remove a work dir, first undoing any mounts and loop devices left inside it."""
    if not work.exists():
        return
    mounts = [ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines()
              if ln.split()[1].startswith(str(work.resolve()))]
    for m in sorted(mounts, key=len, reverse=True):
        umount(Path(m), log_path)
    still = [ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines()
             if ln.split()[1].startswith(str(work.resolve()))]
    if still:
        # Never recurse into a bind-mounted /dev or /sys of the host.
        raise ExternalError(f"cannot clean {work}: still mounted: {', '.join(still)}",
                            hint=f"umount them by hand; log: {log_path}")
    raw = work / "disk.raw"
    if raw.exists():
        res = runner.run(["losetup", "-j", raw], log_path=log_path, what="find loop devices",
                         check=False)
        for line in res.stdout.splitlines():
            runner.run(["losetup", "-d", line.split(":")[0]], log_path=log_path,
                       what="detach loop device", check=False)
    unlink_tree(work)


def unlink_tree(p: Path) -> None:
    """Remove a file or a directory tree (never following a symlink out of it)."""
    if p.is_dir() and not p.is_symlink():
        for child in p.iterdir():
            unlink_tree(child)
        p.rmdir()
    else:
        p.unlink()
