"""Suite-wide rules: unit tests may not run subprocesses unless they opt in."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fabkit import runner

REPO = Path(__file__).resolve().parent.parent

OPT_IN = ("subprocess", "integration", "e2e")


@pytest.fixture(autouse=True)
def _subprocess_door(request: pytest.FixtureRequest):
    """Close fabkit.runner for tests not marked subprocess/integration/e2e."""
    allowed = any(request.node.get_closest_marker(m) for m in OPT_IN)
    runner.allow_subprocesses(allowed)
    if allowed:
        yield
    else:
        # Also catch code that bypasses the runner and calls subprocess directly.
        def refuse(*args, **kwargs):
            raise runner.SubprocessForbidden(f"subprocess.Popen{args!r} refused in a unit test")

        mp = pytest.MonkeyPatch()
        mp.setattr(subprocess, "Popen", refuse)
        yield
        mp.undo()
    runner.allow_subprocesses(True)


@pytest.fixture
def repo() -> Path:
    """The repository root."""
    return REPO
