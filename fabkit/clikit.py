"""What both command-line programs share: verbosity, output format, exit codes, signals.

Only the CLI modules print. Library code returns values and raises FabperfError.

Exit codes: 0 ok, 1 external failure (and internal errors: a bug, traceback in
build/logs/internal-*.log), 2 bad input, 130 Ctrl-C (SIGINT), 143 SIGTERM, 129 SIGHUP.
SIGTERM and SIGHUP are turned into ``Terminated`` (a KeyboardInterrupt), so every cleanup
path that handles Ctrl-C (staging removed, rollback, child processes stopped) runs for them
too; the exit code is 128 + the signal number, as a shell reports a process it killed.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import logging
import math
import os
import signal
import stat
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from fabkit import layout
from fabkit.errors import FabperfError, InputError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_EXTERNAL = 1
EXIT_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_HANGUP = 128 + signal.SIGHUP      # 129
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: handled like Ctrl-C, exit code 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """While the command runs, SIGTERM and SIGHUP raise Terminated in the main thread."""

    def handler(signum: int, frame: object) -> None:
        raise Terminated(signum)

    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread (a test runner's worker): leave signals alone
        pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def internal_error_log(exc: BaseException) -> Path:
    """Write the traceback of an unexpected exception to <build>/logs/internal-*.log."""
    stamp = _dt.datetime.now(tz=_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    # the nanoseconds order two logs of one second (prune keeps the newest)
    name = f"internal-{stamp}-{os.getpid()}-{time.time_ns() % 10**9:09d}.log"
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    text = f"fabperf internal error; command: {' '.join(sys.argv)}\n\n{text}"
    for directory in _log_dirs():
        try:
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / name
            for n in range(1, 100):     # a second error of this process in the same second
                if not path.exists():
                    break
                path = directory / f"{Path(name).stem}-{n}.log"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            prune_internal_logs(directory, keep=KEEP_INTERNAL_LOGS)
            return path
        except OSError:
            continue
    return Path("/dev/stderr")


KEEP_INTERNAL_LOGS = 10
"""internal-*.log files kept per log directory (the newest): a crash that repeats on every
run must not fill the checkout"""


def prune_internal_logs(directory: Path, keep: int = KEEP_INTERNAL_LOGS) -> list[Path]:
    """Delete all but the newest ``keep`` internal-*.log files of ``directory`` (by
    modification time, then name); returns the deleted ones."""
    logs = []
    for p in directory.glob("internal-*.log"):
        try:
            st = p.lstat()
        except OSError:
            continue        # removed meanwhile by another run
        if stat.S_ISREG(st.st_mode):
            logs.append((st.st_mtime_ns, p.name, p))
    logs.sort(reverse=True)
    gone = []
    for _, _, p in logs[keep:]:
        try:
            p.unlink()
            gone.append(p)
        except OSError:
            pass
    return gone


def _log_dirs() -> list[Path]:
    dirs = []
    try:
        dirs.append(layout.build_dir(layout.find_repo_root()) / "logs")
    except Exception:  # no repository: the temp dir will do
        pass
    return [*dirs, Path(tempfile.gettempdir()) / "fabperf-logs"]


def setup_logging(verbose: int, quiet: int) -> None:
    """-v shows every command run, -q hides progress; default shows progress lines."""
    level = logging.INFO - 10 * verbose + 10 * quiet
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(message)s" if verbose == 0 else "%(levelname).1s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def _verbosity(ctx: click.Context, param: click.Parameter, value: int) -> None:
    # -v/-q may be given to the group and to the command; the counts add up.
    meta = ctx.find_root().meta
    meta[param.name] = meta.get(param.name, 0) + value
    setup_logging(meta.get("verbose", 0), meta.get("quiet", 0))


def verbosity_options(f: F) -> F:
    """Add -v/-q to a click command or group (use on the group and on every command)."""
    f = click.option(
        "-q", "--quiet", count=True, expose_value=False, callback=_verbosity,
        help="Less output (repeatable).",
    )(f)
    f = click.option(
        "-v", "--verbose", count=True, expose_value=False, callback=_verbosity,
        help="More output; -v logs every command run.",
    )(f)
    return f


def output_option(f: F) -> F:
    """Add --output text|json."""
    return click.option(
        "--output",
        "output",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="json prints one machine-readable document on stdout.",
    )(f)


class FiniteFloat(click.FloatRange):
    """A float option that refuses NaN and infinity: NaN passes every range check (each
    comparison with it is false) and would switch off whatever it bounds. Use it for every
    float option, with or without a range."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number (NaN and infinity are refused)",
                      param, ctx)
        return number


