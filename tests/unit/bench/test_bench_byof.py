"""`launch bench` on a BYOF environment: no bootstrap marker asked for, the channel looked
up in the operations metrics, the evidence it cannot have said in the summary, and the
ledger cross-check skipped when nothing scrapes the user's peers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from test_bench_run import RECORDED, Clock, FakeDoor, FakePrometheus, FakePushgateway

from launch.bench import lab as bench_lab
from launch.bench import ledger, run
from launch.bench.lab import Lab
from launch.bench.results import check_bundle
from launch.bench.run import Options
from launch.bench.watch import Timeouts
from launch.render import plan as plan_mod
from launch.spec import byof

pytestmark = pytest.mark.subprocess   # matplotlib's font cache (fc-list), as in test_bench_run
REPO = Path(__file__).resolve().parents[3]


class ByofPrometheus(FakePrometheus):
    """The recorded run, plus the user's peers reporting the channel's height."""

    def __init__(self, heights: dict[str, int]) -> None:
        super().__init__()
        self.heights = heights
        self.asked: list[str] = []

    def query(self, expr: str, at: float | None = None) -> dict:
        self.asked.append(expr)
        if "ledger_blockchain_height" in expr:
            return {"resultType": "vector", "result": [
                {"metric": {"host": h}, "value": [0, str(v)]} for h, v in self.heights.items()]}
        return super().query(expr, at)


def byof_lab(tmp_path: Path, *, operations: bool = True) -> Lab:
    doc = yaml.safe_load((REPO / "environments/byof.yaml").read_text())
    doc["caliper"]["workers"]["vms"] = 1
    doc["caliper"]["rounds"] = [{"label": "saturate", "tps": 100, "duration": 60,
                                 "workload": {"module": "workloads/create-asset.js"}}]
    for op in doc["fabric"]["operations"]:
        op.pop("cpus", None)            # (test_the_notes_say_where_fabric_cpu_comes_from)
    if not operations:
        doc["fabric"]["operations"] = []
    spec_path = tmp_path / "byof.yaml"
    spec_path.write_text(yaml.safe_dump(doc))
    p = plan_mod.build(byof.load(spec_path))
    edir = tmp_path / "env"
    (edir / "bundle" / "caliper").mkdir(parents=True)
    return Lab("byof", edir, spec_path, p, "http://127.0.0.1:1", "http://127.0.0.1:2",
               {"caliper0": 2}, "caliper0")


def go(tmp_path: Path, prom: FakePrometheus, **lab_kw):
    clock = Clock(RECORDED.window.start - 30)
    door = FakeDoor(bootstrapped=False)        # no bootstrap marker anywhere: BYOF
    result = run.run(byof_lab(tmp_path, **lab_kw), door,
                     Options(timeouts=Timeouts(register=60, poll=5)),
                     results_root=tmp_path / "results", prom=prom,
                     pushgateway=FakePushgateway(), clock=clock, sleep=clock.sleep,
                     local_versions=lambda: {"fabperf": "0.1.0"})
    return result, door


def test_a_byof_run_checks_the_channel_in_the_operations_metrics(tmp_path: Path) -> None:
    prom = ByofPrometheus({"peer0.org1.example.com": 7})
    result, door = go(tmp_path, prom)
    assert not any("bootstrap.done" in c for _, c in door.calls)
    s = result.summary
    assert s.status == "complete" and s.rounds[0].verdict["verdict"] in (
        "fabric-bound", "headroom", "load-generator-bound")
    checked = json.loads((result.bundle / "logs/byof-check.json").read_text())
    assert checked["channel_checked"] is True
    assert checked["heights"] == {"peer0.org1.example.com": 7}
    assert 'channel="mychannel"' in checked["query"]
    notes = "\n".join(s.notes)
    assert "BYOF: channel mychannel is on 1 scraped peer(s)" in notes
    assert "fabric-cpu rule has no data" in notes
    # the operations endpoints are scraped: the cross-check runs as on any environment
    assert s.rounds[0].ledger["applicable"] is True
    versions = json.loads((result.bundle / "versions.json").read_text())
    assert versions["fabric_version"] == "3.0.0"
    assert "BYOF spec" in versions["fabric_version_source"]
    assert json.loads((result.bundle / "summary.json").read_text())["caliper"][
        "worker_vms"][0]["gateway"] == "peer0.org1.example.com:7051"


def test_without_operations_endpoints_the_ledger_check_is_skipped(tmp_path: Path) -> None:
    class NoFabricMetrics(ByofPrometheus):
        def query(self, expr: str, at: float | None = None) -> dict:
            if "ledger_" in expr:
                return {"resultType": "vector", "result": []}
            return super().query(expr, at)

    prom = NoFabricMetrics({})
    result, _ = go(tmp_path, prom, operations=False)
    assert not any("ledger_blockchain_height" in q for q in prom.asked)
    (r,) = result.summary.rounds
    assert r.ledger["applicable"] is False and r.ledger["flagged"] is False
    assert r.ledger["skipped"] == ledger.SKIPPED_BYOF
    notes = "\n".join(result.summary.notes)
    assert "the spec lists no operations endpoint" in notes
    assert "the ledger cross-check is skipped" in notes
    assert not [p for p in check_bundle(result.bundle) if "ledger" in p]


def test_the_cross_check_without_series() -> None:
    skipped = ledger.skipped(10, ledger.SKIPPED_BYOF)
    assert (skipped.applicable, skipped.flagged, skipped.skipped) == \
        (False, False, ledger.SKIPPED_BYOF)
    missing = ledger.cross_check({}, 10, channel="mychannel", tolerance=0.02)
    assert missing.flagged and "no peer reports ledger_transaction_count" in missing.note


def test_fabric_cpu_from_operations_endpoints_with_cpus() -> None:
    from launch.bench import signals
    from launch.bench.prometheus import RoundResponses, Window

    def vec(*items):
        return {"resultType": "vector", "result": [
            {"metric": m, "value": [0, str(v)]} for m, v in items]}

    ops = vec(({"host": "peer0.org1.example.com", "role": "peer", "cpus": "4"}, 3.0),
              ({"host": "orderer0", "role": "orderer"}, 1.0))       # no cpus: no share
    assert signals.operations_cpu(ops) == {"peer0.org1.example.com/peer": 0.75}
    resp = RoundResponses(Window(0, 60), 0, {"fabric_process_cpu": ops}, {}, None, None, {})
    assert signals.from_responses(resp).fabric_cpu == {"peer0.org1.example.com/peer": 0.75}
    # process-exporter's answer (fabperf's own hosts) wins where there is one
    both = RoundResponses(Window(0, 60), 0, {
        "fabric_process_cpu": ops,
        "fabric_cpu": vec(({"host": "fabric", "groupname": "peer"}, 0.5))}, {}, None, None, {})
    assert signals.from_responses(both).fabric_cpu == {"fabric/peer": 0.5}


def test_the_notes_say_where_fabric_cpu_comes_from(tmp_path: Path) -> None:
    lab = byof_lab(tmp_path)
    assert "fabric-cpu rule has no data" in bench_lab.byof_notes(lab, {"note": "x"})[1]
    doc = yaml.safe_load(lab.spec_path.read_text())
    doc["fabric"]["operations"][0]["cpus"] = 4
    lab.spec_path.write_text(yaml.safe_dump(doc))
    lab2 = Lab("byof", lab.env_dir, lab.spec_path, plan_mod.build(byof.load(lab.spec_path)),
               lab.prometheus_url, lab.pushgateway_url, lab.workers, lab.manager_host)
    note = bench_lab.byof_notes(lab2, {"note": "x"})[1]
    assert "reads the operations endpoints' process CPU" in note
    assert "peer0.org1.example.com" in note
