"""Why a round's transactions failed: Caliper's own error messages, grouped by reason.

Caliper 0.6.0 does not put error messages in report.html nor in the manager's log: each
worker logs every failed transaction itself, through its Fabric connector
(`error [caliper] [connectors/peer-gateway/PeerGateway]  Failed to perform submit
transaction [createAsset] using arguments [...],  with error: <the gateway's error>`), and
`launch bench` keeps each worker's journal in the bundle (logs/<host>/caliper-worker@N.log,
`journalctl -o short-iso-precise`). The lines of a round (by time, inside its window) are
grouped by a reason read from the error text; the peers' own count of invalid transactions
by validation code (launch.bench.ledger) is the Fabric side of the same story.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Fabric's TxValidationCode (protos peer/transaction.proto): what a committing peer writes
# for each transaction of a block, and what the gateway's "status code: N" refers to
VALIDATION_CODES = {
    0: "VALID", 1: "NIL_ENVELOPE", 2: "BAD_PAYLOAD", 3: "BAD_COMMON_HEADER",
    4: "BAD_CREATOR_SIGNATURE", 5: "INVALID_ENDORSER_TRANSACTION",
    6: "INVALID_CONFIG_TRANSACTION", 7: "UNSUPPORTED_TX_PAYLOAD", 8: "BAD_PROPOSAL_TXID",
    9: "DUPLICATE_TXID", 10: "ENDORSEMENT_POLICY_FAILURE", 11: "MVCC_READ_CONFLICT",
    12: "PHANTOM_READ_CONFLICT", 13: "UNKNOWN_TX_TYPE", 14: "TARGET_CHAIN_NOT_FOUND",
    15: "MARSHAL_TX_ERROR", 16: "NIL_TXACTION", 17: "EXPIRED_CHAINCODE",
    18: "CHAINCODE_VERSION_CONFLICT", 19: "BAD_HEADER_EXTENSION", 20: "BAD_CHANNEL_HEADER",
    21: "BAD_RESPONSE_PAYLOAD", 22: "BAD_RWSET", 23: "ILLEGAL_WRITESET",
    24: "INVALID_WRITESET", 25: "INVALID_CHAINCODE", 254: "NOT_VALIDATED",
    255: "INVALID_OTHER_REASON",
}

_FAILED = re.compile(r"Failed to perform (?:submit|query|evaluate)? ?transaction "
                     r"\[(?P<fn>[^\]]*)\].*?with error:\s*(?P<err>.*)$")
_ISO = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:?\d\d|Z)?)\s")
_STATUS = re.compile(r"status code:?\s*(\d+)")
_ADDRESS = re.compile(r"(?:ECONNREFUSED|connect(?:ing)? to|address)\s*:?\s*"
                      r"([A-Za-z0-9.-]+:\d{2,5})")

# (reason, pattern) in order: the first match names the failure
REASONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # the peer's gRPC limiter (peer.limits.concurrency.gatewayService): "too many requests
    # for /gateway.Gateway, exceeding concurrency limit (N)"; first, since Caliper wraps it
    # in an EndorseError whose text matches the endorsement pattern below
    ("gateway concurrency limit", re.compile(r"exceeding concurrency limit|too many requests "
                                             r"for /gateway", re.I)),
    ("timeout", re.compile(r"DEADLINE_EXCEEDED|[Tt]ime(?:d)? ?out", re.I)),
    ("peer unavailable", re.compile(r"UNAVAILABLE|ECONNREFUSED|ECONNRESET|No connection "
                                    r"established|Failed to connect|socket hang up", re.I)),
    ("chaincode response", re.compile(r"chaincode response \d+|transaction returned with "
                                      r"failure", re.I)),
    ("endorsement error", re.compile(r"endorse|ABORTED|no endorsement plan|not enough "
                                     r"endorsements", re.I)),
)


@dataclass(frozen=True)
class FailureEvidence:
    """Why a round's transactions failed, from both sides."""

    by_reason: Mapping[str, int] = field(default_factory=dict)
    """Caliper's error messages of the round grouped by reason (worker logs)."""
    examples: Mapping[str, str] = field(default_factory=dict)
    """reason -> one error message as Caliper logged it (shortened)"""
    addresses: Mapping[str, int] = field(default_factory=dict)
    """host:port an error message named (a refused or unreachable peer) -> count"""
    invalid_by_code: Mapping[str, int] = field(default_factory=dict)
    """the peers' own invalid transactions of the round's channel by validation code
    (ledger_transaction_count{validation_code!="VALID"}, most on any peer)"""
    unreachable: Mapping[str, float] = field(default_factory=dict)
    """Fabric node (host/role) -> seconds of the round its operations endpoint did not
    answer Prometheus (up == 0): a stopped or hung node"""
    logs_read: int = 0
    """how many worker logs were read (0: none in the bundle, reasons unknown)"""

    def lines(self) -> list[str]:
        """Fabric nodes that stopped answering first (they name the culprit), then one line
        per reason, the most frequent first."""
        out = [f"{node} stopped answering: its operations endpoint was down for about "
               f"{s:.0f} s of the round" for node, s in sorted(self.unreachable.items())]
        out += [f"{n} x {reason} (Caliper: {self.examples.get(reason, '')})"
                for reason, n in sorted(self.by_reason.items(), key=lambda kv: -kv[1])]
        out += [f"{n} committed invalid on the peers: {code}"
                for code, n in sorted(self.invalid_by_code.items(), key=lambda kv: -kv[1])]
        if self.addresses:
            out.append("error messages name " + ", ".join(
                f"{a} ({n}x)" for a, n in sorted(self.addresses.items(), key=lambda kv: -kv[1])))
        return out

    def to_json(self) -> dict[str, Any]:
        return {"by_reason": dict(self.by_reason), "examples": dict(self.examples),
                "addresses": dict(self.addresses),
                "invalid_by_code": dict(self.invalid_by_code),
                "unreachable": {k: round(v, 1) for k, v in self.unreachable.items()},
                "logs_read": self.logs_read}


