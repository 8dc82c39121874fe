"""The transaction every render of a bundle directory DIR is.

- an exclusive lock (DIR's parent/.DIR.lock, flock): a second render into the same DIR
  while one runs fails at once with exit 2, it does not wait (two renders at once would
  both issue CAs; the operator should decide which one they meant);
- everything is rendered into a staging directory beside DIR (.DIR.render-PID). An
  existing crypto tree that this render changes is hard-linked into it, never moved:
  crypto.generate writes every changed file as a new inode, so the old bundle's files are
  never touched, and the old DIR stays complete until the swap. A crypto tree this render
  does not change (crypto.up_to_date: the common re-render) is read where it is and joins
  the new bundle in the swap itself (linking 4,400 files costs seconds on a busy disk);
- the swap exchanges staging and DIR atomically (renameat2 RENAME_EXCHANGE; two renames
  with SIGINT/SIGTERM/SIGHUP blocked where the filesystem lacks it), then the old tree
  is removed;
- staging (or a half-swapped DIR) left by a process that died (SIGKILL, power loss) is
  swept, or restored as DIR, by the next render under the lock;
- modes are explicit whatever the umask: directories 0755, public files 0644, private keys,
  user-data and other secrets 0600.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fabkit import sigmask
from fabkit.errors import InputError


def check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir())
                                              and not (out / "plan.json").is_file())):
        raise InputError.field(None, "--out", "a new directory or an earlier bundle "
                               "(with plan.json)", str(out))


_STAGING = (".render-", ".old-")

@contextmanager
def transaction(out: Path) -> Iterator[Path]:
    """One render of `out`: under its lock and a fixed umask, earlier staging swept, a fresh
    staging folder yielded (the caller renders into it and swaps it in), removed on any
    failure or signal."""
    with _umask(0o022), _locked(out):
        _sweep(out)
        check_out(out)  # (a swept staging may have restored out)
        staging = out.parent / f".{out.name}.render-{os.getpid()}"
        try:
            staging.mkdir()
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

@contextmanager
def _umask(mask: int) -> Iterator[None]:
    """Modes of what render creates do not depend on the caller's umask."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)

@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold out's render lock (the parent's .<out>.lock); busy -> InputError at once."""
    lock = out.parent / f".{out.name}.lock"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError.field(None, "--out", "a directory that can be created",
                               f"{out} ({exc.strerror})") from None
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError.field(None, "--out", "a directory whose parent is writable",
                                   f"{out} ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise InputError(f"{out}: another `launch render` is writing this bundle "
                             f"(pid {holder or '?'} holds {lock})",
                             hint="wait for it to finish, or render into another --out"
                             ) from None
        try:
            # The previous holder may have removed the lock file after we opened it.
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        lock.unlink(missing_ok=True)  # before unlocking: a waiter then retries
        os.close(fd)


def _sweep(out: Path) -> None:
    """Under the lock, every staging directory of `out` belongs to a dead render: remove
    it, and if `out` itself is missing (death between the two renames of a swap), restore
    the newest complete one (an old tree, else a rendered staging with its plan.json)."""
    prefix = f".{out.name}"
    leftovers = sorted((p for p in out.parent.glob(f"{prefix}.*-*")
                        if any(p.name.startswith(prefix + k) for k in _STAGING)),
                       key=lambda p: p.stat().st_mtime, reverse=True)
    if out.is_dir() and (out / "plan.json").is_file() and not (out / "crypto").exists():
        # killed after an unchanged crypto tree joined the new bundle, before the exchange
        done = next((p for p in leftovers if (p / "plan.json").is_file()
                     and (p / "crypto").is_dir()), None)
        if done is not None:
            os.rename(out, out.parent / f"{prefix}.old-sweep")
            leftovers.append(out.parent / f"{prefix}.old-sweep")
            os.rename(done, out)
            leftovers.remove(done)
    if not out.exists():
        for p in leftovers:
            if (p / "plan.json").is_file() and (p / "crypto").is_dir():
                os.rename(p, out)
                leftovers.remove(p)
                break
    for p in leftovers:
        shutil.rmtree(p, ignore_errors=True)


_RENAME_EXCHANGE = 2

_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where it is not supported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap(staging: Path, out: Path, *, crypto_from: Path | None = None) -> None:
    """Make staging the bundle at `out`; the old bundle is removed afterwards.

    ``crypto_from`` (out/crypto, unchanged by this render) joins staging first, in the
    same window with the signals blocked: only SIGKILL or a power loss can stop the swap
    between the two renames, and the next render's sweep then completes it."""
    trash = out.parent / f".{out.name}.old-{os.getpid()}"
    with sigmask.held():
        if crypto_from is not None:
            os.rename(crypto_from, staging / "crypto")
        if not out.exists():
            os.rename(staging, out)
            return
        if _exchange(staging, out):
            os.rename(staging, trash)  # staging now holds the old bundle
        else:
            os.rename(out, trash)
            os.rename(staging, out)
    shutil.rmtree(trash, ignore_errors=True)
