"""fabkit.clikit: the catch-all (internal error + log, exit 1) and SIGTERM/SIGHUP as Ctrl-C."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import click
import pytest

from fabkit import clikit
from fabkit.clikit import run_main


def _group(action) -> click.Group:  # type: ignore[no-untyped-def]
    @click.group()
    def g() -> None:
        pass

    @g.command("go")
    def go() -> None:
        action()

    return g


def test_an_unexpected_exception_is_an_internal_error_with_a_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("FABPERF_BUILD_DIR", str(tmp_path / "build"))

    def boom() -> None:
        raise ZeroDivisionError("x" * 1000)

    assert run_main(_group(boom), ["go"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("internal error: ZeroDivisionError: xxx")
    assert "Traceback" not in err and len(err) < 400
    logs = list((tmp_path / "build" / "logs").glob("internal-*.log"))
    assert len(logs) == 1 and f"(details in {logs[0]})" in err
    text = logs[0].read_text()
    assert "Traceback" in text and "ZeroDivisionError" in text and "in boom" in text
    assert (logs[0].stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_run_the_cleanup_like_ctrl_c(tmp_path: Path, sig: int, code: int,
                                                        capsys: pytest.CaptureFixture) -> None:
    marker = tmp_path / "staging"

    def work() -> None:
        marker.mkdir()
        try:
            os.kill(os.getpid(), sig)
            signal.sigtimedwait([], 0)  # (the handler runs at the next bytecode)
            raise AssertionError("the signal did not interrupt")
        except KeyboardInterrupt:
            marker.rmdir()  # the cleanup Ctrl-C gets
            raise

    before = signal.getsignal(sig)
    assert run_main(_group(work), ["go"]) == code
    assert not marker.exists()
    assert f"interrupted ({signal.Signals(sig).name})" in capsys.readouterr().err
    assert signal.getsignal(sig) == before  # handlers restored


def test_ctrl_c_is_130(capsys: pytest.CaptureFixture) -> None:
    def stop() -> None:
        raise KeyboardInterrupt

    assert run_main(_group(stop), ["go"]) == clikit.EXIT_INTERRUPTED == 130
