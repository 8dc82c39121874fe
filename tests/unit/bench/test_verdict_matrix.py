"""The verdict matrix's recorded rounds judged again (issue 24).

tests/data/bench/matrix/<case>/ is one case's bundle of benchmarks/verdict_matrix.py (a
native nspawn lab with one known bottleneck injected), trimmed by the script to what
re-judging reads: summary.json, prometheus/round-<i>.json, logs/manager.log and the first
failure lines of each worker log, plus expected.json (the injection, the expected
verdict(s), what the evidence must name, and the verdict each round was recorded with).
Judged again with today's rules and default thresholds, every round gets the verdict it was
recorded with; the rounds that missed the expected verdict are listed in expected.json's
`misses` with why, and the rounds whose evidence does not name what was injected in
`not_named` with why (the README and the issue's note explain them).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launch.bench import collect, results
from launch.spec.thresholds import Thresholds

DATA = Path(__file__).resolve().parents[2] / "data/bench/matrix"
CASES = sorted(p.parent for p in DATA.glob("*/expected.json"))
BOUND = {"fabric-bound", "load-generator-bound"}


def test_the_matrix_is_recorded() -> None:
    assert len(CASES) >= 10, CASES


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_matrix_rounds_judged_again_get_the_recorded_verdict(case: Path) -> None:
    exp = json.loads((case / "expected.json").read_text())
    new = collect.rejudge(case, Thresholds())
    got = {r.label: r.verdict["verdict"] for r in new.rounds}
    assert got == exp["recorded"], [r.verdict["summary"] for r in new.rounds]
    assert len(got) >= 5
    misses = exp.get("misses", {})
    for r in new.rounds:
        assert results.verdict_problems(r) == []
        if r.label in misses:
            assert misses[r.label], "a miss says why"
            continue
        assert r.verdict["verdict"] in exp["expected"], (r.label, r.verdict["summary"])
        if set(exp["expected"]) & BOUND:
            assert r.verdict["verdict"] != "headroom"
        if r.label in exp.get("not_named", {}):
            assert exp["not_named"][r.label], "a round whose evidence misses a name says why"
            continue
        for name in exp.get("names", []):
            assert name.lower() in r.verdict["summary"].lower(), r.verdict["summary"]


def test_a_peer_stopped_mid_round_is_failing_and_the_ledger_says_its_count_is_a_lower_bound(
) -> None:
    """Issue 20's live case on the native lab: the peer stopped for a third of each round
    and started again. Every round is failing and names the peer; the ledger check handles
    the restart: summed across the counter's reset where it shows, and the peer's count said
    to be a lower bound (its commits between its last scrape and its stop are in no
    sample), not flagged as a disagreement with Caliper (live: 1..62 against 84..110)."""
    new = collect.rejudge(DATA / "peer-stopped", Thresholds())
    assert len(new.rounds) == 5
    for r in new.rounds:
        assert r.verdict["verdict"] == "failing", r.verdict["summary"]
        assert "fabric/peer stopped answering" in r.verdict["summary"]
        assert r.ledger["flagged"] is False, r.ledger
        assert "lower bound" in r.ledger["note"], r.ledger
        assert r.ledger["committed"] < r.succeeded
    assert sum(1 for r in new.rounds if r.ledger["resets"]) == 4