def reason_of(error: str) -> str:
    """The reason a Caliper error message names (see REASONS)."""
    if m := _STATUS.search(error):
        code = int(m.group(1))
        return f"committed invalid: {VALIDATION_CODES.get(code, f'code {code}')}"
    for reason, pattern in REASONS:
        if pattern.search(error):
            return reason
    return "other"


def _epoch(ts: str) -> float | None:
    try:
        t = _dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.UTC)
    return t.timestamp()


@dataclass(frozen=True)
class LoggedFailure:
    """One failed transaction as a worker logged it."""

    at: float | None
    function: str
    error: str


# a line of the journal: "<time> <host> <ident>[<pid>]: <message>"
_JOURNAL = re.compile(r"^\S+\s+\S+\s+[^:\s]+(?:\[\d+\])?:\s?")
_DETAIL = re.compile(r"^(?:Details:\s*$|-\s+\S)")


def parse_worker_log(lines: Iterable[str]) -> list[LoggedFailure]:
    """The failed transactions of a worker's journal (`journalctl -o short-iso-precise`).
    The gateway's per-peer details that Caliper logs on the lines after an EndorseError
    ("Details:", "-  peer0...:7051:chaincode response 500, asset x already exists") are
    the actual reason: they are put before the error's own text."""
    out: list[LoggedFailure] = []
    details: list[str] = []

    def flush() -> None:
        if out and details:
            last = out[-1]
            out[-1] = LoggedFailure(last.at, last.function,
                                    f"{'; '.join(details)} ({last.error})")
        details.clear()

    for line in lines:
        m = _FAILED.search(line)
        if not m:
            message = _JOURNAL.sub("", line, count=1) if _ISO.match(line) else line
            if out and _DETAIL.match(message.strip()):
                detail = message.strip().lstrip("-").strip()
                if detail and detail != "Details:":
                    details.append(detail)
                continue
            flush()
            continue
        flush()
        ts = _ISO.match(line)
        out.append(LoggedFailure(_epoch(ts.group("ts")) if ts else None, m.group("fn"),
                                 m.group("err").strip()))
    flush()
    return out


def group(failures: Iterable[LoggedFailure], window: tuple[float, float] | None, *,
          logs_read: int, margin: float = 2.0) -> FailureEvidence:
    """The failures inside `window` (a few seconds of margin: the last timeouts are logged
    as the round ends), grouped by reason. Lines without a time count only when there is no
    window (a plain log of one round)."""
    counts: Counter[str] = Counter()
    examples: dict[str, str] = {}
    addresses: Counter[str] = Counter()
    for f in failures:
        if window is not None and (f.at is None or not
                                   window[0] - margin <= f.at <= window[1] + margin):
            continue
        reason = reason_of(f.error)
        counts[reason] += 1
        examples.setdefault(reason, f.error[:160])
        if m := _ADDRESS.search(f.error):
            addresses[m.group(1)] += 1
    return FailureEvidence(dict(counts), examples, dict(addresses), logs_read=logs_read)
