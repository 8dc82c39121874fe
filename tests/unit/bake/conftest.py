"""Fixtures of the bake tests: a fake repository and a private build dir under tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from bake_fakerepo import make_repo, write_base


@pytest.fixture
def fake_repo(tmp_path: Path) -> Path:
    """A fake repository root (images/, packer/) under tmp_path."""
    return make_repo(tmp_path / "repo")


@pytest.fixture
def build_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A build dir under tmp_path with a base image record; FABPERF_* env cleared."""
    for k in list(os.environ):
        if k.startswith("FABPERF_"):
            monkeypatch.delenv(k)
    d = tmp_path / "build"
    write_base(d)
    return d
