"""launch.bench.run with a fake SSH door and a Prometheus that answers what a real one
answered (tests/data/bench/fabric-bound): the whole run, Ctrl-C, registration timeout,
an environment that is not bootstrapped."""

from __future__ import annotations

import json
import re
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from fabkit import runner
from fabkit.errors import ExternalError, InputError
from launch.bench import lab as bench_lab
from launch.bench import prometheus, run
from launch.bench.lab import Lab
from launch.bench.run import Options
from launch.bench.watch import Timeouts
from launch.render import plan as plan_mod
from launch.spec import common as spec_common
from launch.spec import env as spec_mod

# the bundle's plots: matplotlib's font manager runs fc-list once to build its font cache
pytestmark = pytest.mark.subprocess
DATA = Path(__file__).resolve().parents[2] / "data/bench/fabric-bound"
REPO = Path(__file__).resolve().parents[3]
KEY = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
RECORDED = prometheus.RoundResponses.from_json(json.loads((DATA / "round-0.json").read_text()))


def done(stdout: str = "", rc: int = 0, stderr: str = "") -> runner.Completed:
    return runner.Completed(("ssh",), rc, stdout, stderr, None)


class FakePrometheus:
    """Answers the recorded queries (by their PromQL) and records what was asked."""

    def __init__(self) -> None:
        self.by_expr = {}
        for key, expr in RECORDED.queries.items():
            kind, _, name = key.partition(".")
            self.by_expr[expr] = (kind, name)
        self.snapshots = 0

    def query(self, expr: str, at: float | None = None) -> dict:
        if expr == prometheus.LEDGER_QUERY:
            return RECORDED.ledger_before if at == RECORDED.window.start \
                else RECORDED.ledger_after
        if expr.startswith("ledger_transaction_count{") and at is not None:
            # the recorded samples, moved to the round asked about
            shift = at - RECORDED.ledger_at
            return {"resultType": "matrix", "result": [
                {**s, "values": [[t + shift, v] for t, v in s["values"]]}
                for s in RECORDED.ledger_samples["result"]]}
        kind, name = self.by_expr.get(self.norm(expr), ("", ""))
        if kind == "instant":
            return RECORDED.instant[name]
        return {"resultType": "vector", "result": []}

    def query_range(self, expr: str, start: float, end: float, step: float = 5) -> dict:
        kind, name = self.by_expr[self.norm(expr)]
        return RECORDED.ranges[name]

    @staticmethod
    def norm(expr: str) -> str:
        """Every round answers what the recorded round 0 answered (recorded before the
        committed rate was asked of the round's channel alone)."""
        expr = re.sub(r', channel="[^"]*"', "", expr)
        return re.sub(r'roundIndex="\d+"', 'roundIndex="0"', expr)

    def snapshot(self) -> str:
        self.snapshots += 1
        return "20261201T000000Z-1234"


class FakePushgateway:
    def __init__(self) -> None:
        self.wiped = 0

    def wipe(self) -> int:
        self.wiped += 1
        return 2


