"""The ledger cross-check: Fabric's own count of valid transactions on the round's channel
against Caliper's succeeded count.

Caliper counts a transaction as succeeded when the gateway reports it committed VALID; each
peer counts what it committed in `ledger_transaction_count{channel, validation_code}`.
The check:

- looks at the round's channel only (the channel of the round's contract): another
  channel's commits say nothing about this round;
- takes each peer's increase from its last sample at or before the round's start to a
  sample two scrapes after its end (the last commits are in), from the raw samples
  (launch.bench.prometheus.ledger_samples_query). The start's sample can be one scrape
  stale: a preparation that committed just before the start (an update round creating its
  assets) then shows in the step to the first sample after it; what that step holds beyond
  what the round can have sent and committed by then is the preparation's, left out and
  said (_gain);
- sums a counter's increase across a reset (a peer restarted in the round starts counting
  from zero again) and says so; the commits between the peer's last scrape and its stop
  are lost to the count. A peer whose samples have a hole longer than GAP_S (it was not
  answering: stopped, restarting or unreachable) gives only a lower bound: it may have
  restarted without its counter ever showing a fall (it was low before the stop and passed
  that value again before its first scrape after it). The count of a peer that restarted
  or was not answering is a lower bound: its shortfall against Caliper is said, not
  flagged; a count above Caliper's, or an exact peer's disagreement, is still flagged;
- compares Caliper's succeeded count with the lowest and the highest peer of the channel
  and flags a peer that is behind the others (every peer of a channel commits every block);
- for a read-only round (its workload only evaluates: launch.bench.workloads), checks that
  the channel gained about nothing;
- counts the invalid transactions by validation code (the peers' side of `failing`);
- when it cannot check, says why (BYOF without operations endpoints, no Prometheus data,
  the round's channel unknown with several channels on the peers).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from launch.bench.signals import matrix, vector


@dataclass(frozen=True)
class PeerCount:
    """One peer's increase of one channel's counter over the round."""

    valid: int
    invalid: Mapping[str, int] = field(default_factory=dict)   # validation code -> count
    resets: int = 0
    prepared: int = 0     # committed just before the start, scraped after it: left out
    unscraped_s: float = 0.0   # the longest hole between its samples in the round, > GAP_S


@dataclass(frozen=True)
class LedgerCheck:
    """The cross-check of one round."""

    committed: int | None          # VALID the round's channel gained (most on any peer)
    succeeded: int                 # Caliper's succeeded count
    per_peer: Mapping[str, int] = field(default_factory=dict)   # "host channel" -> count
    difference: float | None = None  # worst |peer - succeeded| / succeeded
    flagged: bool = False          # off by more than the tolerance (see note)
    applicable: bool = True        # False: not checked (`skipped` says why)
    note: str = ""
    channel: str | None = None
    committed_min: int | None = None   # VALID on the channel's least advanced peer
    resets: Mapping[str, int] = field(default_factory=dict)     # host -> counter resets
    invalid_by_code: Mapping[str, int] = field(default_factory=dict)
    other_channels: Mapping[str, int] = field(default_factory=dict)  # channel -> gained
    read_only: bool | None = None
    skipped: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"committed": self.committed, "committed_min": self.committed_min,
                "succeeded": self.succeeded, "channel": self.channel,
                "per_peer": dict(self.per_peer),
                "difference": None if self.difference is None else round(self.difference, 4),
                "flagged": self.flagged, "applicable": self.applicable, "note": self.note,
                "resets": dict(self.resets), "invalid_by_code": dict(self.invalid_by_code),
                "other_channels": dict(self.other_channels), "read_only": self.read_only,
                "skipped": self.skipped}


GAP_S = 10.0
"""two scrape intervals (5 s, packer/files/monitor/prometheus.yml): a longer hole between a
peer's samples means its operations endpoint did not answer"""

SKIPPED_BYOF = ("no operations endpoint is scraped (a BYOF spec without operations "
                "endpoints), so there is no ledger_transaction_count to compare with")


def skipped(succeeded: int, why: str, *, flagged: bool = False,
            read_only: bool | None = None) -> LedgerCheck:
    """A check that could not be made, saying why (flagged when the data should exist)."""
    return LedgerCheck(None, succeeded, flagged=flagged, applicable=False,
                       note=f"not checked: {why}", read_only=read_only, skipped=why)


def increase(points: tuple[tuple[float, float], ...]) -> tuple[float, int]:
    """A counter's increase over `points` (time order) and how often it reset: a value
    below the previous one is a restart from zero, whose increase is the value itself."""
    total, resets = 0.0, 0
    for (_, prev), (_, cur) in zip(points, points[1:], strict=False):
        if cur < prev:
            resets += 1
            total += cur
        else:
            total += cur - prev
    return total, resets


