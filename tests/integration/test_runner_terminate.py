"""runner.terminate_running stops the commands other threads are waiting for (the real
subprocess path the readiness waiters take when fabperf is interrupted)."""

from __future__ import annotations

import threading
import time

import pytest

from fabkit import runner

pytestmark = pytest.mark.integration


def test_terminate_running_stops_a_command_another_thread_waits_for() -> None:
    out: list[runner.Completed] = []
    t = threading.Thread(target=lambda: out.append(runner.run(["sleep", "600"], check=False)),
                         daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not runner._running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runner.terminate_running() == 1
    t.join(timeout=10)
    assert not t.is_alive() and out[0].returncode == -15
    assert not runner._running                      # nothing left registered
    assert runner.terminate_running() == 0
