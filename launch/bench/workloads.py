"""What a round's workload module sends: transactions that write (submit) or only read
(evaluate), read from the module itself.

fabperf's workload modules (packer/files/caliper-worker/workloads/, baked into the caliper
image) send every transaction of a round from `submitTransaction()` through
`this.request(function, arguments, readOnly)` (lib/asset-base.js) or a request object with
`readOnly: ...`. A module whose requests there are all read-only only evaluates: the
ledger must gain about nothing in its round (launch.bench.ledger). A module fabperf does not
ship (a user's own) or whose requests cannot be read is unknown (None), and the ledger
check says it treated the round as one that writes.
"""

from __future__ import annotations

import re
from pathlib import Path

WORKLOADS_DIR = Path(__file__).resolve().parents[2] / "packer/files/caliper-worker"
"""where `workload.module` paths of the benchmark config (workloads/<name>.js) live"""

_SUBMIT = re.compile(r"async\s+submitTransaction\s*\([^)]*\)\s*\{")
_REQUEST = re.compile(r"this\.request\((?:[^()]|\([^()]*\))*?,\s*(true|false)\s*\)")
_FLAG = re.compile(r"readOnly\s*:\s*(true|false)")


def _body(text: str, start: int) -> str:
    """The brace-balanced body that opens just before `start`."""
    depth = 1
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    return text[start:]


def read_only_source(text: str) -> bool | None:
    """Whether a workload module's submitTransaction() sends only read-only requests
    (None: no submitTransaction, or no request whose read-only flag can be read)."""
    m = _SUBMIT.search(text)
    if not m:
        return None
    body = _body(text, m.end())
    flags = [f == "true" for f in _REQUEST.findall(body) + _FLAG.findall(body)]
    return all(flags) if flags else None


def read_only(module: str, root: Path = WORKLOADS_DIR) -> bool | None:
    """read_only_source of the benchmark config's `workload.module` (None: not one of
    fabperf's modules, or unreadable)."""
    rel = Path(module)
    if rel.is_absolute() or ".." in rel.parts:
        return None
    try:
        return read_only_source((root / rel).read_text())
    except (OSError, UnicodeDecodeError):
        return None
