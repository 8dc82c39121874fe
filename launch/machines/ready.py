"""Readiness of a launched host, in layers, each with its own timeout and a useful error.

    process alive -> SSH answers -> `cloud-init status --wait` finished without error
                  -> the ready marker (launch.spec.contract.READY_FILE) holds this launch's nonce

A failure names the host and the layer and shows the tail of the host's console (the
serial log for qemu) and, when the node wrote one, the content of FAILED_FILE. Providers
supply a Probe per host; this module knows nothing about QEMU or clouds.
"""

from __future__ import annotations

import logging
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from enum import StrEnum
from typing import cast

from fabkit import runner
from fabkit.errors import ExternalError
from launch.spec.contract import FAILED_FILE, READY_FILE

log = logging.getLogger("fabperf.ready")

CONSOLE_TAIL_LINES = 40


class Layer(StrEnum):
    """The readiness layers, in order."""

    PROCESS = "process"
    SSH = "ssh"
    CLOUD_INIT = "cloud-init"
    MARKER = "ready-marker"


# what `launch up` says as each host passes each layer (minutes pass between them)
PASSED = {Layer.PROCESS: "process running", Layer.SSH: "SSH answers",
          Layer.CLOUD_INIT: "cloud-init finished",
          Layer.MARKER: "role ready, this launch's marker"}


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each layer (TCG on 2 shared cores boots in about a minute)."""

    process: float = 30
    ssh: float = 600
    cloud_init: float = 1800
    marker: float = 300
    bootstrap: float = 2400   # the channel bootstrap job (launch.lifecycle.bootstrap), last
    poll: float = 3
    say: float = 60           # a layer still waited for is said this often (cloud-init)


@dataclass(frozen=True)
class Probe:
    """How readiness reaches one host; providers build these."""

    host: str
    alive: Callable[[], bool]
    # (command, timeout) -> Completed; must not raise on a non-zero exit
    ssh: Callable[[str, float], runner.Completed]
    console_tail: Callable[[int], str]
    died: Callable[[], str] = lambda: ""   # why the process is gone, when known


@dataclass(frozen=True)
class HostReadiness:
    """How long each layer took on one host, and warnings (cloud-init's recoverable errors)."""

    host: str
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


class NotReady(ExternalError):
    """A host did not pass a readiness layer."""

    def __init__(self, host: str, layer: Layer, detail: str, console: str,
                 failed: str = "") -> None:
        parts = [f"host {host}: not ready at layer '{layer}': {detail}"]
        if failed:
            parts.append(f"  {FAILED_FILE} on the node says:\n" + _indent(failed))
        if console:
            parts.append(f"  console (last {CONSOLE_TAIL_LINES} lines):\n" + _indent(console))
        super().__init__("\n".join(parts),
                         hint=f"`launch ssh ENV {host}` to look around; "
                              "`launch down ENV` cleans up")
        self.host = host
        self.layer = layer


def _indent(text: str) -> str:
    return "\n".join("    " + ln for ln in text.rstrip().splitlines())


def _ssh_ok(probe: Probe, command: str, timeout: float) -> runner.Completed | None:
    try:
        return probe.ssh(command, timeout)
    except ExternalError as exc:   # the runner's timeout
        log.debug("%s: %s", probe.host, exc)
        return None


def wait_host(
    probe: Probe,
    nonce: str,
    timeouts: Timeouts | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> HostReadiness:
    """Walk one host through the layers; raise NotReady naming the layer that failed."""
    timeouts = timeouts or Timeouts()
    seconds: dict[str, float] = {}
    warnings: list[str] = []

    def fail(layer: Layer, detail: str, failed: str = "") -> NotReady:
        return NotReady(probe.host, layer, detail, probe.console_tail(CONSOLE_TAIL_LINES), failed)

    def check_alive(layer: Layer) -> None:
        if not probe.alive():
            why = probe.died()
            raise fail(layer, "the VM process is gone" + (f": {why}" if why else ""))

    # 1. process alive
    start = clock()
    while not probe.alive():
        if clock() - start > timeouts.process:
            raise fail(Layer.PROCESS, f"no running process after {timeouts.process:.0f}s"
                       + (f": {probe.died()}" if probe.died() else ""))
        sleep(min(1.0, timeouts.poll))
    seconds[Layer.PROCESS] = clock() - start
    _passed(probe.host, Layer.PROCESS, seconds)

    # 2. SSH answers
    start = clock()
    while True:
        check_alive(Layer.SSH)
        res = _ssh_ok(probe, "true", 30)
        if res is not None and res.ok:
            break
        if clock() - start > timeouts.ssh:
            last = "timed out" if res is None else (res.stderr.strip()
                                                    or f"exit {res.returncode}")
            raise fail(Layer.SSH, f"SSH did not answer within {timeouts.ssh:.0f}s (last: {last})")
        sleep(timeouts.poll)
    seconds[Layer.SSH] = clock() - start
    _passed(probe.host, Layer.SSH, seconds)

    # 3. cloud-init finished; 0 done, 2 recoverable errors (warn), anything else failed;
    # waited for in slices of `say` seconds, each slice that ends with cloud-init still
    # running said with its stage (a host's part can take minutes)
    start = clock()
    while True:
        check_alive(Layer.CLOUD_INIT)
        remaining = max(10.0, timeouts.cloud_init - (clock() - start))
        slice_s = max(1, round(min(remaining, timeouts.say)))
        res = _ssh_ok(probe, f"timeout {slice_s} cloud-init status --wait >/dev/null; rc=$?; "
                             "cloud-init status --long; exit $rc", slice_s + 30)
        if res is not None and res.returncode in (0, 2):
            if res.returncode == 2:
                warnings.append(f"cloud-init finished with recoverable errors:\n{res.stdout}")
            break
        if res is not None and res.returncode == STILL_RUNNING:
            elapsed = clock() - start
            if elapsed > timeouts.cloud_init:
                raise fail(Layer.CLOUD_INIT, f"cloud-init did not finish within "
                           f"{timeouts.cloud_init:.0f}s:\n" + _indent(res.stdout))
            stage = running_stage(res.stdout)
            log.info("%s: cloud-init still running%s (%.0fs)", probe.host,
                     f", {stage}" if stage else "", elapsed)
            continue
        if res is not None and res.returncode != 255:   # 255: ssh itself failed, retry
            raise fail(Layer.CLOUD_INIT, f"cloud-init failed (exit {res.returncode}):\n"
                       + _indent(res.stdout + res.stderr), _read_failed(probe))
        if clock() - start > timeouts.cloud_init:
            raise fail(Layer.CLOUD_INIT,
                       f"cloud-init did not finish within {timeouts.cloud_init:.0f}s")
        sleep(timeouts.poll)
    seconds[Layer.CLOUD_INIT] = clock() - start
    _passed(probe.host, Layer.CLOUD_INIT, seconds)

    # 4. the ready marker carries this launch's nonce
    start = clock()
    cmd = f"sudo -n cat {shlex.quote(READY_FILE)} 2>/dev/null"
    while True:
        failed = _read_failed(probe)
        if failed:
            raise fail(Layer.MARKER, "the node reported a failure", failed)
        res = _ssh_ok(probe, cmd, 30)
        found = res.stdout.strip() if res is not None and res.ok else ""
        if found == nonce:
            break
        if clock() - start > timeouts.marker:
            what = f"found {found!r}" if found else "absent"
            raise fail(Layer.MARKER, f"{READY_FILE} does not hold this launch's nonce "
                       f"within {timeouts.marker:.0f}s ({what})")
        check_alive(Layer.MARKER)
        sleep(timeouts.poll)
    seconds[Layer.MARKER] = clock() - start
    _passed(probe.host, Layer.MARKER, seconds)
    return HostReadiness(probe.host, {k: round(v, 1) for k, v in seconds.items()},
                         tuple(warnings))


STILL_RUNNING = 124     # `timeout`'s exit code: the slice ended with cloud-init running


def running_stage(status_long: str) -> str:
    """What `cloud-init status --long` says cloud-init is doing ("stage modules-final" from
    Debian 12's "detail:\nRunning in stage: modules-final"), or ""."""
    lines = [ln.strip() for ln in status_long.splitlines()]
    for i, ln in enumerate(lines):
        if ln.startswith("detail:"):
            detail = ln.removeprefix("detail:").strip() or next(
                (x for x in lines[i + 1:] if x), "")
            if detail.startswith("Running in stage:"):
                return "stage " + detail.removeprefix("Running in stage:").strip()
            return detail
    return ""


def _passed(host: str, layer: Layer, seconds: dict[str, float]) -> None:
    """Say that a host passed a layer, and when (its time since the first layer began)."""
    log.info("%s: %s (%.0fs, %.0fs in all)", host, PASSED[layer], seconds[layer],
             sum(seconds.values()))


def _read_failed(probe: Probe) -> str:
    res = _ssh_ok(probe, f"sudo -n cat {shlex.quote(FAILED_FILE)} 2>/dev/null", 30)
    return res.stdout.strip() if res is not None and res.ok else ""


class _Stopped(Exception):
    """A waiter told to stop (the main thread was interrupted)."""


def _result(fut: Future[HostReadiness]) -> HostReadiness:
    """fut.result(), looked at every second: a signal that arrives just before the main
    thread blocks on a lock is only handled when the lock returns, and a waiter may hold it
    for its whole timeout."""
    while True:
        try:
            return fut.result(timeout=1.0)
        except FutureTimeout:
            continue


def wait_all(probes: Sequence[Probe], nonce: str, timeouts: Timeouts | None = None,
             **kw: object) -> list[HostReadiness]:
    """Wait for every host in parallel; raise one error listing every host that failed."""
    if not probes:
        return []
    results: dict[str, HostReadiness] = {}
    errors: list[NotReady] = []
    # Ctrl-C (or SIGTERM, raised as an interrupt) in the main thread stops every waiter at
    # its next pause, so the caller's rollback starts at once instead of after the timeouts
    stop = threading.Event()
    pause = cast("Callable[[float], None] | None", kw.pop("sleep", None))

    def sleep(seconds: float) -> None:
        if pause is not None:
            pause(seconds)
        if stop.wait(0 if pause is not None else seconds):
            raise _Stopped

    pool = ThreadPoolExecutor(max_workers=min(8, len(probes)))
    try:
        # kw: wait_host's keyword options (clock, probes' doors), passed through untyped
        futures = {pool.submit(wait_host, p, nonce, timeouts, sleep=sleep, **kw): p  # type: ignore[arg-type]
                   for p in probes}
        for fut, p in futures.items():
            try:
                results[p.host] = _result(fut)
            except NotReady as exc:
                errors.append(exc)
    except BaseException:
        stop.set()
        # a waiter blocked in a command (ssh ... cloud-init status --wait) sees `stop` only
        # when the command returns: a SIGTERM to this process alone would wait it out
        runner.terminate_running()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if errors:
        if len(errors) == 1:
            raise errors[0]
        raise ExternalError(f"{len(errors)} hosts not ready:\n"
                            + "\n".join(e.message for e in errors))
    return [results[p.host] for p in probes]