def finite_float(min: float | None = None, max: float | None = None, *,
                 min_open: bool = False, max_open: bool = False) -> FiniteFloat:
    """The click type of a float option (click.FloatRange's arguments)."""
    return FiniteFloat(min, max, min_open=min_open, max_open=max_open)


class FiniteFloatList(click.ParamType):
    """A comma-separated list of finite floats (R,R,...), each checked by FiniteFloat."""

    name = "finite float list"

    def __init__(self, item: FiniteFloat) -> None:
        self.item = item

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        parts = [p.strip() for p in str(value).split(",")]
        if not all(parts):
            self.fail(f"{value!r} is not a comma-separated list of numbers", param, ctx)
        return tuple(self.item.convert(p, param, ctx) for p in parts)


def finite_float_list(min: float | None = None, max: float | None = None) -> FiniteFloatList:
    """The click type of an R,R,... option of finite floats within [min, max]."""
    return FiniteFloatList(finite_float(min, max))


class InputFile(click.Path):
    """A path the user hands fabperf to read: an existing one that is not a regular file (a
    FIFO would block the read for ever, a device never end) is refused while the options are
    parsed, before anything runs; with ``max_bytes`` (files handed on to another program,
    which fabperf does not read through fabkit.inputs) a larger one is refused too. A missing
    path is left to the reader's message unless ``exists``."""

    def __init__(self, *, dir_okay: bool = False, exists: bool = False,
                 max_bytes: int | None = None, path_type: type[Any] = Path) -> None:
        super().__init__(exists=exists, dir_okay=dir_okay, path_type=path_type)
        self.max_bytes = max_bytes

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        path = super().convert(value, param, ctx)
        try:
            st = os.stat(path)
        except OSError:
            return path             # missing: the reader (or exists=True) says so
        if stat.S_ISDIR(st.st_mode) and self.dir_okay:
            return path
        if not stat.S_ISREG(st.st_mode):
            kind = ("a directory" if stat.S_ISDIR(st.st_mode) else
                    "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else
                    "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                    else "not a regular file")
            self.fail(f"{os.fsdecode(value)!r} is {kind}, not a regular file"
                      + (" or a directory" if self.dir_okay else ""), param, ctx)
        if self.max_bytes is not None and st.st_size > self.max_bytes:
            self.fail(f"{os.fsdecode(value)!r} is {st.st_size} bytes, more than the "
                      f"{self.max_bytes} such a file can be", param, ctx)
        return path


def input_file(*, exists: bool = False, max_bytes: int | None = None,
               path_type: type[Any] = Path) -> InputFile:
    """The click type of a file option or argument fabperf reads (InputFile)."""
    return InputFile(exists=exists, max_bytes=max_bytes, path_type=path_type)


def input_path(*, exists: bool = False) -> InputFile:
    """The click type of a path that may be a regular file or a directory (a bundle, an
    image or a root filesystem): anything else is refused (InputFile)."""
    return InputFile(dir_okay=True, exists=exists)


def emit_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))


def progress(message: str) -> None:
    """A progress line on stderr (hidden by -q)."""
    logging.getLogger("fabperf").info(message)


def run_main(group: click.Group, argv: list[str] | None = None) -> int:
    """Run a click group and map errors to the documented exit codes (never a traceback)."""
    try:
        with signals_as_interrupts():
            group.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort as exc:
        cause = exc.__cause__ or exc.__context__  # click turns KeyboardInterrupt into Abort
        if isinstance(cause, Terminated):
            click.echo(f"interrupted ({signal.Signals(cause.signum).name})", err=True)
            return 128 + cause.signum
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except Terminated as exc:
        click.echo(f"interrupted ({signal.Signals(exc.signum).name})", err=True)
        return 128 + exc.signum
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return EXIT_INPUT
    except FabperfError as exc:
        kind = "error" if isinstance(exc, InputError) else "failed"
        click.echo(f"{kind}: {exc}", err=True)
        return exc.exit_code
    except Exception as exc:  # the catch-all: a bug, never a traceback
        log = internal_error_log(exc)
        click.echo(f"internal error: {type(exc).__name__}: {_first_line(exc)} "
                   f"(details in {log})", err=True)
        return EXIT_EXTERNAL
    return EXIT_OK


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= 200 else line[:200] + "…"


def exits(group: click.Group) -> Callable[[], None]:
    """The console-script entry point for a group."""

    @functools.wraps(run_main)
    def main() -> None:
        sys.exit(run_main(group))

    return main
