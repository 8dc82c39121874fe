"""The ledger cross-check: Fabric's own count of valid transactions against Caliper's.

Caliper counts a transaction as succeeded when the gateway reports it committed VALID; each
peer counts what it committed in `ledger_transaction_count{validation_code="VALID"}`. The
difference of that counter between the round's start and just after its end (two scrapes,
so the last blocks are in) is what the ledger says the round committed. Every peer of a
channel commits every block, so the per-peer numbers should agree; the highest is compared
and all are kept as evidence. A read-only round commits nothing: its check is marked not
applicable rather than failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from launch.bench.signals import vector

# Workload modules baked into caliper-worker whose transactions are evaluations (queries).
READ_ONLY_WORKLOADS = frozenset({"workloads/read-asset.js"})


@dataclass(frozen=True)
class LedgerCheck:
    """The cross-check of one round."""

    committed: int | None          # valid transactions the ledger gained (highest peer)
    succeeded: int                 # Caliper's succeeded count
    per_peer: Mapping[str, int] = field(default_factory=dict)   # "host channel" -> count
    difference: float | None = None  # |committed - succeeded| / succeeded
    flagged: bool = False          # difference above the tolerance
    applicable: bool = True        # False for read-only rounds
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"committed": self.committed, "succeeded": self.succeeded,
                "per_peer": dict(self.per_peer),
                "difference": None if self.difference is None else round(self.difference, 4),
                "flagged": self.flagged, "applicable": self.applicable, "note": self.note}


def _counts(data: Any) -> dict[str, float]:
    return {f"{lab.get('host', lab.get('instance', '?'))} {lab.get('channel', '?')}": v
            for lab, v in vector(data)}


SKIPPED = ("skipped: no operations endpoint is scraped (a BYOF spec without operations "
           "endpoints), so there is no ledger_transaction_count to compare with")


def cross_check(before: Any, after: Any, succeeded: int, *, tolerance: float,
                read_only: bool = False, expected: bool = True) -> LedgerCheck:
    """Compare the ledger's gain between two LEDGER_QUERY answers with `succeeded`.
    `expected` False: nobody scrapes the peers' operations metrics, so an absent count is
    no failure: the check is skipped (not applicable) and says why."""
    b, a = _counts(before), _counts(after)
    per_peer = {k: int(round(v - b.get(k, 0.0))) for k, v in a.items()}
    if not per_peer and not expected:
        return LedgerCheck(None, succeeded, applicable=False, note=SKIPPED)
    if not per_peer:
        return LedgerCheck(None, succeeded, flagged=not read_only, applicable=not read_only,
                           note="no ledger_transaction_count series from any peer")
    committed = max(per_peer.values())
    if read_only:
        return LedgerCheck(committed, succeeded, per_peer, applicable=False,
                           note="read-only round: evaluated transactions are not committed")
    if succeeded == 0:
        diff = 0.0 if committed == 0 else 1.0
    else:
        diff = abs(committed - succeeded) / succeeded
    flagged = diff > tolerance
    spread = sorted(set(per_peer.values()))
    note = f"peers disagree: {spread}" if len(spread) > 1 else ""
    return LedgerCheck(committed, succeeded, per_peer, diff, flagged, True, note)


def is_read_only(workload_module: str) -> bool:
    """Whether a round's workload only evaluates (see READ_ONLY_WORKLOADS)."""
    return workload_module in READ_ONLY_WORKLOADS
