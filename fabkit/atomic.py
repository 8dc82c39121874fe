"""Atomic file writes: the reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: bytes | str, *, mode: int = 0o644, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory + os.replace.

    The temporary file is created with ``mode`` (0600 for secrets: never readable by others,
    not even for an instant). ``fsync`` for state that must survive a crash of the machine.
    """
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)  # os.open's mode is filtered by the umask; make it exact
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def make_dirs(path: Path, *, mode: int = 0o755, leaf_mode: int | None = None) -> Path:
    """Create ``path`` and its missing parents with exact modes whatever the umask (mkdir's
    mode is filtered by it: under umask 000 a plain mkdir makes folders anyone can write
    into). The parents get ``mode``, ``path`` itself ``leaf_mode`` (default ``mode``);
    folders that exist already are left as they are."""
    path = Path(path)
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        want = leaf_mode if d == path and leaf_mode is not None else mode
        try:
            os.mkdir(d, want)
        except FileExistsError:     # made meanwhile by another process: it decided the mode
            continue
        os.chmod(d, want)
    return path
