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


def test_internal_error_logs_are_bounded_to_the_newest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    # issue 25, item 14: every internal error wrote build/logs/internal-*.log into the
    # checkout, without bound (20 files after two probe runs)
    monkeypatch.setenv("FABPERF_BUILD_DIR", str(tmp_path / "build"))
    logs = tmp_path / "build" / "logs"
    logs.mkdir(parents=True)
    (logs / "internal-keep.txt").write_text("not a log of ours")
    (logs / "packer-build.log").write_text("other logs stay")
    said = []
    for i in range(clikit.KEEP_INTERNAL_LOGS + 15):
        def boom(i: int = i) -> None:
            raise RuntimeError(f"crash {i}")
        assert run_main(_group(boom), ["go"]) == 1
        said.append(capsys.readouterr().err)
    kept = sorted(logs.glob("internal-*.log"))
    assert len(kept) == clikit.KEEP_INTERNAL_LOGS
    texts = "".join(p.read_text() for p in kept)
    assert "crash 24" in texts and "crash 15" in texts and "crash 14" not in texts
    assert f"(details in {logs}" in said[-1]      # all in the build dir, none in the fallback
    assert (logs / "internal-keep.txt").exists() and (logs / "packer-build.log").exists()
