"""The verdict on recorded Prometheus answers (tests/data/bench/<case>/round-0.json: what a
real Prometheus answered to launch bench's queries, see tests/integration/bench_scenarios.py)
and on hand-made signals for each rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fabkit.errors import InputError
from launch.bench import prometheus, report, signals, summarize
from launch.bench.signals import RoundSignals
from launch.bench.verdict import RoundNumbers, Verdict, judge
from launch.spec.thresholds import Thresholds

DATA = Path(__file__).resolve().parents[2] / "data/bench"


def recorded(case: str) -> prometheus.RoundResponses:
    doc = json.loads((DATA / case / "round-0.json").read_text())
    return prometheus.RoundResponses.from_json(doc)


def numbers(case: str) -> tuple[RoundNumbers, report.RoundResult]:
    row = report.parse_report_html((DATA / case / "report.html").read_text())[0]
    plan = {"load-generator-bound": 400.0, "fabric-bound": 100.0}[case]
    start = recorded(case).window.start
    return RoundNumbers(plan, row.send_rate, row.throughput, row.succeeded, row.failed,
                        row.avg_latency, start), row


def test_overdriven_round_is_load_generator_bound_with_its_evidence() -> None:
    n, _ = numbers("load-generator-bound")
    v = judge(n, signals.from_responses(recorded("load-generator-bound")))
    assert v.verdict is Verdict.LOAD_GENERATOR_BOUND
    fired = {c.rule: c for c in v.reasons}
    assert set(fired) == {"send-rate", "worker-vm-cpu", "worker-process-cpu", "eventloop-lag"}
    assert fired["worker-vm-cpu"].where == "caliper"
    assert fired["worker-vm-cpu"].value == pytest.approx(0.97, abs=0.01)
    assert fired["send-rate"].value == pytest.approx(252 / 400, abs=0.01)
    assert "caliper" in v.summary() and "252.0 TPS of 400" in v.summary()
    # Fabric had room: no Fabric rule fired
    assert not [c for c in v.reasons if c.side.value == "fabric"]


def test_saturated_peer_is_fabric_bound_with_its_evidence() -> None:
    n, _ = numbers("fabric-bound")
    v = judge(n, signals.from_responses(recorded("fabric-bound")))
    assert v.verdict is Verdict.FABRIC_BOUND
    fired = {c.rule: c for c in v.reasons}
    assert {"fabric-cpu", "unfinished-growth", "latency-climb"} <= set(fired)
    assert fired["fabric-cpu"].where == "fabric/peer"
    assert fired["fabric-cpu"].value == pytest.approx(0.93, abs=0.01)
    checks = {c.rule: c for c in v.checks}
    assert checks["send-rate"].fired is False and checks["worker-vm-cpu"].fired is False
    doc = v.to_json()
    assert doc["verdict"] == "fabric-bound" and doc["evidence"] and doc["missing_data"] == []


def test_thresholds_decide_and_can_be_overridden() -> None:
    n, _ = numbers("fabric-bound")
    sig = signals.from_responses(recorded("fabric-bound"))
    lax = Thresholds(fabric_cpu=0.99, unfinished_growth=0.9, latency_climb_ratio=10)
    assert judge(n, sig, lax).verdict is Verdict.HEADROOM
    t = Thresholds.from_mapping({"worker_cpu": 0.2}, source="env.yaml")
    assert judge(n, sig, t).verdict is Verdict.LOAD_GENERATOR_BOUND   # the 30 % busy VM
    assert Thresholds.parse_pairs(["fabric_cpu=0.5"]).fabric_cpu == 0.5
    assert Thresholds.parse_pairs(["fabric_cpu=0.5"], base=t).changed() == {
        "worker_cpu": 0.2, "fabric_cpu": 0.5}
    assert Thresholds.parse_pairs(["fabric_cpu=0.85"]).changed() == {}


def test_a_retired_threshold_loads_at_its_old_default_and_is_refused_otherwise() -> None:
    """Older bundles record throughput_ratio 0.9: they still load (compare, size)."""
    assert Thresholds.from_mapping({"throughput_ratio": 0.9, "worker_cpu": 0.8},
                                   source="summary.json").changed() == {"worker_cpu": 0.8}
    with pytest.raises(InputError, match="backlog"):
        Thresholds.from_mapping({"throughput_ratio": 0.5}, source="env.yaml")


@pytest.mark.parametrize("raw,field", [
    ({"worker_cpus": 0.9}, "bench.thresholds.worker_cpus"),
    ({"worker_cpu": "high"}, "bench.thresholds.worker_cpu"),
    ({"send_rate_ratio": 1.5}, "bench.thresholds.send_rate_ratio"),
    ({"fabric_cpu": -1}, "bench.thresholds.fabric_cpu"),
])
def test_bad_threshold_overrides_name_the_field(raw: dict, field: str) -> None:
    with pytest.raises(InputError) as e:
        Thresholds.from_mapping(raw, source="env.yaml")
    assert field in str(e.value) and "env.yaml" in str(e.value)


def test_bad_cli_threshold() -> None:
    with pytest.raises(InputError, match="--threshold"):
        Thresholds.parse_pairs(["worker_cpu"])
    with pytest.raises(InputError, match="positive number"):
        Thresholds.parse_pairs(["worker_cpu=lots"])


def calm(**over: Any) -> RoundSignals:
    """Every signal present and low: a round with room on both sides."""
    base: dict[str, Any] = dict(
                worker_vm_cpu={"caliper": 0.4}, worker_process_cpu={"worker 0": 0.3},
                eventloop_lag={"worker 0": 0.004}, fabric_cpu={"fabric/peer": 0.3},
                fabric_vm_cpu={"fabric": 0.35}, disk_busy={"fabric": 0.1},
                ledger_write={"fabric/peer": 0.01, "fabric/orderer": 0.01},
                worker_vm_cores={"caliper": 2},
                inflight=tuple((float(t), 25.0) for t in range(0, 35, 5)),
                latency=tuple((float(t), 0.5) for t in range(0, 35, 5)))
    return RoundSignals(**{**base, **over})


def test_headroom_carries_the_numbers_that_did_not_fire() -> None:
    v = judge(RoundNumbers(50, 49.9, 49.0, 1497, 0, 0.5, 0.0), calm())
    assert v.verdict is Verdict.HEADROOM and not v.reasons
    assert "headroom:" in v.summary() and "%" in v.summary()
    assert v.missing == ()


def test_a_round_without_numbers_is_inconclusive() -> None:
    v = judge(RoundNumbers(50, None, None, 0, 0), RoundSignals())
    assert v.verdict is Verdict.INCONCLUSIVE and "report.html" in v.summary()


def test_non_fixed_rate_rounds_skip_the_send_rate_rule_without_missing_data() -> None:
    v = judge(RoundNumbers(None, 80.0, 79.0, 2400, 0, 0.5, 0.0), calm())
    send = next(c for c in v.checks if c.rule == "send-rate")
    assert send.fired is None and "fixed-rate" in send.detail and not send.missing
    assert v.verdict is Verdict.HEADROOM


def test_summary_of_a_recorded_round() -> None:
    n, row = numbers("fabric-bound")
    plans = [summarize.RoundPlan(0, "saturate", "workloads/create-asset.js", 100.0,
                                 {"type": "fixed-rate", "opts": {"tps": 100}}, 60,
                                 "mychannel", False)]
    s, plotted = summarize.summarize(
        environment="local", stamp="20261201T000000Z", status="complete", started_at="a",
        finished_at="b", plans=plans, report=[row], mlog=None,
        responses={0: recorded("fabric-bound")}, thresholds=Thresholds(), caliper={})
    r = s.rounds[0]
    assert r.verdict["verdict"] == "fabric-bound" and r.status == "completed"
    assert r.latency.p99 is not None and r.latency.p50 < r.latency.p95 < r.latency.p99
    # the peer committed ~70 TPS over the 60 s window, Caliper says all 5970 succeeded
    assert r.ledger["committed"] == pytest.approx(4200, rel=0.02)
    assert r.ledger["flagged"] is True and any("cross-check" in x for x in s.notes)
    assert r.goodput_tps == pytest.approx(5970 / 60, rel=0.01)
    assert r.ledger_goodput_tps == pytest.approx(4200 / 60, rel=0.02)
    assert plotted[0][0] == "saturate"


