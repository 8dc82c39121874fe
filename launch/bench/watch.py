"""Watching a run: the manager's journal polled until it exits, a progress line per poll
(with the live rates from Prometheus), and the registration and overall timeouts."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fabkit.errors import ExternalError, FabperfError
from launch.bench import prometheus, report
from launch.bench.control import (
    MANAGER_UNIT,
    diagnose_registration,
    manager_active,
    manager_journal,
)
from launch.bench.door import Door
from launch.bench.lab import Lab
from launch.bench.prometheus import Prometheus

log = logging.getLogger("fabperf.bench")


@dataclass(frozen=True)
class Timeouts:
    """Seconds for each wait of a run."""

    register: float = 300          # every worker registered with the manager
    poll: float = 5                # between two looks at the manager's journal
    round_slack: float = 300       # per round, on top of twice its duration
    command: float = 120           # one remote command


def progress_line(mlog: report.ManagerLog, rates: Mapping[str, float] | None) -> str | None:
    """The line for the round in progress (None before the first round)."""
    running = [r for r in mlog.rounds if r.finished is None]
    if not running:
        return None
    r = running[-1]
    total = len(mlog.rounds)
    text = f"round {r.label} ({r.index + 1}): "
    if r.progress is None:
        text += "preparing" if r.measured_start is None else "started"
    else:
        p = r.progress
        text += (f"sent {p.submitted}, succeeded {p.succeeded}, failed {p.failed}, "
                 f"unfinished {p.unfinished}")
    if rates:
        text += "; " + ", ".join(f"{k} {v:.1f} TPS" for k, v in rates.items())
    return text if total else None


def finished_line(r: report.RoundLog) -> str:
    if r.error:
        return f"round {r.label} failed: {r.error}"
    res = r.result
    if res is None:
        return f"round {r.label} finished in {r.duration or 0:.1f} s"
    return (f"round {r.label} finished in {r.duration or 0:.1f} s: send rate "
            f"{res.send_rate} TPS, throughput {res.throughput} TPS, succeeded {res.succeeded}, "
            f"failed {res.failed}")


def live_rates(prom: Prometheus, round_index: int, at: float,
               channel: str | None = None) -> dict[str, float]:
    """Current send rate, finished rate (Caliper's throughput, failures included) and the
    ledger's committed rate on the round's channel (Prometheus, last 15 s)."""
    q = prometheus.range_queries(round_index, channel)
    out = {}
    for name, key in (("send", "send_rate"), ("finished", "finish_rate"),
                      ("committed", "committed_rate")):
        data = prom.query(q[key], at)
        vals = [float(x["value"][1]) for x in data.get("result", [])]
        vals = [v for v in vals if not math.isnan(v)]
        if vals:
            out[name] = sum(vals)
    return out


def watch(door: Door, lab: Lab, since: float, timeouts: Timeouts, expected_s: float,
          on_progress: Callable[[str], None], prom: Prometheus | None, *,
          round_channels: Mapping[int, str] | None = None,
          clock: Callable[[], float] = time.time,
          sleep: Callable[[float], None] = time.sleep) -> report.ManagerLog:
    """Poll the manager until it exits; registration and overall timeouts raise
    ExternalError (the caller stops everything and saves what was measured).
    `round_channels`: round index -> its channel (the live committed rate counts it alone)."""
    round_channels = round_channels or {}
    start = clock()
    reported: set[int] = set()
    mlog = report.ManagerLog()
    said = ""       # the last progress line: a state that has not changed is said once
    while True:
        # activity first, then the journal: a manager that ends between the two looks has
        # logged its end by then (the other order took a finished run for a dead one)
        active = manager_active(door, lab)
        mlog = report.parse_manager_log(manager_journal(door, lab, since).splitlines())
        if not active:
            mlog = settle_journal(door, lab, since, mlog, timeouts, sleep)
        for r in mlog.rounds:
            if r.finished is not None and r.index not in reported:
                reported.add(r.index)
                on_progress(finished_line(r))
        if not active:
            return mlog
        if not mlog.connected and clock() - start > timeouts.register:
            missing = diagnose_registration(door, lab, since)
            raise ExternalError(
                f"not every Caliper worker registered with the manager within "
                f"{timeouts.register:.0f}s ({lab.total_workers} expected):\n  "
                + "\n  ".join(missing),
                hint=f"`launch ssh {lab.name} HOST -- journalctl -u caliper-worker@1` "
                     "shows a worker's log")
        if clock() - start > expected_s:
            raise ExternalError(f"the benchmark did not end within {expected_s:.0f}s "
                                f"(manager on {lab.manager_host}, unit {MANAGER_UNIT})")
        rates = None
        running = [r for r in mlog.rounds if r.finished is None and r.measured_start]
        if prom is not None and running:
            try:
                rates = live_rates(prom, running[-1].index, clock(),
                                   round_channels.get(running[-1].index))
            except FabperfError:
                rates = None
        line = progress_line(mlog, rates)
        if line is None and not mlog.connected:
            got = "waiting for workers" if mlog.expected_workers else "manager starting"
            line = f"{got} ({lab.total_workers} processes on {len(lab.workers)} VMs)"
        if line and line != said:
            on_progress(line)
            said = line
        sleep(timeouts.poll)


JOURNAL_SETTLE_LOOKS = 5     # journald writes a stopped unit's last lines asynchronously


def settle_journal(door: Door, lab: Lab, since: float, mlog: report.ManagerLog,
                   timeouts: Timeouts, sleep: Callable[[float], None]) -> report.ManagerLog:
    """The manager's log once its unit is inactive: read again (a second apart, at most
    JOURNAL_SETTLE_LOOKS times) until it says the benchmark finished, so a finished run is
    not taken for a dead one because journald had not written the last lines yet."""
    for _ in range(JOURNAL_SETTLE_LOOKS):
        if mlog.finished:
            break
        sleep(min(1.0, timeouts.poll))
        mlog = report.parse_manager_log(manager_journal(door, lab, since).splitlines())
    return mlog
