"""Where fabperf's inputs live (the repository root) and where its outputs go (the build dir)."""

from __future__ import annotations

import os
from pathlib import Path

from fabkit.errors import InputError

BUILD_DIR_ENV = "FABPERF_BUILD_DIR"
ROOT_ENV = "FABPERF_ROOT"


def find_repo_root(start: Path | None = None) -> Path:
    """The directory holding images/ and packer/: $FABPERF_ROOT, else cwd or a parent of it,
    else the checkout this package was imported from."""
    here = (start or Path.cwd()).resolve()
    candidates = [Path(os.environ[ROOT_ENV]).resolve()] if os.environ.get(ROOT_ENV) else []
    candidates += [here, *here.parents, Path(__file__).resolve().parent.parent]
    for c in candidates:
        if (c / "images").is_dir() and (c / "packer").is_dir():
            return c
    raise InputError(
        f"no fabperf repository found (a directory with images/ and packer/) from {here}",
        hint="run bake from the fabperf checkout",
    )


def build_dir(root: Path, override: str | os.PathLike[str] | None = None) -> Path:
    """The build directory: --build-dir, else $FABPERF_BUILD_DIR, else <root>/build (absolute)."""
    chosen = override or os.environ.get(BUILD_DIR_ENV) or (root / "build")
    return Path(chosen).expanduser().resolve()
