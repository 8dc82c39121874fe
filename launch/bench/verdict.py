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

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from bake import inputs
from bake.errors import InputError
from launch.bench.signals import RoundSignals, slope


class Verdict(StrEnum):
    """What limited a round."""

    LOAD_GENERATOR_BOUND = "load-generator-bound"
    FABRIC_BOUND = "fabric-bound"
    HEADROOM = "headroom"
    INCONCLUSIVE = "inconclusive"   # the round produced no numbers (failed, interrupted)


@dataclass(frozen=True)
class Thresholds:
    """Every threshold of the verdict, in one place. Override in the environment file
    (`bench: thresholds: {worker_cpu: 0.9}`) or on the command line
    (`launch bench ENV --threshold worker_cpu=0.9`)."""

    send_rate_ratio: float = 0.95
    """load-generator-bound when the achieved send rate is below this share of the requested
    rate (fixed-rate rounds only: other rate controllers request no single rate)."""
    worker_cpu: float = 0.85
    """load-generator-bound when a worker VM's mean CPU busy over the round, or one worker
    process's mean CPU in cores (a Node.js worker uses about one core), exceeds this."""
    eventloop_lag_s: float = 0.1
    """load-generator-bound when a worker process's event-loop lag p99 (prom-client's
    nodejs_eventloop_lag_p99_seconds as last pushed in the round: the p99 since the worker
    started, launch.bench.prometheus) exceeds this many seconds: its timers, and so its
    sends, run late."""
    fabric_cpu: float = 0.85
    """fabric-bound when a peer, orderer or chaincode process group uses more than this share
    of its VM's vCPUs on average over the round."""
    throughput_ratio: float = 0.90
    """fabric-bound when the send rate was met but Caliper's throughput is below this share of
    the send rate (a 30 s round with 2 s latency gives about 0.94 without any backlog)."""
    latency_climb_ratio: float = 1.5
    """fabric-bound when the mean latency of the round's last third exceeds this multiple of
    its first third ..."""
    latency_climb_min_s: float = 0.2
    """... and by at least this many seconds (noise at millisecond latencies is no climb)."""
    unfinished_growth: float = 0.05
    """fabric-bound when the transactions in flight (submitted - finished) grow at more than
    this share of the send rate (a least-squares slope over the round) ..."""
    unfinished_min: float = 20
    """... and more than this many are in flight at some point of the round."""
    crosscheck_tolerance: float = 0.02
    """The ledger cross-check is flagged when Fabric's valid-transaction count and Caliper's
    succeeded count differ by more than this share."""

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, source: str | Path | None,
                     path: str = "bench.thresholds", base: Thresholds | None = None
                     ) -> Thresholds:
        """Overrides from a mapping (a spec section, parsed CLI pairs); unknown names and
        values that are not positive numbers are InputErrors naming source and field."""
        known = {f.name for f in fields(cls)}
        changes: dict[str, float] = {}
        if not isinstance(raw, Mapping):
            raise InputError.field(source, path, "a mapping threshold name -> number", raw)
        for key, value in raw.items():
            if key not in known:
                raise InputError.field(source, f"{path}.{key}", f"one of {sorted(known)}", key)
            # the Rule engine refuses NaN and infinity (NaN passes every comparison below)
            value = inputs.check_value(value, inputs.Rule(key, float, doc="a positive number"),
                                       source=source, path=f"{path}.{key}")
            if value <= 0:
                raise InputError.field(source, f"{path}.{key}", "a positive number", value)
            if key in SHARES and value > 1:
                raise InputError.field(source, f"{path}.{key}", "a share between 0 and 1",
                                       value)
            changes[str(key)] = float(value)
        return replace(base or cls(), **changes)

    @classmethod
    def parse_pairs(cls, pairs: Sequence[str], base: Thresholds | None = None) -> Thresholds:
        """--threshold NAME=VALUE options."""
        raw: dict[str, Any] = {}
        for pair in pairs:
            name, sep, value = pair.partition("=")
            try:
                raw[name] = float(value) if sep else None
            except ValueError:
                raw[name] = value
            if not sep:
                raise InputError.field(None, "--threshold", "NAME=VALUE", pair)
        return cls.from_mapping(raw, source=None, path="--threshold", base=base)

    def to_json(self) -> dict[str, float]:
        return asdict(self)

    def changed(self) -> dict[str, float]:
        """The thresholds that differ from the defaults (what a run's verdicts owe to its
        spec or command line)."""
        default = Thresholds()
        return {k: v for k, v in asdict(self).items() if v != getattr(default, k)}


# thresholds that are shares (0..1]; the others are seconds, multiples or counts
SHARES = frozenset({"send_rate_ratio", "worker_cpu", "fabric_cpu", "throughput_ratio",
                    "unfinished_growth", "crosscheck_tolerance"})


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
