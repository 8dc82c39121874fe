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
    assert ("168.5 TPS sent at the 169 TPS step (not repeated: a calibration recorded before "
            "repeats), the most it sustained without being the limit") in c.basis
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

    def answer(self, call: int, tps: float) -> sizing.Step:
        return self.steps[tps]

    def worker_vcpus(self) -> dict[str, int]:
        return self.vcpus

    def bench(self, results_root, rounds=(), tps=None, duration=None, workers_per_vm=None):
        self.calls.append(("bench", tuple(rounds), tps, duration))
        s = self.answer(len(self.calls), tps)
        r = replace(self.template.rounds[0], label=rounds[0], requested_tps=float(tps),
                    send_rate_tps=s.send_rate_tps, throughput_tps=s.throughput_tps,
                    failed=s.failed, succeeded=s.succeeded or 0,
                    verdict={"verdict": s.verdict, "evidence": [
                        {"detail": e} for e in s.evidence]})
        return Bench(results_root / f"step-{tps}",
                     replace(self.template, rounds=(r,), thresholds=self.thresholds))


def test_calibrate_raises_the_rate_until_load_generator_bound(tmp_path: Path) -> None:
    lab = CalibrationLab({"caliper": 2})
    kept: list[sizing.Calibration] = []
    c = sizing.calibrate(lab, "create", 2, sizing.step_rates(50, 1.5, 8), tmp_path,
                         duration=30, record=kept.append)
    # stopped at LG-bound, then the best sustained step (169) once more
    assert [x[2] for x in lab.calls] == [50, 75, 112, 169, 253, 169]
    assert all(x[3] == 30 for x in lab.calls)
    assert len(kept) == 6 and kept[-1] == c and c.steps[-1].repeat
    assert [s.verdict for s in c.steps[:5]] == [s.verdict for s in cal().steps]
    cap = sizing.capacity(c)
    assert cap.confirmed and cap.tps == 168.5 and "(the lower of 2 runs)" in cap.basis
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
    """bench answers a rate with the recorded step's real summary.json at that rate (1, 2,
    3 TPS); `vms` worker VMs of 1 vCPU."""

    def __init__(self, vms: int = 1) -> None:
        super().__init__()
        self.vms = vms

    def worker_vcpus(self) -> dict[str, int]:
        return {f"caliper{i}" if i else "caliper": 1 for i in range(self.vms)}

    def bench(self, results_root, rounds=(), tps=None, duration=None, workers_per_vm=None):
        self.calls.append(("bench", tuple(rounds), tps, duration, workers_per_vm))
        step = LIVE / f"step-{tps}"
        return Bench(step, results.load(step))


def test_live_calibration_stops_at_the_first_load_generator_bound_step(tmp_path) -> None:
    lab = RecordedLab()
    c = sizing.calibrate(lab, "create", 1, (1, 2, 3, 4), tmp_path, duration=60)
    assert [x[2] for x in lab.calls] == [1, 2, 3, 2]    # 4 never ran; 2 repeated
    recorded_steps = [replace(s, bundle="") for s in live().steps]
    # the recorded calibration predates succeeded counts and repeats
    assert [replace(s, bundle="", succeeded=None) for s in c.steps[:3]] == recorded_steps
    assert [s.succeeded for s in c.steps] == [61, 121, 181, 121]
    assert c.steps[3].repeat and c.steps[3].requested_tps == 2
    assert sizing.capacity(c).confirmed
    assert c == replace(live(), steps=c.steps)
    assert [s.verdict for s in c.steps] == ["headroom", "headroom", "load-generator-bound",
                                            "headroom"]
    assert c.steps[2].evidence == (
        "worker VM CPU busy 85% on caliper (> 85%)",
        "worker event-loop lag p99 0.653 s on worker 0 (> 0.500 s)")
    # the verdicts are the bundles' own, judged with the thresholds they record
    assert results.load(LIVE / "step-3").thresholds["eventloop_lag_s"] == 0.5


