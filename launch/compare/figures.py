"""What is compared of a round, and whether a round can be compared at all.

Goodput: the transactions that succeeded per second of the round's window (summary.json's
`goodput_tps`; bundles written before it existed: succeeded / window.seconds). Caliper's
throughput counts failures too, so it is shown, never compared. The ledger's goodput (VALID
transactions committed on the round's channel per second, `ledger_goodput_tps`, else the
ledger cross-check's committed count / window) is shown beside it.

A round says something about Fabric only when Fabric or nothing was the limit: a verdict
of `headroom` or `fabric-bound`, and failures within `MAX_FAILED_PCT` of the transactions.
Anything else (`load-generator-bound`, `inconclusive`, `failing`, a round that did not
complete) is "not comparable", with the reason, in compare, bisect and size alike.
"""

from __future__ import annotations

from launch.bench.results import RoundSummary
from launch.spec.thresholds import Thresholds

COMPARABLE_VERDICTS = ("headroom", "fabric-bound")
MAX_FAILED_PCT = 100.0 * Thresholds().failure_share
"""a round whose failed transactions exceed this share (percent) of all it finished is not
comparable: its latency is that of the survivors and its goodput a different workload"""


def _window(r: RoundSummary) -> float | None:
    w = (r.window or {}).get("seconds")
    return float(w) if w else None


def goodput(r: RoundSummary) -> float | None:
    """Succeeded transactions per second of the window (TPS)."""
    return r.goodput()


def ledger_goodput(r: RoundSummary) -> float | None:
    """VALID committed transactions on the round's channel per second (TPS)."""
    if r.ledger_goodput_tps is not None:
        return float(r.ledger_goodput_tps)
    w, committed = _window(r), (r.ledger or {}).get("committed")
    if not w or committed is None or not (r.ledger or {}).get("applicable", True):
        return None
    return float(committed) / w


def failed_pct(r: RoundSummary) -> float:
    total = r.succeeded + r.failed
    return 100.0 * r.failed / total if total else 0.0


def not_comparable(r: RoundSummary, max_failed_pct: float = MAX_FAILED_PCT) -> str:
    """Why this round says nothing about Fabric ('' when it can be compared)."""
    if r.status != "completed":
        return f"round {r.status}"
    verdict = str(r.verdict.get("verdict", "-"))
    if verdict not in COMPARABLE_VERDICTS:
        return f"verdict {verdict}"
    if failed_pct(r) > max_failed_pct:
        return (f"{r.failed} of {r.succeeded + r.failed} transactions failed "
                f"({failed_pct(r):.1f} % > {max_failed_pct:g} %)")
    if not r.succeeded:
        return "no transaction succeeded"
    return ""
