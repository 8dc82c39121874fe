"""launch.compare.sizing: the capacity read from recorded calibration data, the headroom
rule, rounding up, the vCPU and process limits, the spec patch, the calibration loop."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from fakelab import FakeLab, recorded

from fabkit.errors import InputError
from launch.bench import results
from launch.compare import sizing
from launch.compare.lab import Bench

DATA = Path(__file__).resolve().parents[2] / "data/size/calibration-local.json"


def cal() -> sizing.Calibration:
    return sizing.Calibration.from_json(json.loads(DATA.read_text()), str(DATA))


def test_capacity_is_the_most_sent_before_the_first_load_generator_bound_step() -> None:
    c = sizing.capacity(cal())
    # 168.5 at the fabric-bound 169 TPS step; the load-generator-bound step's 190.3 TPS
    # was sent while over a bound, so it is not what the VM sustains
    assert c.reached and c.tps == 168.5
    assert c.per_process == pytest.approx(84.25) and c.per_vcpu == pytest.approx(84.25)
    assert "168.5 TPS sent at the 169 TPS step, the most it sent without being the limit" \
        in c.basis
    assert "load-generator-bound at 253 TPS" in c.basis and "send rate 190.3" in c.basis


def test_steps_after_the_first_load_generator_bound_one_are_ignored() -> None:
    base = cal()
    later = sizing.Step(400, 300.0, 100.0, 0, "headroom")
    assert sizing.capacity(replace(base, steps=(*base.steps, later))).tps == 168.5


def test_a_first_step_already_load_generator_bound_is_refused() -> None:
    c = sizing.Calibration("w", 1, 1, "r", (sizing.Step(50, 30.0, 30.0, 0,
                                                        "load-generator-bound",
                                                        ("send rate 30.0 TPS of 50",)),))
    with pytest.raises(InputError, match="load-generator-bound from its first step") as e:
        sizing.propose(c, 100)
    assert "send rate 30.0 TPS of 50" in str(e.value) and "lower rate" in e.value.hint


def test_proposal_plans_at_70_percent_and_rounds_up() -> None:
    p = sizing.propose(cal(), 1000)
    # per VM: 0.7 x min(84.25 x 2, 84.25 x 2) = 117.95 TPS; 1000 / 117.95 = 8.5 -> 9 VMs
    assert (p.vms, p.processes_per_vm, p.vcpus_per_vm) == (9, 2, 2)
    assert p.planned_per_vm == pytest.approx(117.95)
    assert p.planned_total >= 1000
    assert p.patch() == {"caliper": {"workers": {"vms": 9, "processes": 2}}}
    text = p.patch_text()
    assert yaml.safe_load(text) == p.patch()
    assert "# rule: plan each VM at 70% of what was measured" in text
    assert "ceil(1000 / 117.9) = 9" in text


def test_an_exact_multiple_is_not_rounded_up_by_float_noise() -> None:
    c = sizing.Calibration("w", 2, 2, "r", (
        sizing.Step(100, 100.0, 100.0, 0, "headroom"),
        sizing.Step(300, 150.0, 100.0, 0, "load-generator-bound")))
    # per VM 0.7 x 100 = 70.0 (in floats 70.00000000000001 or so); 210 / 70 = 3
    assert sizing.propose(c, 210).vms == 3
    assert sizing.propose(c, 210.5).vms == 4
    assert sizing.propose(c, 1).vms == 1


def test_bigger_vms_scale_processes_with_the_measured_density() -> None:
    p = sizing.propose(cal(), 1000, vcpus_per_vm=8)
    assert (p.vms, p.processes_per_vm) == (3, 8)       # 0.7 x 674 = 471.8 per VM
    assert any("assumes worker VMs of 8 vCPUs" in line for line in p.explanation)


def test_the_process_bound_limits_a_huge_vm() -> None:
    c = sizing.Calibration("w", 2, 3, "r", (
        sizing.Step(300, 300.0, 300.0, 0, "fabric-bound"),
        sizing.Step(500, 350.0, 300.0, 0, "load-generator-bound")))
    p = sizing.propose(c, 5000, vcpus_per_vm=64)
    assert p.processes_per_vm == sizing.MAX_PROCESSES           # 1.5 x 64 = 96 -> 64
    # by processes 64 x 100 = 6400 < by vCPUs 64 x 150 = 9600: processes limit
    assert p.planned_per_vm == pytest.approx(0.7 * 6400)
    assert any("limited by processes" in line for line in p.explanation)


def test_a_lower_bound_is_said_and_too_many_vms_refused() -> None:
    c = cal()
    never = replace(c, steps=c.steps[:3])
    p = sizing.propose(never, 500)
    assert not p.capacity.reached and p.capacity.tps == 111.8
    assert any("lower bound" in line for line in p.explanation)
    with pytest.raises(InputError, match="more than the spec's 128"):
        sizing.propose(c, 100_000)
    with pytest.raises(InputError, match="--target-tps"):
        sizing.propose(c, 0)
    with pytest.raises(InputError, match="--headroom"):
        sizing.propose(c, 100, headroom=1.5)


def test_recorded_calibration_is_checked_on_load(tmp_path: Path) -> None:
    doc = json.loads(DATA.read_text())
    doc["steps"][0]["verdikt"] = "x"
    with pytest.raises(InputError, match="verdikt"):
        sizing.Calibration.from_json(doc, "c.json")
    assert sizing.Calibration.from_json(cal().to_json(), "again") == cal()


def test_step_rates() -> None:
    assert sizing.step_rates(50, 1.5, 5) == (50, 75, 112, 169, 253)
    assert sizing.step_rates(1, 1.1, 3) == (1, 2, 3)
    with pytest.raises(InputError):
        sizing.step_rates(50, 1.0, 3)


class CalibrationLab(FakeLab):
    """bench answers each rate with the recorded calibration's step at that rate."""

    def __init__(self, vcpus: dict[str, int]) -> None:
        super().__init__()
        self.vcpus = vcpus
        self.steps = {s.requested_tps: s for s in cal().steps}
        self.template = results.load(recorded("v2.5.12")[0])
        self.thresholds = dict(self.template.thresholds)     # what each bundle says it used

    def worker_vcpus(self) -> dict[str, int]:
        return self.vcpus

    def bench(self, results_root, rounds=(), tps=None, duration=None, workers_per_vm=None):
        self.calls.append(("bench", tuple(rounds), tps, duration))
        s = self.steps[tps]
        r = replace(self.template.rounds[0], label=rounds[0], requested_tps=float(tps),
                    send_rate_tps=s.send_rate_tps, throughput_tps=s.throughput_tps,
                    failed=s.failed, verdict={"verdict": s.verdict, "evidence": [
                        {"detail": e} for e in s.evidence]})
        return Bench(results_root / f"step-{tps}",
                     replace(self.template, rounds=(r,), thresholds=self.thresholds))


def test_calibrate_raises_the_rate_until_load_generator_bound(tmp_path: Path) -> None:
    lab = CalibrationLab({"caliper": 2})
    kept: list[sizing.Calibration] = []
    c = sizing.calibrate(lab, "create", 2, sizing.step_rates(50, 1.5, 8), tmp_path,
                         duration=30, record=kept.append)
    assert [x[2] for x in lab.calls] == [50, 75, 112, 169, 253]     # stopped at LG-bound
    assert all(x[3] == 30 for x in lab.calls)
    assert len(kept) == 5 and kept[-1] == c
    assert [s.verdict for s in c.steps] == [s.verdict for s in cal().steps]
    assert sizing.propose(c, 1000).vms == 9


def test_calibrate_needs_one_worker_vm(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="ONE worker VM"):
        sizing.calibrate(CalibrationLab({"c0": 2, "c1": 2}), "create", 2, (50,), tmp_path)


def test_run_keeps_the_calibration_and_writes_the_patch(tmp_path: Path) -> None:
    lab = CalibrationLab({"caliper": 2})
    c, p = sizing.run(lab, tmp_path / "out", round_label="create", processes=2,
                      rates=sizing.step_rates(50, 1.5, 8), target_tps=1000)
    assert sizing.load_calibration(tmp_path / "out" / "calibration.json") == c
    patch = yaml.safe_load((tmp_path / "out" / "proposal.yaml").read_text())
    assert patch == {"caliper": {"workers": {"vms": 9, "processes": 2}}} == p.patch()


