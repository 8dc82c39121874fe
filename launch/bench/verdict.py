"""The bottleneck verdict of one round: load-generator-bound, fabric-bound or headroom.

A pure function of the round's numbers (Caliper's report) and its signals (the monitor's
Prometheus over the round window, launch.bench.signals). Every rule is evaluated and kept
as a Check with its value, its threshold and the host it came from, fired or not, so a
verdict always carries the numbers that made it (and `headroom` the numbers that did not
fire). The load generator is judged first: when it could not send what was asked, nothing
can be said about Fabric's limit, so any load-generator rule wins; the Fabric rules that
fired as well stay in the evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from launch.bench.signals import RoundSignals, slope
from launch.spec.thresholds import Thresholds


class Verdict(StrEnum):
    """What limited a round."""

    LOAD_GENERATOR_BOUND = "load-generator-bound"
    FABRIC_BOUND = "fabric-bound"
    HEADROOM = "headroom"
    INCONCLUSIVE = "inconclusive"   # the round produced no numbers (failed, interrupted)


class Side(StrEnum):
    LOAD_GENERATOR = "load-generator"
    FABRIC = "fabric"


@dataclass(frozen=True)
class Check:
    """One rule evaluated on one round: its value, its threshold and where it came from.
    `fired` is None when the data was missing (the rule could not be evaluated)."""

    rule: str
    side: Side
    fired: bool | None
    value: float | None
    threshold: float
    where: str          # host, worker or "caliper report"
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "side": self.side.value, "fired": self.fired,
                "value": None if self.value is None else round(self.value, 4),
                "threshold": self.threshold, "where": self.where, "detail": self.detail}


@dataclass(frozen=True)
class RoundVerdict:
    """The verdict of a round and every check behind it."""

    verdict: Verdict
    checks: tuple[Check, ...]

    @property
    def reasons(self) -> tuple[Check, ...]:
        """The checks that fired."""
        return tuple(c for c in self.checks if c.fired)

    @property
    def missing(self) -> tuple[str, ...]:
        """Rules that had no data."""
        return tuple(c.rule for c in self.checks if c.fired is None)

    def summary(self) -> str:
        """One line: the verdict and the evidence that fired (or the closest misses)."""
        shown = self.reasons or tuple(sorted(
            (c for c in self.checks if c.value is not None and c.threshold),
            key=lambda c: -_closeness(c))[:2])
        return f"{self.verdict.value}: " + "; ".join(c.detail for c in shown) \
            if shown else self.verdict.value

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict.value, "summary": self.summary(),
                "evidence": [c.to_json() for c in self.reasons],
                "checks": [c.to_json() for c in self.checks],
                "missing_data": list(self.missing)}


def _closeness(c: Check) -> float:
    if c.value is None or not c.threshold:
        return 0.0
    # ratios fire below their threshold, the rest above
    return c.threshold / c.value if c.rule in LOWER_IS_WORSE and c.value else \
        c.value / c.threshold


LOWER_IS_WORSE = {"send-rate", "throughput"}


@dataclass(frozen=True)
class RoundNumbers:
    """What the verdict needs from Caliper's report (per round)."""

    requested_tps: float | None   # None: not a fixed-rate round
    send_rate: float | None
    throughput: float | None
    succeeded: int
    failed: int


def _max_item(values: Mapping[str, float]) -> tuple[str, float] | None:
    return max(values.items(), key=lambda kv: kv[1]) if values else None


def _above(rule: str, side: Side, values: Mapping[str, float], threshold: float,
           fmt: str, what: str) -> Check:
    worst = _max_item(values)
    if worst is None:
        return Check(rule, side, None, None, threshold, "", f"{what}: no data")
    where, value = worst
    fired = value > threshold
    rel = ">" if fired else "<="
    return Check(rule, side, fired, value, threshold, where,
                 f"{what} {fmt.format(value)} on {where} ({rel} {fmt.format(threshold)})")


