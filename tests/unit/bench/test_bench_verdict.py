"""The verdict on recorded Prometheus answers (tests/data/bench/<case>/round-0.json: what a
real Prometheus answered to launch bench's queries, see tests/integration/bench_scenarios.py)
and on hand-made signals for each rule."""

from __future__ import annotations

import json
from pathlib import Path

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
    return RoundNumbers(plan, row.send_rate, row.throughput, row.succeeded, row.failed), row


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
    lax = Thresholds(fabric_cpu=0.99, throughput_ratio=0.1, unfinished_growth=0.9,
                     latency_climb_ratio=10)
    assert judge(n, sig, lax).verdict is Verdict.HEADROOM
    t = Thresholds.from_mapping({"worker_cpu": 0.2}, source="env.yaml")
    assert judge(n, sig, t).verdict is Verdict.LOAD_GENERATOR_BOUND   # the 30 % busy VM
    assert Thresholds.parse_pairs(["fabric_cpu=0.5"]).fabric_cpu == 0.5
    assert Thresholds.parse_pairs(["fabric_cpu=0.5"], base=t).changed() == {
        "worker_cpu": 0.2, "fabric_cpu": 0.5}
    assert Thresholds.parse_pairs(["fabric_cpu=0.85"]).changed() == {}


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


def test_headroom_carries_the_numbers_that_did_not_fire() -> None:
    sig = RoundSignals(worker_vm_cpu={"caliper0": 0.4}, fabric_cpu={"fabric/peer": 0.3},
                       inflight=tuple((float(t), 10.0) for t in range(0, 30, 5)),
                       latency=tuple((float(t), 0.5) for t in range(0, 30, 5)))
    v = judge(RoundNumbers(50, 49.9, 49.0, 1497, 0), sig)
    assert v.verdict is Verdict.HEADROOM and not v.reasons
    assert "headroom:" in v.summary() and "%" in v.summary()
    assert set(v.missing) == {"worker-process-cpu", "eventloop-lag"}


def test_a_round_without_numbers_is_inconclusive() -> None:
    v = judge(RoundNumbers(50, None, None, 0, 0), RoundSignals())
    assert v.verdict is Verdict.INCONCLUSIVE


def test_non_fixed_rate_rounds_skip_the_send_rate_rule() -> None:
    v = judge(RoundNumbers(None, 80.0, 79.0, 2400, 0), RoundSignals())
    send = next(c for c in v.checks if c.rule == "send-rate")
    assert send.fired is None and "fixed-rate" in send.detail


def test_summary_of_a_recorded_round() -> None:
    n, row = numbers("fabric-bound")
    plans = [summarize.RoundPlan(0, "saturate", "workloads/create-asset.js", 100.0,
                                 {"type": "fixed-rate", "opts": {"tps": 100}})]
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
    assert plotted[0][0] == "saturate"


def live(case: str) -> tuple[RoundNumbers, RoundSignals, dict]:
    """A round of a real `launch bench` on this machine's QEMU lab (the bundle's
    prometheus/round-0.json, report.html and summary.json, copied as they were written)."""
    row = report.parse_report_html((DATA / case / "report.html").read_text())[0]
    summary = json.loads((DATA / case / "summary.json").read_text())
    rnd = summary["rounds"][0]
    n = RoundNumbers(rnd["requested_tps"], row.send_rate, row.throughput, row.succeeded,
                     row.failed)
    return n, signals.from_responses(recorded(case)), rnd


def test_live_fabric_bound_round_is_judged_again_from_its_bundle() -> None:
    """Fabric's VM (1 vCPU) capped at 30 % of a core, the worker VM alone on the other:
    2 TPS sent as asked, 0.9 committed, the worker at 71 % CPU. With the event-loop lag
    bound raised to 0.5 s for TCG (its lag floor is 0.3-0.5 s at a quarter of a core),
    fabric-bound on the throughput rule; with the default 0.1 s the lag rule wins."""
    n, sig, rnd = live("fabric-bound-live")
    tcg = Thresholds(eventloop_lag_s=0.5)
    v = judge(n, sig, tcg)
    assert v.verdict is Verdict.FABRIC_BOUND == rnd["verdict"]["verdict"]
    assert {c.rule for c in v.reasons} == {"throughput"}
    assert [c["detail"] for c in v.to_json()["checks"]] == \
        [c["detail"] for c in rnd["verdict"]["checks"]]
    checks = {c.rule: c for c in v.checks}
    assert checks["worker-vm-cpu"].value == pytest.approx(0.714, abs=0.001)
    assert checks["throughput"].value == pytest.approx(0.9 / 2.0, abs=0.01)
    default = judge(n, sig)
    assert default.verdict is Verdict.LOAD_GENERATOR_BOUND
    assert {c.rule for c in default.reasons if c.side.value == "load-generator"} == \
        {"eventloop-lag"}
    assert {c.rule for c in default.reasons if c.side.value == "fabric"} == {"throughput"}


def test_live_overdriven_round_is_judged_again_from_its_bundle() -> None:
    """3 TPS asked of one worker VM (2 vCPUs on one host core, 2 processes): 1.1 sent."""
    n, sig, rnd = live("load-generator-bound-live")
    v = judge(n, sig)
    assert v.verdict is Verdict.LOAD_GENERATOR_BOUND == rnd["verdict"]["verdict"]
    fired = {c.rule: c for c in v.reasons}
    assert {"send-rate", "worker-vm-cpu", "eventloop-lag"} <= set(fired)
    assert fired["send-rate"].value == pytest.approx(1.1 / 3, abs=0.01)
    assert fired["worker-vm-cpu"].where == "caliper"
    assert [c["detail"] for c in v.to_json()["checks"]] == \
        [c["detail"] for c in rnd["verdict"]["checks"]]