def test_live_proposal_arithmetic_and_headroom() -> None:
    """The recorded live calibration re-judged: steps 1 and 2 are headroom with no failure
    (sustained), step 3 load-generator-bound: the capacity is still 2.0 TPS, now said to be
    one run (the calibration was recorded before the best step was repeated)."""
    cap = sizing.capacity(live())
    # 2.0 TPS sent at the 2 TPS step (headroom); the 3 TPS step was load-generator-bound
    assert (cap.tps, cap.per_process, cap.per_vcpu, cap.reached) == (2.0, 2.0, 2.0, True)
    assert not cap.confirmed and not cap.not_counted
    assert "(not repeated: a calibration recorded before repeats)" in cap.basis
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
    # what `launch size` wrote live for --target-tps 2: the same patch; the text now also
    # says the step was one run and ends with the command that verifies it
    recorded = (LIVE / "proposal-target-2.yaml").read_text()
    text = sizing.propose(live(), 2, environment="size", duration=60).patch_text()
    assert yaml.safe_load(text) == yaml.safe_load(recorded)
    assert text.splitlines()[-1] == ("#   launch bench size --round create --tps 2 "
                                     "--workers-per-vm 1 --duration 60 --threshold "
                                     "eventloop_lag_s=0.5")
    # bigger VMs keep the measured density (1 process per vCPU) and scale per vCPU
    p = sizing.propose(live(), 10, vcpus_per_vm=4)
    assert (p.vms, p.processes_per_vm, p.planned_per_vm) == (2, 4, pytest.approx(5.6))
    assert sizing.propose(live(), 2, headroom=1.0).vms == 1
    with pytest.raises(InputError, match="more than the spec's 128"):
        sizing.propose(live(), 200)


# --- what counts as sustained, the repeat, the extrapolation, the verify command --------

def steps(*rows: tuple) -> sizing.Calibration:
    return sizing.Calibration("w", 2, 2, "create", tuple(sizing.Step(*r) for r in rows))


def test_failing_inconclusive_and_failures_over_the_bound_are_not_capacity() -> None:
    c = steps((50, 50.0, 50.0, 0, "headroom", (), "", 3000),
              (75, 75.0, 70.0, 0, "failing", ("94% failed",), "", 270),
              (112, 111.8, 100.0, 300, "fabric-bound", (), "", 6000),
              (169, 168.0, 160.0, 0, "inconclusive", (), "", 9000),
              (253, 190.0, 100.0, 0, "load-generator-bound", ("send rate",), "", 9000))
    cap = sizing.capacity(c)
    assert cap.tps == 50.0 and not cap.confirmed
    assert cap.not_counted == (
        "75 TPS: verdict failing",
        "112 TPS: 300 failed transactions (4.8 %; the bound is 1 %)",
        "169 TPS: verdict inconclusive")
    text = sizing.propose(c, 100).patch_text()
    assert "# not counted as sustained: 75 TPS: verdict failing; 112 TPS" in text
    # a calibration without succeeded counts: any failure is over the bound
    old = steps((50, 50.0, 50.0, 2, "headroom"), (75, 75.0, 75.0, 0, "headroom"))
    assert sizing.capacity(old).not_counted == (
        "50 TPS: 2 failed transactions (share unknown; the bound is 1 %)",)
    with pytest.raises(InputError, match="no step sustained its rate"):
        sizing.capacity(steps((50, 50.0, 50.0, 0, "failing"),
                              (75, 70.0, 70.0, 0, "load-generator-bound")))


