"""Prometheus' answers for one round -> the signals the verdict and the plots read.

Pure: RoundResponses (launch.bench.prometheus, live or recorded) in, RoundSignals out.
Series values are floats; NaN (a quantile with no observations) is dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Point = tuple[float, float]


@dataclass(frozen=True)
class RoundSignals:
    """One round as Prometheus saw it. Keys of the mappings say where a value came from:
    a host name, or "worker N" (Caliper's workerIndex: pushed metrics carry no host)."""

    worker_vm_cpu: Mapping[str, float] = field(default_factory=dict)       # host -> busy 0..1
    worker_process_cpu: Mapping[str, float] = field(default_factory=dict)  # worker -> cores
    eventloop_lag: Mapping[str, float] = field(default_factory=dict)       # worker -> s (p99)
    fabric_cpu: Mapping[str, float] = field(default_factory=dict)  # "host/group" -> share
    percentiles: Mapping[str, float | None] = field(default_factory=dict)  # p50/p95/p99, s
    latency_buckets: tuple[float, ...] = ()     # the histogram's bucket bounds (seconds)
    inflight: tuple[Point, ...] = ()
    latency: tuple[Point, ...] = ()             # mean latency of successful tx over time
    series: Mapping[str, Mapping[str, tuple[Point, ...]]] = field(default_factory=dict)
    """name -> legend -> points: send_rate, finish_rate, committed_rate, latency_pNN,
    cpu_by_group (for the plots)"""


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
    return RoundSignals(
        worker_vm_cpu=_keyed(inst.get("worker_vm_cpu"), ("host",)),
        worker_process_cpu=_keyed(inst.get("worker_process_cpu"), ("workerIndex",),
                                  "worker {}"),
        eventloop_lag=_keyed(inst.get("eventloop_lag"), ("workerIndex",), "worker {}"),
        fabric_cpu=fabric_cpu,
        percentiles=pct,
        latency_buckets=tuple(b for b in buckets if not math.isinf(b) and not math.isnan(b)),
        inflight=inflight,
        latency=one.get("latency_avg", ()),
        series=series,
    )
