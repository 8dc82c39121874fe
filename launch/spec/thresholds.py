"""The thresholds of the bottleneck verdict (launch.bench.verdict): a spec's `bench:
thresholds:` section and `--threshold NAME=VALUE` are read into them here, below the bench."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from fabkit import inputs
from fabkit.errors import InputError


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
