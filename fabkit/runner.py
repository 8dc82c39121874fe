"""The one door to subprocesses: every external command fabperf runs goes through here.

Each command is logged (shlex-joined) before it runs; a failure raises ExternalError
naming the command, its exit code, the log file and the tail of its output. Unit tests
close this door (see tests/conftest.py) so that nothing runs unless a test opts in.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fabkit.errors import ExternalError

log = logging.getLogger("fabperf.run")

TAIL_LINES = 20


class SubprocessForbidden(RuntimeError):
    """Raised when a test that did not opt in tries to run a command."""


_allowed = True

# The commands run() is waiting for, in any thread: an interrupt in the main thread
# reaches a command only when the main thread runs it; terminate_running() stops the ones
# other threads wait for (readiness waiters blocked in `ssh ... cloud-init status --wait`).
_running: set[subprocess.Popen] = set()  # type: ignore[type-arg]
_running_lock = threading.Lock()


def terminate_running() -> int:
    """SIGTERM every command run() is waiting for (in every thread); how many were sent."""
    with _running_lock:
        procs = list(_running)
    for proc in procs:
        try:
            proc.terminate()
        except OSError:      # it has just exited
            pass
    return len(procs)


def allow_subprocesses(allowed: bool) -> None:
    """Open or close the door (the test suite closes it for unit tests)."""
    global _allowed
    _allowed = allowed


def _check_allowed(argv: Sequence[str]) -> None:
    if not _allowed:
        raise SubprocessForbidden(
            f"subprocess {shlex.join(argv)!r} refused: mark the test with "
            "@pytest.mark.subprocess (or integration/e2e) to run real commands"
        )


@dataclass(frozen=True)
class Completed:
    """What a finished command left behind."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    log_path: Path | None

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    input: str | bytes | None = None,
    log_path: Path | None = None,
    check: bool = True,
    timeout: float | None = None,
    on_line: Callable[[str], None] | None = None,
    what: str | None = None,
) -> Completed:
    """Run a command to completion and return what it printed.

    ``env`` is added to the current environment. With ``log_path`` both streams are also
    written there (appending). ``on_line`` receives each stdout line as it arrives, for
    progress output of long commands. With ``check`` a non-zero exit raises ExternalError.
    """
    args = [os.fspath(a) for a in argv]
    _check_allowed(args)
    cmd = shlex.join(args)
    log.debug("run: %s", cmd)
    full_env = {**os.environ, **env} if env else None
    logf = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        logf = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed below
        logf.write(f"$ {cmd}\n")
        logf.flush()
    proc: subprocess.Popen | None = None  # type: ignore[type-arg]
    try:
        try:
            proc = subprocess.Popen(
                args,
                cwd=cwd,
                env=full_env,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=not isinstance(input, bytes),
            )
        except FileNotFoundError as exc:
            raise ExternalError(
                f"{what or 'command'} failed: {args[0]!r} is not installed or not on PATH",
                hint="run `make deps` to install the system packages fabperf needs",
            ) from exc
        with _running_lock:
            _running.add(proc)
        out_chunks: list[str] = []
        err_chunks: list[str] = []

        def pump(stream, chunks: list[str], callback) -> None:  # type: ignore[no-untyped-def]
            for raw in stream:
                line = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
                chunks.append(line)
                if logf is not None:
                    logf.write(line)
                    logf.flush()
                if callback is not None:
                    callback(line.rstrip("\n"))

        threads = [
            threading.Thread(target=pump, args=(proc.stdout, out_chunks, on_line), daemon=True),
            threading.Thread(target=pump, args=(proc.stderr, err_chunks, None), daemon=True),
        ]
        for t in threads:
            t.start()
        if input is not None and proc.stdin is not None:
            proc.stdin.write(input)  # type: ignore[arg-type]
            proc.stdin.close()
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.wait()
            raise ExternalError(
                f"{what or 'command'} timed out after {timeout:.0f}s: {cmd}"
                + (f"\n  log: {log_path}" if log_path else "")
            ) from exc
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            raise
        for t in threads:
            t.join()
    finally:
        if proc is not None:
            with _running_lock:
                _running.discard(proc)
        if logf is not None:
            logf.close()
    result = Completed(
        tuple(args), returncode, "".join(out_chunks), "".join(err_chunks), log_path
    )
    if check and returncode != 0:
        raise command_failed(result, what)
    return result


def command_failed(result: Completed, what: str | None = None) -> ExternalError:
    """The ExternalError for a command that exited non-zero: command, code, log, tail."""
    parts = [f"{what or 'command'} failed with exit code {result.returncode}: "
             f"{shlex.join(result.argv)}"]
    if result.log_path is not None:
        parts.append(f"  log: {result.log_path}")
    tail = _tail(result.stderr) or _tail(result.stdout)
    if tail:
        shown = "\n".join("    " + ln for ln in tail.splitlines())
        parts.append("  output (last lines):\n" + shown)
    return ExternalError("\n".join(parts))


def spawn(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    log_path: Path,
) -> subprocess.Popen[bytes]:
    """Start a long-lived background process (a VM), its output going to ``log_path``."""
    args = [os.fspath(a) for a in argv]
    _check_allowed(args)
    log.debug("spawn: %s", shlex.join(args))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as logf:
        return subprocess.Popen(
            args,
            cwd=cwd,
            env={**os.environ, **env} if env else None,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
