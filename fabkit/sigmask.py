"""Ctrl-C, SIGTERM and SIGHUP held back for a window that must not be cut in two.

`signal.pthread_sigmask` runs the Python handlers of any signal already pending *after* it
has changed the mask (CPython's signal_pthread_sigmask_impl calls PyErr_CheckSignals last):
a Ctrl-C that lands just before `old = pthread_sigmask(SIG_BLOCK, ...)` raises
KeyboardInterrupt from that call with the signals blocked and `old` never assigned, and
every later Ctrl-C of the process (and of each thread it starts) stays pending for good.
So the mask is read first, with a call that changes nothing, and put back in a `finally`
that covers the blocking call itself."""

from __future__ import annotations

import signal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

INTERRUPTS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


def current() -> set[int]:
    """The calling thread's mask, unchanged (a pending signal's handler may raise here, with
    nothing changed yet)."""
    return signal.pthread_sigmask(signal.SIG_BLOCK, ())


def block(signals: Iterable[int] = INTERRUPTS) -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)


def restore(mask: Iterable[int]) -> None:
    """Back to `mask` (what was held back is delivered now: its handler may raise)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)


@contextmanager
def held(signals: Iterable[int] = INTERRUPTS) -> Iterator[set[int]]:
    """`signals` blocked in this thread for the block; the mask before, whatever raises
    (a signal pending when the block starts included), is restored at its end."""
    before = current()
    try:
        block(signals)
        yield before
    finally:
        restore(before)