def judge(numbers: RoundNumbers, signals: RoundSignals,
          thresholds: Thresholds | None = None) -> RoundVerdict:
    """The verdict of one round (see the module docstring and Thresholds)."""
    t = thresholds or Thresholds()
    lg, fb = Side.LOAD_GENERATOR, Side.FABRIC
    if numbers.succeeded + numbers.failed == 0 and numbers.send_rate is None:
        return RoundVerdict(Verdict.INCONCLUSIVE, (Check(
            "round-numbers", lg, None, None, 0, "caliper report",
            "the round has no numbers (failed or interrupted)"),))
    checks: list[Check] = []

    # --- load generator ---------------------------------------------------------------
    if numbers.requested_tps and numbers.send_rate is not None:
        ratio = numbers.send_rate / numbers.requested_tps
        fired = ratio < t.send_rate_ratio
        checks.append(Check(
            "send-rate", lg, fired, ratio, t.send_rate_ratio, "caliper report",
            f"send rate {numbers.send_rate:.1f} TPS of {numbers.requested_tps:g} requested "
            f"({ratio:.0%}, {'<' if fired else '>='} {t.send_rate_ratio:.0%})"))
    else:
        checks.append(Check("send-rate", lg, None, None, t.send_rate_ratio, "caliper report",
                            "send rate: no single requested rate (not a fixed-rate round)"
                            if not numbers.requested_tps else "send rate: not reported"))
    checks.append(_above("worker-vm-cpu", lg, signals.worker_vm_cpu, t.worker_cpu, "{:.0%}",
                         "worker VM CPU busy"))
    checks.append(_above("worker-process-cpu", lg, signals.worker_process_cpu, t.worker_cpu,
                         "{:.2f} cores", "worker process CPU"))
    checks.append(_above("eventloop-lag", lg, signals.eventloop_lag, t.eventloop_lag_s,
                         "{:.3f} s", "worker event-loop lag p99"))

    # --- Fabric -------------------------------------------------------------------------
    checks.append(_above("fabric-cpu", fb, signals.fabric_cpu, t.fabric_cpu, "{:.0%}",
                         "Fabric process CPU (share of the VM's vCPUs)"))
    if numbers.send_rate and numbers.throughput is not None:
        ratio = numbers.throughput / numbers.send_rate
        fired = ratio < t.throughput_ratio
        checks.append(Check(
            "throughput", fb, fired, ratio, t.throughput_ratio, "caliper report",
            f"throughput {numbers.throughput:.1f} TPS ({numbers.failed} failed) of send rate "
            f"{numbers.send_rate:.1f} ({ratio:.0%}, {'<' if fired else '>='} "
            f"{t.throughput_ratio:.0%})"))
    else:
        checks.append(Check("throughput", fb, None, None, t.throughput_ratio, "caliper report",
                            "throughput: not reported"))
    checks.append(_unfinished(signals, numbers, t))
    checks.append(_latency_climb(signals, t))

    fired_lg = any(c.fired for c in checks if c.side is lg)
    fired_fb = any(c.fired for c in checks if c.side is fb)
    verdict = Verdict.LOAD_GENERATOR_BOUND if fired_lg else \
        Verdict.FABRIC_BOUND if fired_fb else Verdict.HEADROOM
    return RoundVerdict(verdict, tuple(checks))


def _unfinished(signals: RoundSignals, numbers: RoundNumbers, t: Thresholds) -> Check:
    pts = signals.inflight
    if len(pts) < 3 or not numbers.send_rate:
        return Check("unfinished-growth", Side.FABRIC, None, None, t.unfinished_growth,
                     "pushgateway", "transactions in flight: too few samples")
    growth = slope(pts) / numbers.send_rate
    peak = max(v for _, v in pts)
    fired = growth > t.unfinished_growth and peak > t.unfinished_min
    return Check("unfinished-growth", Side.FABRIC, fired, growth, t.unfinished_growth,
                 "all workers",
                 f"in flight grows at {growth:.1%} of the send rate, peak {peak:.0f} tx "
                 f"({'>' if fired else '<='} {t.unfinished_growth:.0%} and "
                 f"{t.unfinished_min:.0f} tx)")


def _latency_climb(signals: RoundSignals, t: Thresholds) -> Check:
    pts = [p for p in signals.latency if p[1] == p[1]]   # NaN (no tx finished) dropped
    if len(pts) < 3:
        return Check("latency-climb", Side.FABRIC, None, None, t.latency_climb_ratio,
                     "pushgateway", "latency over the round: too few samples")
    third = max(1, len(pts) // 3)
    first = sum(v for _, v in pts[:third]) / third
    last = sum(v for _, v in pts[-third:]) / third
    ratio = last / first if first > 0 else float("inf") if last > 0 else 1.0
    fired = ratio > t.latency_climb_ratio and last - first > t.latency_climb_min_s
    return Check("latency-climb", Side.FABRIC, fired, ratio, t.latency_climb_ratio,
                 "all workers",
                 f"mean latency {first:.2f} s in the first third, {last:.2f} s in the last "
                 f"(x{ratio:.2f}, {'>' if fired else '<='} x{t.latency_climb_ratio:g} "
                 f"and +{t.latency_climb_min_s:g} s)")