class FakeDoor:
    """Plays the lab's hosts: the manager logs the recorded run over a few polls."""

    def __init__(self, *, bootstrapped: bool | None = True, registers: bool = True,
                 interrupt_at_poll: int | None = None, journal_lag: int = 0) -> None:
        self.calls: list[tuple[str, str]] = []
        self.inputs: dict[str, str] = {}
        self.log = (DATA / "manager.log").read_text().splitlines(keepends=True)
        if not registers:
            self.log = self.log[:1]
        self.polls = 0
        self.bootstrapped = bootstrapped
        self.interrupt_at_poll = interrupt_at_poll
        self.stopped = False
        self.journal_lag = journal_lag   # the unit is inactive this many lines early

    def run(self, host: str, command: str, *, input: str | None = None,
            timeout: float | None = 120, check: bool = True) -> runner.Completed:
        self.calls.append((host, command))
        if input is not None:
            self.inputs[command] = input
        if "bootstrap.done" in command:
            if self.bootstrapped is None:       # the host does not answer
                return done("", 255, "Connection timed out during banner exchange\n")
            return done('{"channel": "mychannel", "chaincodes": ["fixed-asset"]}') \
                if self.bootstrapped else done("", 1)
        if command.startswith("sudo -n systemctl is-active --quiet"):
            return done("", 3)
        if "journalctl -u fabperf-caliper-manager" in command:
            self.polls += 1
            if self.interrupt_at_poll is not None and self.polls == self.interrupt_at_poll:
                raise KeyboardInterrupt
            n = len(self.log) if self.stopped else min(len(self.log), self.polls * 12)
            return done("".join(self.log[:n]))
        if command.startswith("sudo -n systemctl is-active fabperf-caliper-manager"):
            finished = self.polls * 12 >= len(self.log) - self.journal_lag \
                and len(self.log) > 1
            return done("inactive" if finished or self.stopped else "active")
        if command.startswith("sudo -n systemctl is-active caliper-worker"):
            return done("active\nfailed\n")
        if "journalctl -u mosquitto" in command:
            return done("1800000000: New client connected from 10.77.0.11:40000 as mqttjs_a "
                        "(p2, c1, k60).\n"
                        "1800000000: New client connected from 10.77.0.11:40001 as mqttjs_m "
                        "(p2, c1, k60).\n")
        if "stop fabperf-caliper-manager" in command:
            self.stopped = True
        if "report.html" in command and "cat" in command:
            return done((DATA / "report.html").read_text()) if not self.stopped \
                else done("", 1)
        if "journalctl -u caliper-worker" in command:
            return done("worker log line\n")
        if "date +%s.%N" in command:
            return done(f"{RECORDED.window.start - 20:.3f}\n")
        if "image.json" in command:
            return done('{"caliper_version": "0.6.0", "node_version": "18.20.4"}'
                        if host == "caliper" else '{"fabric_commit": "abc", "go": "1.23.5"}')
        return done()

    def fetch(self, host: str, remote: str, local: Path) -> None:
        self.calls.append((host, f"fetch {remote}"))
        with tarfile.open(local, "w:gz"):
            pass


def lab(tmp_path: Path) -> Lab:
    doc = yaml.safe_load((REPO / "environments/local.yaml").read_text())
    doc["caliper"]["rounds"] = [{"label": "saturate", "tps": 100, "duration": 60,
                                 "workload": {"module": "workloads/create-asset.js"}}]
    spec_path = tmp_path / "local.yaml"
    spec_path.write_text(yaml.safe_dump(doc))
    env = spec_mod.load(spec_path)
    p = plan_mod.build(env)
    edir = tmp_path / "env"
    cal = edir / "bundle" / "caliper"
    cal.mkdir(parents=True)
    (cal / "networkconfig-caliper.yaml").write_text(yaml.safe_dump(
        {"organizations": [{"identities": {"certificates": [
            {"name": "User1", "clientPrivateKey": {"pem": KEY}}]}}]}))
    (cal / "caliper.yaml").write_text("caliper: {}\n")
    return Lab("local", edir, spec_path, p, "http://127.0.0.1:1", "http://127.0.0.1:2",
               {"caliper": 2}, "caliper")


class Clock:
    def __init__(self, start: float) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def go(tmp_path: Path, door: FakeDoor, **kw):
    clock = Clock(RECORDED.window.start - 30)
    lines: list[str] = []
    opts = Options(timeouts=Timeouts(register=60, poll=5), **kw)
    result = run.run(lab(tmp_path), door, opts, results_root=tmp_path / "results",
                     on_progress=lines.append, prom=FakePrometheus(),
                     pushgateway=FakePushgateway(), clock=clock, sleep=clock.sleep,
                     local_versions=lambda: {"fabperf": "0.1.0"})
    return result, lines


def test_a_whole_run(tmp_path: Path) -> None:
    door = FakeDoor()
    result, lines = go(tmp_path, door)
    s = result.summary
    assert s.status == "complete" and not result.interrupted
    r = s.rounds[0]
    assert r.verdict["verdict"] == "fabric-bound" and r.succeeded == 5970
    assert r.source == "report.html"
    assert s.timings["to_first_tx"] == pytest.approx(30, abs=1)
    assert "last_tx_to_bundle" in s.timings
    # what ran where: workers restarted on the worker VM, the manager as a transient unit
    cmds = [c for _, c in door.calls]
    assert any("systemctl start caliper-worker@1.service caliper-worker@2.service" in c
               for c in cmds)
    start = next(c for c in cmds if "systemd-run" in c)
    assert "--unit=fabperf-caliper-manager" in start and "--caliper-flow-only-test" in start
    assert "--uid=caliper" in start
    bench = next(v for k, v in door.inputs.items() if "benchmark.yaml" in k)
    assert "number: 2" in bench and "saturate" in bench
    # progress lines per round
    assert any(re.match(r"round saturate \(1\): sent \d+, succeeded", x) for x in lines)
    assert any(x.startswith("round saturate finished in 60.0 s") for x in lines)
    b = result.bundle
    assert (b / "report.html").is_file() and (b / "prometheus/snapshot.tar.gz").is_file()
    assert (b / "logs/caliper/caliper-worker@2.log").read_text() == "worker log line\n"
    versions = json.loads((b / "versions.json").read_text())
    assert versions["images"]["caliper-worker"]["caliper_version"] == "0.6.0"
    assert versions["images"]["fabric-node"]["fabric_commit"] == "abc"
    assert "PRIVATE KEY" not in (b / "configs/networkconfig-caliper.yaml").read_text()
    assert (b / "configs/spec-local.yaml").is_file()
    assert json.loads((b / "summary.json").read_text())["timings"]["last_tx_to_bundle"] >= 0
    # the plotted committed rate is the round's channel's
    asked = json.loads((b / "prometheus/round-0.json").read_text())["queries"]
    assert 'channel="mychannel"' in asked["range.committed_rate"]


def test_a_manager_whose_last_lines_reach_the_journal_late_has_finished(
        tmp_path: Path) -> None:
    # the live race: the unit is already inactive while journald has not yet written
    # "Benchmark finished"; the run is complete, not "manager exited before the end"
    door = FakeDoor(journal_lag=5)
    result, lines = go(tmp_path, door)
    assert result.summary.status == "complete"
    assert any(x.startswith("round saturate finished in 60.0 s") for x in lines)


def test_a_manager_that_died_is_still_a_failure(tmp_path: Path) -> None:
    door = FakeDoor()
    door.log = [x for x in door.log if "Benchmark finished" not in x]
    with pytest.raises(ExternalError, match="exited before the benchmark finished"):
        go(tmp_path, door)


def test_ctrl_c_stops_everything_and_keeps_what_was_measured(tmp_path: Path) -> None:
    door = FakeDoor(interrupt_at_poll=3)
    lines: list[str] = []
    clock = Clock(RECORDED.window.start - 30)
    with pytest.raises(KeyboardInterrupt):
        run.run(lab(tmp_path), door, Options(), results_root=tmp_path / "results",
                on_progress=lines.append, prom=FakePrometheus(),
                pushgateway=FakePushgateway(), clock=clock, sleep=clock.sleep,
                local_versions=lambda: {})
    assert lines[-1].startswith("interrupted; what was measured is in ")
    cmds = [c for _, c in door.calls]
    assert any("stop fabperf-caliper-manager" in c for c in cmds)
    assert any("stop 'caliper-worker@*.service'" in c for c in cmds[-40:])
    (bundle,) = (tmp_path / "results/local").iterdir()
    s = json.loads((bundle / "summary.json").read_text())
    assert s["status"] == "interrupted" and not (bundle / "report.html").exists()
    # the manager had logged the round's table before Ctrl-C: its numbers are kept
    assert s["rounds"][0]["succeeded"] == 5970 and s["rounds"][0]["source"] == "manager log"


def test_workers_that_never_registered_are_named(tmp_path: Path) -> None:
    door = FakeDoor(registers=False)
    with pytest.raises(ExternalError) as e:
        go(tmp_path, door)
    msg = str(e.value)
    assert "within 60s (2 expected)" in msg
    assert "caliper (10.77.0.11): 1 of 2 worker processes connected" in msg
    assert "caliper-worker@2 (failed)" in msg
    assert "what was fetched" in msg


def test_not_bootstrapped_is_exit_2_and_starts_nothing(tmp_path: Path) -> None:
    door = FakeDoor(bootstrapped=False)
    with pytest.raises(InputError, match="not bootstrapped") as e:
        go(tmp_path, door)
    assert e.value.exit_code == 2 and "launch up" in str(e.value)
    assert not any("systemctl start" in c or "systemd-run" in c for _, c in door.calls)
    assert not (tmp_path / "results").exists()


def test_an_unreachable_bootstrap_node_is_not_called_unbootstrapped(tmp_path: Path) -> None:
    door = FakeDoor(bootstrapped=None)
    with pytest.raises(ExternalError, match="did not answer over SSH") as e:
        go(tmp_path, door)
    assert "not bootstrapped" not in str(e.value) and "banner exchange" in str(e.value)
    assert not any("systemctl start" in c or "systemd-run" in c for _, c in door.calls)
    assert not (tmp_path / "results").exists()


def test_round_selection_and_overrides(tmp_path: Path) -> None:
    env = lab(tmp_path).plan.spec
    (r,) = run.select_rounds(env, Options(rounds=("saturate",), tps=300, duration=20))
    assert (r.tps, r.duration, r.rate_control) == (300, 20, None)
    with pytest.raises(InputError, match="--round"):
        run.select_rounds(env, Options(rounds=("nope",)))


