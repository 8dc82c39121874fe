"""The thresholds of the bottleneck verdict (launch.bench.verdict): a spec's `bench:
thresholds:` section and `--threshold NAME=VALUE` are read into them here, below the bench.
Each one says where its number came from; which are provisional is in the README
(Benchmarking, "Thresholds")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from fabkit import inputs
from fabkit.errors import InputError


@dataclass(frozen=True)
class Thresholds:
    """Every threshold of the verdict, in one place, each with where its number came from.
    Override in the environment file (`bench: thresholds: {worker_cpu: 0.9}`) or on the
    command line (`launch bench ENV --threshold worker_cpu=0.9`).

    The defaults are for real CPUs: each one was checked against the bottleneck matrix of
    issue 24 (benchmarks/verdict_matrix.py: a native nspawn lab, one known bottleneck per
    case, 5 rounds each; its rounds are kept in tests/data/bench/matrix/), as each says. A
    QEMU lab under TCG (software CPU emulation, where a Node.js worker's event-loop lag
    never falls below about 0.2-0.3 s) needs `eventloop_lag_s=0.5` (README, Thresholds)."""

    failure_share: float = 0.01
    """failing when more than this share of the round's transactions failed (1 %: the
    issue that introduced `failing`; a TPS figure with one transaction in a hundred failing
    describes a broken setup, not a capacity)."""
    send_rate_ratio: float = 0.95
    """load-generator-bound when the achieved send rate is below this share of the requested
    rate (fixed-rate rounds only: other rate controllers request no single rate). 5 %:
    Caliper's fixed-rate controller sleeps between sends and lands within ~2 % of its target
    on an idle worker (lab runs at 1-400 TPS)."""
    worker_cpu: float = 0.85
    """load-generator-bound when a worker VM's mean CPU busy over the round (its container's
    cgroup CPU when it is an nspawn container), or the busiest worker process's CPU as a
    share of the one core a Node.js process can use, exceeds this. 85 %: above it the
    worker's timers run late (lab, TCG: 89-97 % busy went with a send-rate shortfall).
    Matrix (native, 2026-12-05 quiet run): a saturated Caliper container read 92-100 %
    (a 20 % quota, one worker process at 4 x C, the capacity probe), every unsaturated one
    21-63 %; a single worker process asked for 4 x C used 77-94 % of its core, two
    processes sharing the container's core at most 25 % each."""
    eventloop_lag_s: float = 0.1
    """load-generator-bound when a worker's event-loop lag, the median of the instantaneous
    samples it pushed during the round (nodejs_eventloop_lag_seconds), exceeds this. 0.1 s:
    a send scheduled every 1/TPS seconds is late by that much at every rate above 10 TPS.
    Matrix (native): every round with Caliper unsaturated 2-24 ms; a Caliper container
    capped at 20 % of a core 49-183 ms (its CPU rule fired at 92-100 % anyway). Under TCG
    the floor is 0.2-0.3 s: raise it there (`eventloop_lag_s=0.5`)."""
    fabric_cpu: float = 0.85
    """fabric-bound when a peer, orderer or chaincode process group, or a Fabric VM as a
    whole (node_exporter, or its container's cgroup CPU), uses more than this share of its
    VM's vCPUs on average over the round. 85 %: as worker_cpu. Not exercised by the matrix
    (its Fabric caps are per process, below this share of the container by construction;
    Fabric's container reached at most 72-76 % of its core while one worker sent all it
    could): kept, provisional for a CPU-saturated Fabric."""
    disk_busy: float = 0.9
    """fabric-bound when a peer's or orderer's busiest disk was busy more than this share
    of the round (rate of node_disk_io_time_seconds_total, iostat's %util). 90 %: %util
    near 100 % is a saturated single-queue device; an NVMe device can do more at 100 %,
    so this only names the disk as a suspect. Matrix (native): at most 2 % in every round,
    the blkio-throttled Fabric included: in a container node_exporter reads the host's
    diskstats, and a throttle holds writes back before the device, which stays idle (the
    ledger-write rule names such a disk); kept, provisional, for VMs."""
    ledger_write_s: float = 0.8
    """fabric-bound when a peer or orderer spent more than this many seconds per second of
    the round in synchronous ledger writes (block store and state database commits, Raft
    WAL persists: the rate of their duration histograms' sums, from its operations
    endpoint): its disk holds the ledger back, whatever node_exporter sees. Matrix
    (native): 0.003-0.03 s/s in every round with the disk and the CPU free, up to 190 TPS;
    1.06-1.39 (the orderer: WAL and block store write in parallel) with the Fabric
    container's writes throttled by blkio to half of what the rate needs; but also
    0.48-0.58 on a peer capped to half the CPU its rate needs, 0.12-0.18 on such an orderer
    (a starved process commits slowly too): hence 0.8, not 0.5.
    Optional: a bundle recorded before it has no answer."""
    unfinished_growth: float = 0.05
    """fabric-bound when the transactions in flight (submitted - finished) grow, between
    one mean latency after the round's start and the end of its sending, at more than this
    share of the send rate: Fabric finishes less than it is sent (backlog growth; see
    backlog_check for why this test does not depend on the round's length or latency).
    5 %. Matrix (native, 15 s rounds, Caliper's own in-flight count every second): rounds
    Fabric kept up with -6.6 % to +3.7 %; the capped orderer, peer and disk +29 % to +78 %
    (an earlier matrix read in-flight samples every 5 s, two per 15 s round, and one
    block-cut swing of 9 -> 34 tx read as +15 %: the test now needs 3 samples)."""
    unfinished_min: float = 20
    """... and the backlog grew by more than this many transactions (a few transactions of
    sampling jitter at low rates are no backlog). Matrix: one batch-timeout swing of the
    in-flight count at 34 TPS was 25 tx, above it once in 25 healthy rounds."""
    latency_climb_ratio: float = 1.5
    """fabric-bound when the mean latency of the round's last third exceeds this multiple of
    its first third ..."""
    latency_climb_min_s: float = 0.2
    """... and by at least this many seconds (noise at millisecond latencies is no climb).
    A second opinion on the backlog: optional, a short round has too few samples."""
    monitor_gap_s: float = 10.0
    """inconclusive when the monitor's Prometheus has no scrape of itself for this many
    seconds of the round (stopped, restarted or stalled): its series for the round have a
    hole that rates and the backlog test paper over. 10 s: two missed scrapes at the
    5 s interval; one can be the edge of the window (issue 24's matrix)."""
    crosscheck_tolerance: float = 0.02
    """The ledger cross-check is flagged when the peers' valid-transaction count of the
    round's channel and Caliper's succeeded count differ by more than this share, or the
    channel's peers disagree by more than it (2 %: one scrape of commits at the lab's rates
    either side of a 60 s window)."""

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, source: str | Path | None,
                     path: str = "bench.thresholds", base: Thresholds | None = None
                     ) -> Thresholds:
        """Overrides from a mapping (a spec section, parsed CLI pairs, a bundle's recorded
        thresholds); unknown names and values that are not positive numbers are
        InputErrors naming source and field. A retired name at its old default (what every
        older bundle records) is ignored; set to anything else it is an error that says
        what replaced it."""
        known = {f.name for f in fields(cls)}
        changes: dict[str, float] = {}
        if not isinstance(raw, Mapping):
            raise InputError.field(source, path, "a mapping threshold name -> number", raw)
        for key, value in raw.items():
            if key in RETIRED:
                old, why = RETIRED[key]
                if value == old:
                    continue
                raise InputError.field(source, f"{path}.{key}", f"no longer a threshold: {why}",
                                       value)
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
SHARES = frozenset({"failure_share", "send_rate_ratio", "worker_cpu", "fabric_cpu",
                    "disk_busy", "unfinished_growth", "crosscheck_tolerance"})

# name -> (its last default, what replaced it)
RETIRED: Mapping[str, tuple[float, str]] = {
    "throughput_ratio": (0.90, "Caliper's throughput / send rate depends on the round's "
                               "length and latency (about D/(D+L)); the backlog rule "
                               "(unfinished_growth) replaced it"),
}
