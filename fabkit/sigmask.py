"""Ctrl-C, SIGTERM and SIGHUP held back for a window that must not be cut in two.

`signal.pthread_sigmask` runs the Python handlers of any signal already pending *after* it
has changed the mask (CPython's signal_pthread_sigmask_impl calls PyErr_CheckSignals last):
a Ctrl-C that lands just before `old = pthread_sigmask(SIG_BLOCK, ...)` raises
KeyboardInterrupt from that call with the signals blocked and `old` never assigned, and
every later Ctrl-C of the process (and of each thread it starts) stays pending for good.
So the mask is read first, with a call that changes nothing, and put back in a `finally`
that covers the blocking call itself.

A mask is a thread's own: with another thread alive (a server thread, a sampler), the
kernel hands a process-directed signal to a thread that does not block it, and CPython runs
the Python handler in the main thread at its next instruction, inside the window. So `held`,
in the main thread, also swaps the Python handlers of its signals for one that only notes
them, and delivers what it noted once the window has closed."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable, Iterator
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
    """`signals` held back for the block: blocked in this thread and, in the main thread,
    their Python handlers deferred (whichever thread the kernel picks, nothing of theirs
    runs inside). The mask before, whatever raises (a signal pending when the block starts
    included), and the handlers are put back at its end, then what arrived meanwhile is
    delivered (its handler may raise)."""
    signals = frozenset(signals)
    noted: list[int] = []
    swapped: dict[int, Callable[..., object]] = {}
    try:
        if threading.current_thread() is threading.main_thread():
            for sig in sorted(signals):
                handler = signal.getsignal(sig)
                if callable(handler):
                    swapped[sig] = handler
                    signal.signal(sig, lambda s, f: noted.append(s))
        before = current()
        try:
            block(signals)
            yield before
        finally:
            restore(before)
    finally:
        for sig, handler in swapped.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(noted):
            signal.raise_signal(sig)
