"""Suite-wide rules: unit tests may not run subprocesses unless they opt in; no test leaves
Ctrl-C blocked or its handler changed."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from fabkit import runner, sigmask

REPO = Path(__file__).resolve().parent.parent

OPT_IN = ("subprocess", "integration", "e2e")


def pytest_configure(config: pytest.Config) -> None:
    """A suite started in the background by a non-interactive shell (`make test &`, `nohup`,
    a runner's background step) inherits SIGINT ignored, so CPython installs no Ctrl-C
    handler, and neither do the fabperf processes the tests start and interrupt: the
    Ctrl-C tests then fail (the moto and OpenStack-double ones, the render transaction's)
    or wait for good (readiness). Seen here, the suite started with `nohup ... &`. The
    suite takes Ctrl-C back: the default handler here, the default disposition (inherited
    as such) in what it starts."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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


@pytest.fixture(autouse=True)
def _signals_as_found():
    """The whole suite runs in one process (as CI runs it): a test that leaves Ctrl-C blocked
    or handled differently breaks every later test that sends one (the full suite once hung
    in a Ctrl-C test after a leak). Such a test fails here, by name, and the process gets
    its signals back."""
    mask = sigmask.current()
    handlers = {s: signal.getsignal(s) for s in sigmask.INTERRUPTS}
    yield
    leaked = sigmask.current()
    sigmask.restore(mask)
    changed = {s.name for s, h in handlers.items() if signal.getsignal(s) is not h}
    for s, h in handlers.items():
        signal.signal(s, h)
    blocked = sorted(signal.Signals(s).name for s in set(leaked) - set(mask))
    assert not blocked and not changed, (f"the test left {blocked} blocked and the handlers "
                                         f"of {sorted(changed)} changed")


@pytest.fixture
def repo() -> Path:
    """The repository root."""
    return REPO
