"""Running the real command line against hostile input (issue 25): every run must end in a
few seconds with exit 2 and an error, never an internal error, never a hang.

A command that blocks (a FIFO opened for reading waits for a writer) would hang the suite:
each run happens in a thread, and one still running after the deadline is released by
opening the FIFOs for writing, then reported as a failure."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from fabkit.clikit import run_main

REPO = Path(__file__).resolve().parents[3]
DEADLINE = 5.0
BIG = 50 * 2**20


@dataclass(frozen=True)
class Ran:
    code: int | None
    out: str
    err: str
    seconds: float

    @property
    def text(self) -> str:
        return self.out + self.err


def run_cli(group: click.Group, argv: list[str], capsys: pytest.CaptureFixture[str],
            fifos: tuple[Path, ...] = ()) -> Ran:
    """Run ``group`` with argv through run_main (exit codes as the console script)."""
    capsys.readouterr()
    codes: list[int] = []
    t0 = time.monotonic()
    worker = threading.Thread(target=lambda: codes.append(run_main(group, argv)), daemon=True)
    worker.start()
    worker.join(DEADLINE)
    seconds = time.monotonic() - t0
    if worker.is_alive():
        for fifo in fifos:          # release a reader blocked in open() or read()
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(5)
    got = capsys.readouterr()
    return Ran(codes[0] if codes else None, got.out, got.err, seconds)


def assert_refused(ran: Ran, *names: str) -> None:
    """Exit 2 within the deadline, an error that names each of ``names``, no internal error."""
    assert ran.code is not None and ran.seconds < DEADLINE, \
        f"still running after {DEADLINE} s (blocked?); output so far: {ran.text[-2000:]}"
    assert "internal error" not in ran.text, ran.text[-2000:]
    assert ran.code == 2, (ran.code, ran.text[-2000:])
    for name in names:
        assert name in ran.err, (name, ran.err[-2000:])


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def big_file(path: Path, size: int = BIG) -> Path:
    """A file of ``size`` bytes (sparse: no disk used), JSON-looking at the start."""
    with open(path, "wb") as f:
        f.write(b'{"schema": "' + b"x" * 64)
        f.truncate(size)
    return path


def copy_tree(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest
