"""launch.bench against a real Prometheus (Debian's prometheus 2.42) and Pushgateway.

Each scenario of bench_scenarios is backfilled with `promtool tsdb create-blocks-from
openmetrics` into a temporary TSDB, Prometheus serves it on 127.0.0.1, and the same
queries `launch bench` asks are answered by it and judged. FABPERF_RECORD=1 rewrites the
recordings under tests/data/bench/ that the unit tests judge without a Prometheus.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench_scenarios import ROUND_S, SCENARIOS, manager_log, openmetrics, report_html, totals

from fabkit import runner
from launch.bench import prometheus, report, signals, summarize, verdict
from launch.bench.prometheus import Prometheus, Pushgateway, Window
from launch.render.caliper import LATENCY_BUCKETS

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
RECORDINGS = REPO / "tests/data/bench"
NEEDS = pytest.mark.skipif(not shutil.which("prometheus") or not shutil.which("promtool"),
                           reason="Debian's prometheus package is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout}s")


@contextlib.contextmanager
def serve(argv: list[str], log: Path) -> Iterator[str]:
    """Run a Prometheus-family server on a free 127.0.0.1 port until the block ends."""
    port = free_port()
    proc = runner.spawn([*argv, f"--web.listen-address=127.0.0.1:{port}"], log_path=log)
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


T0 = float(int(time.time() - 3 * 3600) // 60 * 60)   # a round three hours ago, on a minute


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A Prometheus holding both scenarios (one after the other, 10 minutes apart)."""
    if not shutil.which("prometheus"):
        pytest.skip("Debian's prometheus package is not installed")
    d = tmp_path_factory.mktemp("prom")
    tsdb = d / "tsdb"
    for i, s in enumerate(SCENARIOS.values()):
        om = d / f"{s.name}.om"
        om.write_text(openmetrics(s, T0 + 600 * i))
        runner.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", om, tsdb],
                   log_path=d / "promtool.log")
    cfg = d / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 5s\nscrape_configs: []\n")
    with serve(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={tsdb}",
                "--web.enable-admin-api", "--storage.tsdb.retention.time=30d"],
               d / "prometheus.log") as url:
        yield Prometheus(url)


def _fetch(prom: Prometheus, i: int) -> prometheus.RoundResponses:
    start = T0 + 600 * i
    return prometheus.fetch_round(prom, Window(start, start + ROUND_S), 0)


@NEEDS
@pytest.mark.parametrize("i,name", list(enumerate(SCENARIOS)))
def test_real_prometheus_answers_give_the_verdict(prom: Prometheus, i: int, name: str) -> None:
    s = SCENARIOS[name]
    resp = _fetch(prom, i)
    sig = signals.from_responses(resp)
    assert sig.worker_vm_cpu["caliper"] == pytest.approx(s.worker_vm_busy, abs=0.03)
    assert set(sig.worker_process_cpu) == {"worker 0", "worker 1"}
    assert sig.fabric_cpu["fabric/peer"] == pytest.approx(s.peer_cores / 2, abs=0.05)
    assert sig.percentiles["p50"] is not None and len(sig.latency_buckets) == len(LATENCY_BUCKETS)
    assert len(sig.inflight) >= 10 and sig.series["send_rate"]
    succ, fail, send, tput, avg = totals(s)
    numbers = verdict.RoundNumbers(s.requested, send, tput, succ, fail)
    v = verdict.judge(numbers, sig)
    assert v.verdict.value == name, v.to_json()
    if os.environ.get("FABPERF_RECORD") == "1":
        out = RECORDINGS / name
        out.mkdir(parents=True, exist_ok=True)
        (out / "round-0.json").write_text(json.dumps(resp.to_json(), indent=1, sort_keys=True))
        (out / "report.html").write_text(report_html(
            [(s.label, succ, fail, send, s.latency_end + 0.4, s.latency_start * 0.5, avg,
              tput)]))
        (out / "manager.log").write_text(manager_log([(s.label, T0 + 600 * i, ROUND_S, succ,
                                                        fail)], s.workers))


@NEEDS
def test_ledger_cross_check_from_real_answers(prom: Prometheus) -> None:
    s = SCENARIOS["load-generator-bound"]
    resp = _fetch(prom, 0)
    plans = [summarize.RoundPlan(0, s.label, "workloads/create-asset.js", s.requested,
                                 {"type": "fixed-rate", "opts": {"tps": s.requested}})]
    succ, fail, send, tput, avg = totals(s)
    rep = [report.RoundResult(s.label, succ, fail, send, 1.0, 0.2, avg, tput)]
    summ, _ = summarize.summarize(environment="local", stamp="20261201T000000Z",
                                  status="complete", started_at="", finished_at="",
                                  plans=plans, report=rep, mlog=None, responses={0: resp},
                                  thresholds=verdict.Thresholds(), caliper={})
    ledger = summ.rounds[0].ledger
    assert ledger["committed"] == pytest.approx(s.commit * ROUND_S, rel=0.02)
    assert ledger["flagged"] is False


@NEEDS
def test_snapshot_through_the_admin_api(prom: Prometheus, tmp_path: Path) -> None:
    name = prom.snapshot()
    assert name and "/" not in name


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[Pushgateway]:
    if not shutil.which("prometheus-pushgateway"):
        pytest.skip("prometheus-pushgateway is not installed")
    with serve(["prometheus-pushgateway"], tmp_path / "pgw.log") as url:
        yield Pushgateway(url)


