"""fabkit.atomic.write_atomic: exact mode, no partial file, no leftover temporary."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fabkit.atomic import write_atomic


def test_writes_with_the_exact_mode_even_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        p = write_atomic(tmp_path / "state.json", "{}\n", mode=0o600, fsync=True)
    finally:
        os.umask(old)
    assert p.read_text() == "{}\n"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert [f.name for f in tmp_path.iterdir()] == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path,
                                                                   monkeypatch) -> None:
    p = tmp_path / "manifest.json"
    p.write_text("old")

    def boom(src, dst):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(p, b"new")
    assert p.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["manifest.json"]