def test_a_repeat_that_does_not_sustain_falls_back_to_the_next_step(tmp_path: Path) -> None:
    class Flaky(CalibrationLab):
        def answer(self, call: int, tps: float) -> sizing.Step:
            if call == 6:                    # the repeat of 169: the VM was the limit now
                return sizing.Step(169, 150.0, 100.0, 0, "load-generator-bound",
                                   ("worker VM CPU busy 91%",))
            return self.steps[tps]

    lab = Flaky({"caliper": 2})
    lines: list[str] = []
    c = sizing.calibrate(lab, "create", 2, sizing.step_rates(50, 1.5, 8), tmp_path,
                         progress=lines.append)
    assert [x[2] for x in lab.calls] == [50, 75, 112, 169, 253, 169, 112]
    cap = sizing.capacity(c)
    assert cap.tps == 111.8 and cap.confirmed
    assert "not sustained when repeated: 169 TPS" in cap.basis
    assert sum("repeating the best sustained step" in line for line in lines) == 2


def test_a_proposal_beyond_twice_the_calibrated_vcpus_says_so() -> None:
    near = sizing.propose(cal(), 1000, vcpus_per_vm=4)          # 2x: measured enough
    assert not near.extrapolated and "EXTRAPOLATED" not in near.patch_text()
    far = sizing.propose(cal(), 1000, vcpus_per_vm=8)           # 4x the calibrated 2
    assert far.extrapolated and far.to_json()["extrapolated"]
    assert ("# EXTRAPOLATED: 8 vCPUs per VM is 4x the calibrated VM's 2, beyond the 2x"
            in far.patch_text())


def test_the_proposal_ends_with_the_bench_command_that_verifies_it() -> None:
    p = sizing.propose(cal(), 1000, environment="lab", duration=120)
    assert p.verify == ("launch", "bench", "lab", "--round", "create", "--tps", "1000",
                        "--workers-per-vm", "2", "--duration", "120")
    assert p.patch_text().splitlines()[-1] == "#   " + p.verify_text()
    assert sizing.propose(cal(), 10.2).verify[6] == "11"      # bench takes whole TPS


def test_verify_against_the_recorded_lab(tmp_path: Path) -> None:
    # target 1 TPS from the live calibration: 1 VM x 1 process; the recorded 1 TPS run
    # on that VM was headroom
    p = sizing.propose(live(), 1, environment="size", duration=60)
    lab = RecordedLab(vms=1)
    v = sizing.verify(lab, p, "create", tmp_path, duration=60)
    assert v.met and v.headroom and v.answer.startswith("met with headroom: sent 1.0 TPS")
    assert lab.calls == [("bench", ("create",), 1, 60, 1)]
    assert v.command == p.verify and v.to_json()["met"]
    # the same VM at 3 TPS was the limit: not met, and why
    p3 = replace(p, target_tps=3.0)
    v = sizing.verify(RecordedLab(vms=1), p3, "create", tmp_path)
    assert not v.met and not v.headroom
    assert v.answer.startswith("not met: the proposed fleet is the limit (worker VM CPU")
    # the spec must carry the proposal first
    with pytest.raises(InputError, match="has 1 worker VM.*the proposal 2") as e:
        sizing.verify(RecordedLab(vms=1), sizing.propose(live(), 2), "create", tmp_path)
    assert "apply proposal.yaml" in e.value.hint


def test_cli_verify(tmp_path: Path, capsys, monkeypatch) -> None:
    from fabkit.clikit import run_main
    from launch.cli import cli
    from launch.compare import lab as lab_mod

    spec = Path(__file__).resolve().parents[3] / "environments/local.yaml"
    argv = ["size", str(spec), "--target-tps", "1", "--verify", "--out", str(tmp_path / "v")]
    assert run_main(cli, argv) == 2                       # --verify needs the calibration
    assert "--from-calibration" in capsys.readouterr().err and not (tmp_path / "v").exists()
    monkeypatch.setattr(lab_mod, "RealLab", lambda *a, **k: RecordedLab(vms=1))
    assert run_main(cli, [*argv, "--from-calibration", str(LIVE / "calibration.json"),
                          "--duration", "60", "--build-dir", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "verify: met with headroom" in out
    doc = json.loads((tmp_path / "v" / "verify.json").read_text())
    assert doc["met"] and doc["headroom"] and doc["verdict"] == "headroom"
    assert (tmp_path / "v" / "proposal.yaml").is_file()