def _gain(pts: tuple[tuple[float, float], ...], start: float, end: float,
          round_bound: Callable[[float], float]) -> tuple[float, int, float]:
    """(increase, resets, preparation left out) of one series over the round.

    From the last sample at or before `start`: the first sample after the start may already
    hold the round's first commits, so it is no baseline. But that last sample can be one
    scrape stale: a preparation (an update round creating its assets) that committed after
    it, just before the start, shows in the step to the first sample after the start. Of
    that step, what exceeds the most the round itself can have committed by then
    (`round_bound(t)`) is the preparation's and is left out."""
    before = [p for p in pts if p[0] <= start]
    inside = [p for p in pts if start < p[0] <= end]
    if not inside:
        return 0.0, 0, 0.0
    if not before:
        total, resets = increase(tuple(inside))
        return total, resets, 0.0
    (_, v0), (t1, v1) = before[-1], inside[0]
    total, resets = increase(tuple(inside))
    if v1 < v0:                          # restarted in the first interval: from v1 on
        return total + v1, resets + 1, 0.0
    step = v1 - v0
    prep = max(0.0, step - round_bound(t1))
    return total + step - prep, resets, prep


def _hole(pts: tuple[tuple[float, float], ...], start: float, end: float) -> float:
    """The longest time between two samples of a series over the round (from its last sample
    at or before `start` to its last one at or before `end`), when longer than GAP_S; else 0."""
    before = [t for t, _ in pts if t <= start]
    times = before[-1:] + [t for t, _ in pts if start < t <= end]
    longest = max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)
    return longest if longest > GAP_S else 0.0


def counts_from_samples(samples: Any, start: float, end: float,
                        round_bound: Callable[[float], float] | None = None
                        ) -> dict[tuple[str, str], PeerCount]:
    """(host, channel) -> PeerCount from a ledger_samples_query answer, each series' increase
    over the round by _gain. `round_bound(t)`: the most transactions the round can have
    committed by time t (default: no bound, the whole first step counts to the round)."""
    bound = round_bound or (lambda _t: math.inf)
    valid: dict[tuple[str, str], float] = defaultdict(float)
    invalid: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    resets: dict[tuple[str, str], int] = defaultdict(int)
    prepared: dict[tuple[str, str], float] = defaultdict(float)
    holes: dict[tuple[str, str], float] = defaultdict(float)
    for labels, pts in matrix(samples):
        key = (labels.get("host", labels.get("instance", "?")), labels.get("channel", "?"))
        gained, n, prep = _gain(pts, start, end, bound)
        resets[key] = max(resets[key], n)
        holes[key] = max(holes[key], _hole(pts, start, end))
        code = labels.get("validation_code", "VALID")
        if code == "VALID":
            valid[key] += gained
            prepared[key] += prep
        else:
            invalid[key][code] += gained
    keys = set(valid) | set(invalid)
    return {k: PeerCount(int(round(valid.get(k, 0.0))),
                         {c: int(round(v)) for c, v in invalid.get(k, {}).items() if v},
                         resets.get(k, 0), int(round(prepared.get(k, 0.0))),
                         round(holes.get(k, 0.0), 1)) for k in keys}


def round_bound(start: float, send_rate: float | None, min_latency: float | None
                ) -> Callable[[float], float] | None:
    """The most a round can have committed by time t: what it sent by then, less its
    fastest transaction's latency (None when Caliper gave no send rate; 0 for a send rate
    of 0: a read-only round, which commits nothing of its own)."""
    if send_rate == 0:
        return lambda _t: 0.0
    if send_rate is None:
        return None
    lat = min_latency or 0.0
    return lambda t: send_rate * max(0.0, t - start - lat)


def counts_from_edges(before: Any, after: Any) -> dict[tuple[str, str], PeerCount]:
    """(host, channel) -> PeerCount from the two edge answers older bundles recorded (no
    samples in between: a reset shows as a negative difference, resets = -1)."""
    def keyed(data: Any) -> dict[tuple[str, str], float]:
        return {(lab.get("host", lab.get("instance", "?")), lab.get("channel", "?")): v
                for lab, v in vector(data)}
    b, a = keyed(before), keyed(after)
    out = {}
    for k, v in a.items():
        d = v - b.get(k, 0.0)
        out[k] = PeerCount(int(round(d)) if d >= 0 else 0, {}, -1 if d < 0 else 0)
    return out


