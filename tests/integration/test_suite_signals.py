"""The suite takes Ctrl-C back when it was started with SIGINT ignored (tests/conftest.py).

A non-interactive shell starts its background jobs with SIGINT ignored (`make test &`,
`nohup`): without the conftest hook the render transaction's Ctrl-C tests fail and
readiness' Ctrl-C test waits for good. One of them is run here in a pytest started that way.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_a_suite_started_with_sigint_ignored_still_interrupts_what_it_tests() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/unit/launch/test_render_transaction.py", "-k", "a_signal_during_a_rerender"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "passed" in res.stdout and "failed" not in res.stdout