def test_cli_from_a_recorded_calibration(tmp_path: Path, capsys) -> None:
    from fabkit.clikit import run_main
    from launch.cli import cli

    spec = Path(__file__).resolve().parents[3] / "environments/local.yaml"
    argv = ["size", str(spec), "--target-tps", "1000", "--from-calibration", str(DATA)]
    assert run_main(cli, [*argv, "--out", str(tmp_path / "new" / "dir")]) == 0
    out = capsys.readouterr().out
    assert "vms: 9" in out and "ceil(1000 / 117.9) = 9" in out
    assert (tmp_path / "new" / "dir" / "proposal.yaml").is_file()
    assert run_main(cli, [*argv, "--vcpus", "8", "--output", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["proposal"]["vms"] == 3 and doc["proposal"]["processes_per_vm"] == 8
    assert run_main(cli, [*argv, "--headroom", "2"]) == 2
    assert run_main(cli, ["size", str(spec), "--target-tps", "10", "--round", "nope"]) == 2


def test_non_default_thresholds_are_recorded_and_said(tmp_path: Path) -> None:
    lab = CalibrationLab({"caliper": 2})
    lab.thresholds["eventloop_lag_s"] = 0.5
    c, p = sizing.run(lab, tmp_path / "out", round_label="create", processes=2,
                      rates=(50, 75), target_tps=100)
    assert c.thresholds == {"eventloop_lag_s": 0.5}
    assert sizing.load_calibration(tmp_path / "out" / "calibration.json") == c
    assert ("# verdicts judged with eventloop_lag_s=0.5 (not the defaults): judge the run at "
            "the target with the same") in p.patch_text()
    assert "judged with" not in sizing.propose(cal(), 100).patch_text()
    doc = c.to_json()
    doc["thresholds"] = {"eventloop_lag_s": -1}
    with pytest.raises(InputError, match=r"thresholds\.eventloop_lag_s"):
        sizing.Calibration.from_json(doc, "c.json")


def test_cli_checks_thresholds_before_anything_runs(tmp_path: Path, capsys) -> None:
    from fabkit.clikit import run_main
    from launch.cli import cli

    spec = Path(__file__).resolve().parents[3] / "environments/local.yaml"
    for cmd in (["size", str(spec), "--target-tps", "10"],
                ["compare", str(spec), "--ref", "v2.5.12", "--ref", "v3.0.0"]):
        argv = [*cmd, "--out", str(tmp_path / "o"), "--build-dir", str(tmp_path / "b"),
                "--threshold", "eventloop_lag=0.5"]
        assert run_main(cli, argv) == 2
        assert "eventloop_lag" in capsys.readouterr().err
        assert not (tmp_path / "o").exists() and not (tmp_path / "b").exists()


# --- the live calibration: one 1-vCPU worker VM of the pinned TCG lab (README), round
# create, 60 s steps at 1, 2 and 3 TPS, eventloop_lag_s=0.5 (the bundles' summary.json and
# the calibration.json `launch size --target-tps 1 --rates 1,2,3,4 --duration 60` wrote)

LIVE = DATA.parent / "live"


def live() -> sizing.Calibration:
    return sizing.load_calibration(LIVE / "calibration.json")


class RecordedLab(FakeLab):
    """bench answers the Nth step with the Nth recorded step's real summary.json."""

    def worker_vcpus(self) -> dict[str, int]:
        return {"caliper": 1}

    def bench(self, results_root, rounds=(), tps=None, duration=None, workers_per_vm=None):
        self.calls.append(("bench", tuple(rounds), tps, duration))
        step = LIVE / f"step-{len(self.calls)}"
        return Bench(step, results.load(step))


def test_live_calibration_stops_at_the_first_load_generator_bound_step(tmp_path) -> None:
    lab = RecordedLab()
    c = sizing.calibrate(lab, "create", 1, (1, 2, 3, 4), tmp_path, duration=60)
    assert [x[2] for x in lab.calls] == [1, 2, 3]          # 4 never ran
    recorded_steps = [replace(s, bundle="") for s in live().steps]
    assert [replace(s, bundle="") for s in c.steps] == recorded_steps
    assert c == replace(live(), steps=c.steps)
    assert [s.verdict for s in c.steps] == ["headroom", "headroom", "load-generator-bound"]
    assert c.steps[2].evidence == (
        "worker VM CPU busy 85% on caliper (> 85%)",
        "worker event-loop lag p99 0.653 s on worker 0 (> 0.500 s)")
    # the verdicts are the bundles' own, judged with the thresholds they record
    assert results.load(LIVE / "step-3").thresholds["eventloop_lag_s"] == 0.5


def test_live_proposal_arithmetic_and_headroom() -> None:
    cap = sizing.capacity(live())
    # 2.0 TPS sent at the 2 TPS step (headroom); the 3 TPS step was load-generator-bound
    assert (cap.tps, cap.per_process, cap.per_vcpu, cap.reached) == (2.0, 2.0, 2.0, True)
    cases = {  # target TPS: (VMs, processes per VM) for 1-vCPU VMs, 1.4 TPS planned each
        1: (1, 1), 1.4: (1, 1), 2: (2, 1), 2.8: (2, 1), 3: (3, 1), 10: (8, 1),
        100: (72, 1)}
    for target, shape in cases.items():
        p = sizing.propose(live(), target)
        assert (p.vms, p.processes_per_vm) == shape, target
        assert p.planned_per_vm == pytest.approx(1.4)
        # the headroom rule: at the target no process and no VM runs above 70 % of what the
        # calibration VM sustained
        assert target / p.vms <= 0.7 * cap.tps + 1e-9
        assert target / (p.vms * p.processes_per_vm) <= 0.7 * cap.per_process + 1e-9
        assert p.planned_total >= target - 1e-9
    # what `launch size` wrote for --target-tps 2, comments and patch
    assert sizing.propose(live(), 2).patch_text() == (
        LIVE / "proposal-target-2.yaml").read_text()
    # bigger VMs keep the measured density (1 process per vCPU) and scale per vCPU
    p = sizing.propose(live(), 10, vcpus_per_vm=4)
    assert (p.vms, p.processes_per_vm, p.planned_per_vm) == (2, 4, pytest.approx(5.6))
    assert sizing.propose(live(), 2, headroom=1.0).vms == 1
    with pytest.raises(InputError, match="more than the spec's 128"):
        sizing.propose(live(), 200)