def test_pushgateway_groups_are_wiped_before_a_run(pushgateway: Pushgateway) -> None:
    for w in range(3):
        body = b"# TYPE caliper_tx_submitted counter\ncaliper_tx_submitted 5\n"
        req = urllib.request.Request(
            f"{pushgateway.url}/metrics/job/caliper-workers/workerIndex/{w}/roundIndex/0",
            data=body, method="POST")
        urllib.request.urlopen(req, timeout=5).close()
    urllib.request.urlopen(urllib.request.Request(
        f"{pushgateway.url}/metrics/job/other", data=b"x 1\n", method="POST"), timeout=5).close()
    assert len(pushgateway.groups()) == 3
    assert pushgateway.wipe() == 3
    assert pushgateway.groups() == []
    assert len(pushgateway.groups("other")) == 1


# Panels whose metrics the recorded scenarios do not hold (Fabric's endorser, gossip,
# orderer, Raft/BFT and host disk/network metrics, prom-client's memory and plain lag):
# they need a live run, where assert_panels_have_data is called with no exceptions.
NEEDS_LIVE_DATA = {
    "Block height", "Endorsement latency p50 / p99", "Proposals received / successful / failed",
    "Chaincode shim request latency p99", "Block processing time p50 / p99",
    "Commit latency p99: block storage / state DB", "Gossip state commit p99",
    "Deliver: blocks sent", "Gateway requests by method", "Gateway latency p99 by method",
    "Broadcast TPS by status", "Broadcast validate / enqueue p99",
    "Block fill duration p99 (first tx to block cut)", "Orderer ledger commit p99",
    "Raft leader", "Raft cluster size / active nodes / leader changes", "Raft WAL persist p99",
    "BFT leader and view", "BFT batch processing p99",
    "Cluster comm: send time p99 / egress queue", "variable $channel", "variable $instance",
    "Load average (1m) per core", "Memory available", "Memory used",
    "Network receive / transmit", "Disk busy", "Disk write throughput", "Filesystem free",
    "TCP retransmits / established", "CPU pressure (PSI waiting)", "Scrape targets up",
    "Worker event-loop lag (max)", "Resident memory by process group",
}


@NEEDS
def test_grafana_panels_against_prometheus(prom: Prometheus) -> None:
    from launch.bench import panels

    queries = panels.panel_queries()
    results = panels.check(prom, queries, at=T0 + 50)
    assert not [r for r in results if r.error], [r.error for r in results if r.error]
    empty = {r.query.panel for r in panels.empty(results)}
    assert empty == NEEDS_LIVE_DATA, (sorted(empty - NEEDS_LIVE_DATA),
                                      sorted(NEEDS_LIVE_DATA - empty))
    with_data = {q.panel for q in queries} - NEEDS_LIVE_DATA
    assert {"Submitted vs finished TPS vs Fabric committed TPS", "In flight (submitted - "
            "finished)", "End-to-end latency p50 / p95 / p99", "CPU busy",
            "Committed TPS per peer", "Caliper VM CPU busy"} <= with_data
    # the helper the e2e test calls names the empty panels
    with pytest.raises(AssertionError, match="fabperf / Fabric / Raft leader"):
        panels.assert_panels_have_data(prom.url, at=T0 + 50)
    panels.assert_panels_have_data(prom.url, at=T0 + 50, allow_empty=NEEDS_LIVE_DATA)


@NEEDS
def test_live_progress_rates(prom: Prometheus) -> None:
    from launch.bench import watch

    s = SCENARIOS["fabric-bound"]
    rates = watch.live_rates(prom, 0, T0 + 600 + 30)
    assert rates["send"] == pytest.approx(s.send, rel=0.05)
    assert rates["committed"] == pytest.approx(s.commit, rel=0.05)
    assert rates["finished"] == pytest.approx(s.commit, rel=0.1)


@NEEDS
def test_a_run_against_the_real_prometheus_and_pushgateway(prom: Prometheus,
                                                           tmp_path: Path) -> None:
    """launch.bench.run end to end with the unit tests' fake SSH door but the real
    Prometheus (backfilled fabric-bound round) and a real Pushgateway."""
    import sys

    sys.path.insert(0, str(REPO / "tests/unit/bench"))
    import test_bench_run as fakes

    from launch.bench import results, run

    s = SCENARIOS["fabric-bound"]
    start = T0 + 600
    succ, fail, send, tput, avg = totals(s)
    door = fakes.FakeDoor()
    door.log = manager_log([(s.label, start, ROUND_S, succ, fail)], s.workers
                           ).splitlines(keepends=True)
    with serve(["prometheus-pushgateway"], tmp_path / "pgw.log") as pgw_url:
        clock = fakes.Clock(start - 30)
        result = run.run(fakes.lab(tmp_path), door, run.Options(),
                         results_root=tmp_path / "results", prom=prom,
                         pushgateway=Pushgateway(pgw_url), clock=clock, sleep=clock.sleep,
                         local_versions=lambda: {"fabperf": "test"})
    r = result.summary.rounds[0]
    assert r.verdict["verdict"] == "fabric-bound"
    assert r.window == {"start": start, "end": start + ROUND_S, "seconds": ROUND_S}
    assert r.latency.p95 is not None
    assert r.ledger["committed"] == pytest.approx(s.commit * ROUND_S, rel=0.02)
    problems = results.check_bundle(result.bundle)
    assert problems == [f"round {s.label}: ledger cross-check {results.ledger_text(r.ledger)}"]