def cross_check(counts: Mapping[tuple[str, str], PeerCount], succeeded: int, *,
                channel: str | None, tolerance: float, read_only: bool | None = None
                ) -> LedgerCheck:
    """Compare the round's channel's gain with `succeeded` (see the module docstring).
    `read_only` None: not known whether the workload writes (checked as if it did)."""
    channels = sorted({ch for _, ch in counts})
    if channel is None:
        if len(channels) > 1:
            return skipped(succeeded, f"the round's channel is not known and the peers "
                                      f"report {len(channels)} channels ({', '.join(channels)})",
                           flagged=True, read_only=read_only)
        channel = channels[0] if channels else None
    mine = {host: c for (host, ch), c in counts.items() if ch == channel}
    others: dict[str, int] = {}
    for (_, ch), c in counts.items():
        if ch != channel:
            others[ch] = max(others.get(ch, 0), c.valid)
    if not mine:
        return skipped(succeeded, f"no peer reports ledger_transaction_count for channel "
                                  f"{channel}" + (f" (peers report {', '.join(channels)})"
                                                  if channels else ""),
                       flagged=read_only is not True, read_only=read_only)
    per_peer = {f"{h} {channel}": c.valid for h, c in sorted(mine.items())}
    hi, lo = max(per_peer.values()), min(per_peer.values())
    resets = {h: c.resets for h, c in mine.items() if c.resets}
    prep = max(c.prepared for c in mine.values())
    invalid: dict[str, int] = {}
    for c in mine.values():
        for code, n in c.invalid.items():
            invalid[code] = max(invalid.get(code, 0), n)
    notes = []
    for h, n in sorted(resets.items()):
        notes.append(f"{h} restarted during the round (its counter fell back to zero"
                     + (f" {n}x): its increase is summed across the restart; what it "
                        "committed between its last scrape and its stop is in no sample, so "
                        "its count is a lower bound"
                        if n > 0 else "): this older recording holds only the window's edges, "
                        "so its count across the restart is unknown"))
    if prep:
        notes.append(f"{prep} valid transactions committed just before the round's start "
                     "(its preparation) were scraped only after it: left out")
    holes = {h: c.unscraped_s for h, c in mine.items() if c.unscraped_s}
    for h, gap in sorted(holes.items()):
        notes.append(f"{h} was not scraped for about {gap:.0f} s of the round (stopped, "
                     "restarting or unreachable): what it committed between its last scrape "
                     "and a restart is not in its counter, so its count is a lower bound")
    # lower bounds: a peer that restarted (its commits between its last scrape and its stop
    # are in no sample) or was not answering; the others' counts are exact
    lower = set(holes) | {h for h, n in resets.items() if n > 0}
    exact = [c.valid for h, c in mine.items() if h not in lower]
    flagged = False
    spread = (hi - lo) / hi if hi else 0.0
    behind_peers = {k.split()[0]: v for k, v in per_peer.items() if v < hi}
    if spread > tolerance and not set(behind_peers) <= lower:
        behind = ", ".join(f"{h} {v} ({(hi - v) / hi:.0%} behind)"
                           for h, v in behind_peers.items())
        notes.append(f"peers of {channel} disagree: most {hi}, {behind}")
        flagged = True
    if read_only:
        limit = max(1.0, tolerance * succeeded)
        gained_too_much = hi > limit
        notes.insert(0, f"read-only round: {channel} gained {hi} valid transactions "
                        f"({'more than' if gained_too_much else 'within'} {limit:.0f}: "
                        "evaluations commit nothing)")
        return LedgerCheck(hi, succeeded, per_peer, None, flagged or gained_too_much, True,
                           "; ".join(notes), channel, lo, resets, invalid, others, True)
    if succeeded == 0:
        diff = 0.0 if hi == 0 else 1.0
    else:
        diff = max(abs(hi - succeeded), abs(lo - succeeded)) / succeeded
    # a lower bound below Caliper's count says nothing; above it, or an exact peer off, does
    over = succeeded and (hi - succeeded) / succeeded > tolerance
    exact_off = any(abs(v - succeeded) > tolerance * max(succeeded, 1) for v in exact)
    if diff > tolerance and (over or exact_off or not lower):
        flagged = True
        notes.insert(0, f"Caliper's {succeeded} succeeded against {lo}" +
                     (f"..{hi}" if hi != lo else "") + f" valid on {channel}")
    elif diff > tolerance:
        notes.insert(0, f"Caliper's {succeeded} succeeded against {lo}" +
                     (f"..{hi}" if hi != lo else "") + f" valid on {channel}: not judged, "
                     "the count is a lower bound (below)")
    if any(n < 0 for n in resets.values()):
        flagged = True
    if read_only is None:
        notes.append("whether the workload writes is not known: checked as a writing round")
    return LedgerCheck(hi, succeeded, per_peer, diff, flagged, True, "; ".join(notes),
                       channel, lo, resets, invalid, others, read_only)