def test_default_workers_is_about_one_and_a_half_per_vcpu() -> None:
    assert [bench_lab.default_workers(n) for n in (1, 2, 4, 8)] == [2, 3, 6, 12]
    assert bench_lab.default_workers(192) == spec_common.MAX_PROCESSES


class NprocDoor:
    def __init__(self, answers: dict[str, str]) -> None:
        self.answers, self.asked = answers, []

    def run(self, host: str, command: str, **kw) -> runner.Completed:
        assert command == "nproc"
        self.asked.append(host)
        return done(self.answers[host])


def test_the_spec_default_is_one_and_a_half_workers_per_vcpu_of_each_vm(tmp_path: Path) -> None:
    doc = yaml.safe_load((REPO / "environments/local.yaml").read_text())
    del doc["caliper"]["workers"]["processes"]        # the default: auto
    path = tmp_path / "auto.yaml"
    path.write_text(yaml.safe_dump(doc))
    p = plan_mod.build(spec_mod.load(path))
    (w,) = p.workers
    assert w.auto and w.processes == 1                 # one at boot, proven by readiness
    lab = Lab("local", tmp_path, path, p, "", "", {w.host: w.processes}, "caliper")
    door = NprocDoor({"caliper": "4\n"})
    assert bench_lab.resolve_workers(door, lab, None).workers == {"caliper": 6}
    assert bench_lab.resolve_workers(door, lab, 5).workers == {"caliper": 1}   # N is in the Lab
    # an explicit count in the spec is kept, and no VM is asked
    explicit = replace(lab, plan=plan_mod.build(spec_mod.load(REPO / "environments/local.yaml")))
    door.asked.clear()
    assert bench_lab.resolve_workers(door, explicit, None).workers == {"caliper": 1}
    assert door.asked == []
    assert bench_lab.resolve_workers(door, explicit, "auto").workers == {"caliper": 6}


def test_ledger_is_read_before_the_next_round_starts(tmp_path: Path) -> None:
    """The read round's preparation commits assets: they must not count for the round
    before it."""
    t = RECORDED.window.start

    def line(at: float, msg: str) -> str:
        return f"{at:.6f} caliper caliper[1]: x info [caliper] {msg}\n"

    door = FakeDoor()
    door.log = [line(t - 5, "[worker-orchestrator] 2 workers connected, progressing"),
                line(t - 3, "[round-orchestrator] Started round 1 (saturate)"),
                line(t, "[round-orchestrator] Monitors successfully started"),
                line(t + 60.5, "[round-orchestrator] Finished round 1 (saturate) in 60.000 "
                                "seconds"),
                line(t + 66, "[round-orchestrator] Started round 2 (read)"),
                line(t + 67, "[round-orchestrator] Monitors successfully started"),
                line(t + 97.5, "[round-orchestrator] Finished round 2 (read) in 30.000 "
                               "seconds"),
                line(t + 99, "[round-orchestrator] Benchmark finished in 99 seconds.")]
    asked: list[float] = []

    class Prom(FakePrometheus):
        def query(self, expr: str, at: float | None = None) -> dict:
            if expr == prometheus.LEDGER_QUERY:
                asked.append(at)
            return super().query(expr, at)

    clock = Clock(t - 30)
    run.run(lab(tmp_path), door, Options(), results_root=tmp_path / "r", prom=Prom(),
            pushgateway=FakePushgateway(), clock=clock, sleep=clock.sleep,
            local_versions=lambda: {})
    # round 1: before at its start, after at min(end + 10 s, round 2's start)
    assert asked[:2] == [t, t + 66]
    assert asked[2:] == [t + 67, t + 97 + 10]


def test_a_waiting_state_is_said_once(tmp_path: Path) -> None:
    # issue 25, item 11: "manager starting (2 processes on 1 VMs)" was printed at every poll
    door = FakeDoor(registers=False)
    clock = Clock(RECORDED.window.start - 30)
    lines: list[str] = []
    with pytest.raises(ExternalError):
        run.run(lab(tmp_path), door, Options(timeouts=Timeouts(register=60, poll=5)),
                results_root=tmp_path / "results", on_progress=lines.append,
                prom=FakePrometheus(), pushgateway=FakePushgateway(), clock=clock,
                sleep=clock.sleep, local_versions=lambda: {"fabperf": "0.1.0"})
    waiting = [x for x in lines if x.startswith(("manager starting", "waiting for workers"))]
    assert waiting and len(waiting) == len(set(waiting)), lines
