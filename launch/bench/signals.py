"""Prometheus' answers for one round -> the signals the verdict and the plots read.

Pure: RoundResponses (launch.bench.prometheus, live or recorded) in, RoundSignals out.
Series values are floats; NaN (a quantile with no observations) is dropped. A signal with
no answer says why (`RoundSignals.missing`): no series, not asked by the fabperf that
recorded the bundle, or no Prometheus answers at all (monitor down, fetch failed); the
verdict names it with where it should have come from (SOURCES).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from launch.bench.prometheus import SCRAPE_INTERVAL_S

Point = tuple[float, float]


# signal -> (what it is, where it comes from): what a verdict names when it is missing
SOURCES: Mapping[str, tuple[str, str]] = {
    "worker_vm_cpu": ("worker VM CPU", "node_exporter's node_cpu_seconds_total (job node) on "
                      "the worker VMs, or fabperf_cgroup_cpu_seconds_total for a container"),
    "worker_process_cpu": ("worker process CPU", "the workers' pushed "
                           "process_cpu_seconds_total (Pushgateway, job caliper-workers)"),
    "eventloop_lag": ("worker event-loop lag", "the workers' pushed "
                      "nodejs_eventloop_lag_seconds samples (Pushgateway, job "
                      "caliper-workers)"),
    "fabric_cpu": ("Fabric process CPU", "process-exporter's "
                   "namedprocess_namegroup_cpu_seconds_total (job process) on the Fabric VMs, "
                   "or an operations endpoint's process_cpu_seconds_total with the spec's "
                   "cpus (BYOF)"),
    "fabric_vm_cpu": ("Fabric VM CPU", "node_exporter (job node) on the peer/orderer VMs, or "
                      "fabperf_cgroup_cpu_seconds_total for a container"),
    "disk_busy": ("peer/orderer disk busy", "node_exporter's node_disk_io_time_seconds_total "
                  "(job node) on the peer/orderer VMs"),
    "ledger_write": ("Fabric ledger write time", "the operations endpoints' "
                     "ledger_blockstorage_commit_time, ledger_statedb_commit_time and "
                     "consensus_etcdraft_data_persist_duration (job fabric)"),
    "inflight": ("transactions in flight", "the workers' pushed caliper_tx_submitted and "
                 "caliper_tx_finished (Pushgateway), or the manager log's 'Transaction Info' "
                 "lines"),
}

# signal -> the instant (or range) query it is read from (launch.bench.prometheus)
QUERY_OF = {"worker_vm_cpu": "worker_vm_cpu", "worker_process_cpu": "worker_process_cpu",
            "eventloop_lag": "eventloop_lag_samples", "fabric_cpu": "fabric_cpu",
            "fabric_vm_cpu": "fabric_vm_cpu", "disk_busy": "disk_busy",
            "ledger_write": "ledger_write", "inflight": "inflight"}
NOT_RECORDED = ("not asked: the bundle was recorded by a fabperf that did not ask this "
                "query")


@dataclass(frozen=True)
class RoundSignals:
    """One round as Prometheus saw it. Keys of the mappings say where a value came from:
    a host name, or "worker N" (Caliper's workerIndex: pushed metrics carry no host)."""

    worker_vm_cpu: Mapping[str, float] = field(default_factory=dict)       # host -> busy 0..1
    worker_process_cpu: Mapping[str, float] = field(default_factory=dict)  # worker -> cores
    eventloop_lag: Mapping[str, float] = field(default_factory=dict)
    """worker -> the median of its instantaneous event-loop lag samples in the round (s)"""
    fabric_cpu: Mapping[str, float] = field(default_factory=dict)  # "host/group" -> share
    fabric_vm_cpu: Mapping[str, float] = field(default_factory=dict)  # host -> busy 0..1
    disk_busy: Mapping[str, float] = field(default_factory=dict)   # host -> busiest disk 0..1
    ledger_write: Mapping[str, float] = field(default_factory=dict)
    """"host/role" -> seconds per second the node spent in synchronous ledger writes"""
    worker_vm_cores: Mapping[str, float] = field(default_factory=dict)  # host -> vCPUs
    fabric_down: Mapping[str, float] = field(default_factory=dict)
    """"host/role" -> seconds of the round its operations endpoint did not answer (up == 0)"""
    monitor_gap_s: float | None = None
    """seconds of the round the monitor's Prometheus has no scrape of itself for (scrapes
    the window should hold - those it holds, x the interval); None: not asked (a bundle
    recorded before the question) or no answer"""
    percentiles: Mapping[str, float | None] = field(default_factory=dict)  # p50/p95/p99, s
    latency_buckets: tuple[float, ...] = ()     # the histogram's bucket bounds (seconds)
    inflight: tuple[Point, ...] = ()
    latency: tuple[Point, ...] = ()             # mean latency of successful tx over time
    inflight_source: str = ""     # "pushgateway" or "manager log"
    series: Mapping[str, Mapping[str, tuple[Point, ...]]] = field(default_factory=dict)
    """name -> legend -> points: send_rate, finish_rate, committed_rate, latency_pNN,
    cpu_by_group, worker_vm_cpu, worker_process_cpu, fabric_vm_cpu (for the plots)"""
    missing: Mapping[str, str] = field(default_factory=dict)
    """signal -> why it has no value (see the module docstring)"""
    unavailable: Mapping[str, str] = field(default_factory=dict)
    """signal -> why this environment cannot have it (a BYOF network runs no fabperf
    exporter): its rule does not apply rather than miss"""


def absent(reason: str, **known: Any) -> RoundSignals:
    """Signals of a round Prometheus gave nothing for: every signal missing for `reason`."""
    return RoundSignals(missing=dict.fromkeys(SOURCES, reason), **known)


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def vector(data: Any) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of an instant query's vector (or scalar) answer; NaN dropped."""
    if not data:
        return []
    if data.get("resultType") == "scalar":
        v = _num(data["result"][1])
        return [] if math.isnan(v) else [({}, v)]
    out = []
    for item in data.get("result", []):
        v = _num(item["value"][1])
        if not math.isnan(v) and not math.isinf(v):
            out.append((dict(item.get("metric", {})), v))
    return out


def matrix(data: Any) -> list[tuple[dict[str, str], tuple[Point, ...]]]:
    """(labels, points) of a range query's matrix answer; NaN points dropped."""
    out = []
    for item in (data or {}).get("result", []):
        pts = tuple((float(t), _num(v)) for t, v in item.get("values", []))
        pts = tuple(p for p in pts if not math.isnan(p[1]) and not math.isinf(p[1]))
        out.append((dict(item.get("metric", {})), pts))
    return out


def _keyed(data: Any, key: Sequence[str], fmt: str = "{}") -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, v in vector(data):
        out[fmt.format(*(labels.get(k, "?") for k in key))] = v
    return out


def _legend(labels: Mapping[str, str]) -> str:
    """'fabric peer', 'success', 'all': the host first, then the other label values."""
    order = sorted(labels, key=lambda k: (k != "host", k))
    return " ".join(labels[k] for k in order) or "all"


def slope(points: Sequence[Point]) -> float:
    """Least-squares slope (value per second) of points; 0 for fewer than two."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (v - mv) for t, v in points) / den if den else 0.0


def operations_cpu(data: Any) -> dict[str, float]:
    """"host/role" -> share of its host's vCPUs, from the operations endpoints' process CPU
    (cores) of the series that carry a `cpus` label (BYOF endpoints whose spec gives it)."""
    out: dict[str, float] = {}
    for labels, cores in vector(data):
        try:
            cpus = int(labels.get("cpus", ""))
        except ValueError:
            continue
        if cpus > 0:
            out[f"{labels.get('host', '?')}/{labels.get('role', '?')}"] = cores / cpus
    return out


def from_responses(resp: Any) -> RoundSignals:
    """RoundSignals of a RoundResponses."""
    inst, rng = resp.instant, resp.ranges
    start, end = resp.window.start, resp.window.end

    def inside(pts: tuple[Point, ...]) -> tuple[Point, ...]:
        return tuple(p for p in pts if start <= p[0] <= end)

    series: dict[str, dict[str, tuple[Point, ...]]] = {}
    for name, data in rng.items():
        series[name] = {_legend(labels): inside(pts) for labels, pts in matrix(data)}
    one = {name: next(iter(s.values()), ()) for name, s in series.items()}
    buckets = sorted(_num(lab.get("le")) for lab, _ in vector(inst.get("latency_buckets")))
    pct: dict[str, float | None] = {}
    for q in ("p50", "p95", "p99"):
        found = vector(inst.get(f"latency_{q}"))
        pct[q] = found[0][1] if found else None
    # the pushed counters drop to zero when a worker ends its round (Caliper resets its
    # registry before the last push): such samples are no in-flight measurement
    inflight = tuple(p for p in one.get("inflight", ()) if p[1] >= 0)
    fabric_cpu = _keyed(inst.get("fabric_cpu"), ("host", "groupname"), "{}/{}")
    if not fabric_cpu:
        fabric_cpu = operations_cpu(inst.get("fabric_process_cpu"))
    failed_scrapes = _keyed(inst.get("fabric_down"), ("host", "role"), "{}/{}")
    down = {k: n * SCRAPE_INTERVAL_S for k, n in failed_scrapes.items() if n > 0}
    scrapes = vector(inst.get("monitor_scrapes"))
    expected = int(resp.window.seconds // SCRAPE_INTERVAL_S)
    gap = None
    if scrapes:
        # (no series: not one self-scrape in the window, or a monitor without the job:
        # every other series of the round is then missing too, and says so)
        gap = float(max(0, expected - int(scrapes[0][1])) * SCRAPE_INTERVAL_S)
    got = RoundSignals(
        monitor_gap_s=gap,
        worker_vm_cpu=_keyed(inst.get("worker_vm_cpu"), ("host",)),
        worker_process_cpu=_keyed(inst.get("worker_process_cpu"), ("workerIndex",),
                                  "worker {}"),
        eventloop_lag=_keyed(inst.get("eventloop_lag_samples"), ("workerIndex",), "worker {}"),
        fabric_cpu=fabric_cpu,
        fabric_vm_cpu=_keyed(inst.get("fabric_vm_cpu"), ("host",)),
        disk_busy=_keyed(inst.get("disk_busy"), ("host",)),
        ledger_write=_keyed(inst.get("ledger_write"), ("host", "role"), "{}/{}"),
        worker_vm_cores=_keyed(inst.get("worker_vm_cores"), ("host",)),
        fabric_down=down,
        percentiles=pct,
        latency_buckets=tuple(b for b in buckets if not math.isinf(b) and not math.isnan(b)),
        inflight=inflight,
        latency=one.get("latency_avg", ()),
        inflight_source="pushgateway" if inflight else "",
        series=series,
    )
    missing = {}
    for name, query in QUERY_OF.items():
        if getattr(got, name):
            continue
        asked = rng if name == "inflight" else inst
        missing[name] = "no series in the round's window" if query in asked else NOT_RECORDED
    if "eventloop_lag_samples" not in inst and "eventloop_lag" in inst:
        missing["eventloop_lag"] = (NOT_RECORDED + " (the bundle's eventloop_lag is the p99 "
                                    "since the worker started, not this round's: not used)")
    return replace(got, missing=missing)
