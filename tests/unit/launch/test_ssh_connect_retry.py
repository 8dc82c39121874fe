"""launch.machines.ssh.run: a connection that was never made is tried again (a loaded TCG guest
answers its banner late); a command that ran and failed, or a dropped session, is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabkit import runner
from fabkit.errors import ExternalError
from launch.machines import ssh

TARGET = ssh.Target("caliper", "127.0.0.1", 2222, "fabperf", Path("/nonexistent/key"))
BANNER = "Connection timed out during banner exchange\n"


def completed(rc: int, stderr: str = "", stdout: str = "") -> runner.Completed:
    return runner.Completed(("ssh",), rc, stdout, stderr, None)


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch):
    calls: list[list[str]] = []
    queue: list[runner.Completed] = []

    def fake_run(argv, **kw):
        calls.append(list(argv))
        return queue.pop(0)

    monkeypatch.setattr(runner, "run", fake_run)
    return queue, calls


@pytest.mark.parametrize("stderr", [
    BANNER,
    "kex_exchange_identification: read: Connection reset by peer\n",
    "ssh: connect to host 127.0.0.1 port 2222: Connection refused\n",
])
def test_no_session_is_retried_until_it_answers(answers, stderr: str) -> None:
    queue, calls = answers
    queue += [completed(255, stderr), completed(255, stderr), completed(0, stdout="active\n")]
    slept: list[float] = []
    res = ssh.run(TARGET, "systemctl is-active x", attempts=4, sleep=slept.append)
    assert res.ok and res.stdout == "active\n"
    assert len(calls) == 3 and slept == [3, 3]


def test_a_command_that_ran_is_never_run_twice(answers) -> None:
    queue, calls = answers
    # a dropped session (the command may have run) and a failing command are final
    queue += [completed(255, "client_loop: send disconnect: Broken pipe\n")]
    assert ssh.run(TARGET, "systemd-run ...", attempts=4, sleep=lambda s: None).returncode == 255
    queue += [completed(1, "unit exists\n")]
    assert ssh.run(TARGET, "systemd-run ...", attempts=4, sleep=lambda s: None).returncode == 1
    assert len(calls) == 2


def test_attempts_run_out_and_check_raises_with_ssh_own_words(answers) -> None:
    queue, calls = answers
    queue += [completed(255, BANNER)] * 4
    with pytest.raises(ExternalError, match="banner exchange"):
        ssh.run(TARGET, "journalctl", attempts=4, check=True, sleep=lambda s: None)
    assert len(calls) == 4
