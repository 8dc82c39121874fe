"""fabkit.sigmask: a window with Ctrl-C held back never leaves it held back.

CPython's `signal.pthread_sigmask` runs the handlers of signals already pending after it
has changed the mask, so a Ctrl-C that lands as a window opens raises KeyboardInterrupt from
the blocking call itself, with the signals blocked. The code before assigned the old mask
from that call (`old = pthread_sigmask(SIG_BLOCK, ...)`) and lost it: every later Ctrl-C of
the process stayed pending (the full suite, CI's order, was seen hanging in a Ctrl-C test
after the moto Ctrl-C tests, SIGINT no longer stopping pytest). `blocking_call_raises`
makes that race happen every time.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabkit import sigmask
from launch.render import crypto, transaction


class Boom(Exception):
    pass


def test_pthread_sigmask_raises_after_changing_the_mask() -> None:
    """The premise, on the real CPython: a pending signal's handler raises out of the very
    call that changed the mask."""
    old = signal.signal(signal.SIGUSR1, lambda s, f: (_ for _ in ()).throw(Boom()))
    before = sigmask.current()
    try:
        sigmask.block({signal.SIGUSR1})
        # to this thread: sent to the process, it would go to any other thread alive that
        # does not block it (CI's one-process run has moto's server thread), and the
        # handler would run at once
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)   # pending while blocked
        with pytest.raises(Boom):
            sigmask.restore(before)                  # delivered as the call returns
        assert sigmask.current() == before           # ... after the mask changed
    finally:
        sigmask.restore(before)
        signal.signal(signal.SIGUSR1, old)


@pytest.fixture
def blocking_call_raises(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every call that blocks signals changes the mask, then raises KeyboardInterrupt, as
    CPython does when a Ctrl-C is pending."""
    real = signal.pthread_sigmask
    before = sigmask.current()

    def racing(how: int, mask: object) -> set[int]:
        out = real(how, mask)   # type: ignore[arg-type]
        if how == signal.SIG_BLOCK and mask:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(signal, "pthread_sigmask", racing)
    yield
    monkeypatch.undo()
    leaked = sigmask.current()
    sigmask.restore(before)
    assert leaked == before, f"signals left blocked: {sorted(set(leaked) - set(before))}"


def test_held_restores_the_mask_when_the_blocking_call_raises(blocking_call_raises: None
                                                              ) -> None:
    with pytest.raises(KeyboardInterrupt), sigmask.held():
        raise AssertionError("the window never opened")


def test_held_blocks_inside_and_restores_after() -> None:
    before = sigmask.current()
    with sigmask.held() as was:
        assert was == before
        assert sigmask.INTERRUPTS <= sigmask.current()
    assert sigmask.current() == before


def test_a_swap_interrupted_as_it_starts_changes_nothing_and_leaves_no_mask(
        tmp_path: Path, blocking_call_raises: None) -> None:
    staging, out = tmp_path / "staging", tmp_path / "out"
    staging.mkdir()
    (staging / "new").write_text("new")
    out.mkdir()
    (out / "old").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        transaction.swap(staging, out)
    assert (out / "old").read_text() == "old" and (staging / "new").is_file()


def test_a_big_tree_interrupted_as_it_forks_forks_nothing_and_leaves_no_mask(
        monkeypatch: pytest.MonkeyPatch, blocking_call_raises: None) -> None:
    forks: list[int] = []
    monkeypatch.setattr(os, "fork", lambda: forks.append(1) or 0)
    monkeypatch.setattr(crypto.threading, "active_count", lambda: 1)
    fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(KeyboardInterrupt):
        crypto._in_two_processes(list(range(crypto._FORK_MIN)),   # type: ignore[arg-type]
                                 lambda job: {"issued": 1, "kept": 0})
    assert forks == []
    assert len(os.listdir("/proc/self/fd")) == fds          # the pipe is closed


def test_held_defers_a_signal_another_thread_receives() -> None:
    """With a second thread alive, the kernel gives a process-directed signal to that thread
    (the main thread blocks it); its handler would still run in the main thread, inside the
    window, but for the deferral. Delivered once the window closes."""
    ran: list[str] = []
    old = signal.signal(signal.SIGUSR1, lambda s, f: (_ for _ in ()).throw(Boom()))
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    before = sigmask.current()
    try:
        with pytest.raises(Boom):
            with sigmask.held({signal.SIGUSR1}):
                os.kill(os.getpid(), signal.SIGUSR1)
                for _ in range(20):          # time for the other thread to take it, and
                    time.sleep(0.01)         # instructions for a handler to run
                    ran.append("x")
                ran.append("window closed")
        assert ran[-1] == "window closed"
        assert sigmask.current() == before
        assert signal.getsignal(signal.SIGUSR1) is not None
    finally:
        stop.set()
        other.join()
        sigmask.restore(before)
        signal.signal(signal.SIGUSR1, old)


def test_held_puts_the_handlers_back_and_delivers_nothing_when_nothing_came() -> None:
    handler = signal.getsignal(signal.SIGINT)
    with sigmask.held():
        assert signal.getsignal(signal.SIGINT) is not handler
    assert signal.getsignal(signal.SIGINT) is handler
