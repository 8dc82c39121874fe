"""`launch size ENV.yaml --target-tps N`: how many Caliper worker VMs x processes a target
needs so that Caliper is not the limit.

Calibration (`calibrate`, on a launched environment with ONE worker VM): one round of the
spec at rising fixed rates (`rates`, e.g. 50, 75, 112 ...), `launch bench --round L --tps R`
each, until the verdict is load-generator-bound (launch.bench.verdict: send rate < 95 % of
the request, or the worker VM's CPU > 85 %, or event-loop lag). Every step's bundle is kept
and the steps are recorded in calibration.json.

Sustained steps: a step counts only when its verdict is `headroom` or `fabric-bound` and
its failures are within launch.compare.figures.MAX_FAILED_PCT (1 %) of its transactions;
an `inconclusive` or `failing` step, or one whose transactions failed over the bound, is
listed as not counted, with the reason. Then the best sustained step is run once more
(`repeat`): if the repeat does not sustain, the next best is tried, and so on.

Capacity (`capacity`): what that VM sustained = the send rate of the best sustained step
BEFORE the first load-generator-bound one whose repeat also sustained (the lower of the two
runs' send rates). The load-generator-bound step's own rate is not it: that step was
already over a bound (live, TCG: worker VM 85 % at 3 TPS, and a later run at 70 % of those
3 TPS was itself load-generator-bound, VM CPU 86 %). Per process = capacity / processes,
per vCPU = capacity / vCPUs. A first step that is already load-generator-bound leaves
nothing sustained: an error that says to start lower. No load-generator-bound step: the VM
was never the limit, the capacity is a lower bound and the proposal errs towards more VMs;
it says so. A calibration recorded before repeats existed says its step was not repeated.

Proposal (`propose`, pure arithmetic): plan every VM at HEADROOM (70 %) of what the
calibration measured -
    processes per VM p = ceil(processes/vCPU measured x vCPUs of the proposed VMs), at most 64
    planned rate per VM = headroom x min(per-process x p, per-vCPU x vCPUs)
    VMs = ceil(target / planned rate per VM), at most 128 (the spec's bound)
so at the target each process runs at <= 70 % of what one sustained and each VM at <= 70 %
of its measured capacity. The patch sets caliper.workers.vms and .processes; VM size is the
provider's setting (the patch's comment names the vCPUs it assumes). Proposed VMs of more
than 2x the calibrated VM's vCPUs are an extrapolation the calibration did not measure: the
proposal says so. It ends with the exact `launch bench` command that checks it, and
`launch size --verify` runs that command and says whether the target was met with headroom
(`verify`).
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fabkit import inputs
from fabkit.atomic import write_atomic
from fabkit.errors import InputError
from fabkit.inputs import Rule, check_fields
from launch.compare import figures
from launch.spec.thresholds import Thresholds

HEADROOM = 0.7
MAX_PROCESSES = 64          # launch.spec.env: processes per VM
MAX_VMS = 128               # launch.spec.env: Caliper VMs
LOAD_BOUND = "load-generator-bound"
SCHEMA = "fabperf.size.calibration/1"
EXTRAPOLATION = 2
"""proposed VMs beyond this many times the calibrated VM's vCPUs: said to be unmeasured"""


VERIFY_RATIO = 0.95
"""a verify run meets the target when it sends, and its goodput reaches, this share of it
(Caliper's fixed-rate controller and the window's edges leave a few per cent)"""


@dataclass(frozen=True)
class Step:
    """One calibration step: the round at one requested rate."""

    requested_tps: float
    send_rate_tps: float | None
    throughput_tps: float | None
    failed: int
    verdict: str
    evidence: tuple[str, ...] = ()
    bundle: str = ""
    succeeded: int | None = None
    """None: a calibration recorded before it was kept (then any failure is over the bound)"""
    repeat: bool = False
    """a second run of an earlier step's rate (the best sustained one)"""

    def not_sustained(self) -> str:
        """Why this step does not count as sustained ('' when it does)."""
        if self.verdict not in figures.COMPARABLE_VERDICTS:
            return f"verdict {self.verdict}"
        total = (self.succeeded or 0) + self.failed
        if self.failed and (self.succeeded is None
                            or 100 * self.failed / total > figures.MAX_FAILED_PCT):
            share = f"{100 * self.failed / total:.1f} %" if self.succeeded is not None else \
                "share unknown"
            return (f"{self.failed} failed transactions ({share}; the bound is "
                    f"{figures.MAX_FAILED_PCT:g} %)")
        return ""


@dataclass(frozen=True)
class Calibration:
    """What one worker VM sustained: its vCPUs, its worker processes, the steps."""

    host: str
    vcpus: int
    processes: int
    round: str
    steps: tuple[Step, ...]
    thresholds: Mapping[str, float] = field(default_factory=dict)
    """the verdict thresholds that differed from the defaults (spec or --threshold): the
    steps' verdicts, and so the capacity, hold under these"""

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self), "thresholds": dict(self.thresholds),
                "steps": [{**asdict(s), "evidence": list(s.evidence)} for s in self.steps]}

    @classmethod
    def from_json(cls, doc: Any, where: str) -> Calibration:
        if not isinstance(doc, Mapping) or doc.get("schema") != SCHEMA:
            raise InputError.field(where, "schema", SCHEMA,
                                   doc.get("schema") if isinstance(doc, Mapping) else doc)
        top = check_fields(doc, [Rule("schema", str), Rule("host", str),
                                 Rule("vcpus", int, minimum=1, maximum=1024),
                                 Rule("processes", int, minimum=1, maximum=MAX_PROCESSES),
                                 Rule("round", str), Rule("steps", list),
                                 Rule("thresholds", dict, default={})],
                           source=where, path="")
        steps = []
        for i, s in enumerate(top["steps"]):
            f = check_fields(s, [Rule("requested_tps", (int, float), minimum=1),
                                 Rule("send_rate_tps", (int, float), default=None, minimum=0),
                                 Rule("throughput_tps", (int, float), default=None, minimum=0),
                                 Rule("failed", int, minimum=0), Rule("verdict", str),
                                 Rule("evidence", list, default=[]),
                                 Rule("bundle", str, default=""),
                                 Rule("succeeded", int, default=None, minimum=0),
                                 Rule("repeat", bool, default=False)],
                             source=where, path=f"steps[{i}]")
            steps.append(Step(**{**f, "evidence": tuple(str(e) for e in f["evidence"])}))

        changed = Thresholds.from_mapping(top["thresholds"], source=where,
                                          path="thresholds").changed()
        return cls(top["host"], top["vcpus"], top["processes"], top["round"], tuple(steps),
                   changed)


@dataclass(frozen=True)
class Capacity:
    tps: float
    per_process: float
    per_vcpu: float
    reached: bool
    """a load-generator-bound step was seen (else tps is a lower bound)"""
    basis: str
    confirmed: bool = True
    """the step was repeated and sustained again"""
    not_counted: tuple[str, ...] = ()
    """steps below the bound that were not sustained, with the reason"""


def _ladder(cal: Calibration) -> tuple[list[Step], Step | None]:
    """The first runs of each rate up to (not including) the first load-generator-bound."""
    ladder: list[Step] = []
    for s in cal.steps:
        if s.repeat:
            continue
        if s.verdict == LOAD_BOUND:
            return ladder, s
        ladder.append(s)
    return ladder, None


def _choice(cal: Calibration) -> tuple[Step | None, list[Step], list[Step]]:
    """(the step the capacity comes from, its repeats, the sustained steps whose repeat did
    not sustain)."""
    ladder, _ = _ladder(cal)
    sustained = sorted((s for s in ladder if not s.not_sustained() and s.send_rate_tps),
                       key=lambda s: s.send_rate_tps or 0.0, reverse=True)
    disproved: list[Step] = []
    for s in sustained:
        reps = [r for r in cal.steps if r.repeat and r.requested_tps == s.requested_tps]
        if any(r.not_sustained() or not r.send_rate_tps for r in reps):
            disproved.append(s)
            continue
        return s, reps, disproved
    return None, [], disproved


def to_repeat(cal: Calibration) -> float | None:
    """The rate to run again to confirm the capacity (None: nothing left to confirm)."""
    best, reps, _ = _choice(cal)
    return best.requested_tps if best is not None and not reps else None


def capacity(cal: Calibration) -> Capacity:
    """What the calibration VM sustained (see the module docstring)."""
    ladder, bound = _ladder(cal)
    why = ("; ".join(bound.evidence) or "verdict") if bound else ""
    not_counted = tuple(f"{s.requested_tps:g} TPS: {s.not_sustained()}" for s in ladder
                        if s.not_sustained())
    best, reps, disproved = _choice(cal)
    if best is None:
        if bound is not None and not ladder:
            raise InputError(f"calibration of {cal.host}: load-generator-bound from its first "
                             f"step ({bound.requested_tps:g} TPS: {why}), so it sustained "
                             "no rate to plan from",
                             hint="calibrate from a lower rate (--start or --rates)")
        raise InputError(f"calibration of {cal.host}: no step sustained its rate ("
                         + "; ".join([*not_counted, *(f"{s.requested_tps:g} TPS: its repeat "
                                                      "did not sustain" for s in disproved)])
                         + ")" if ladder else f"calibration of {cal.host}: no step measured",
                         hint="look at the steps' bundles; calibrate from a lower rate")
    sends = [best.send_rate_tps or 0.0, *(r.send_rate_tps or 0.0 for r in reps)]
    tps = min(sends)
    basis = (f"{tps:.1f} TPS sent at the {best.requested_tps:g} TPS step"
             + (f" (the lower of {len(sends)} runs)" if reps else " (not repeated: a "
                "calibration recorded before repeats)")
             + ", the most it sustained without being the limit "
             + (f"(load-generator-bound at {bound.requested_tps:g} TPS: {why})"
                if bound is not None else
                f"(never load-generator-bound up to {ladder[-1].requested_tps:g} TPS: "
                "a lower bound)"))
    if disproved:
        basis += ("; not sustained when repeated: "
                  + ", ".join(f"{s.requested_tps:g} TPS" for s in disproved))
    return Capacity(tps, tps / cal.processes, tps / cal.vcpus, bound is not None, basis,
                    bool(reps), not_counted)


@dataclass(frozen=True)
class Proposal:
    target_tps: float
    vms: int
    processes_per_vm: int
    vcpus_per_vm: int
    planned_per_vm: float
    headroom: float
    capacity: Capacity
    explanation: tuple[str, ...]
    verify: tuple[str, ...] = ()
    """the `launch bench` command line (argv) that checks the proposal"""
    extrapolated: bool = False
    """the proposed VMs are more than EXTRAPOLATION x the calibrated VM's vCPUs"""

    @property
    def planned_total(self) -> float:
        return self.planned_per_vm * self.vms

    def verify_text(self) -> str:
        return shlex.join(self.verify)

    def patch(self) -> dict[str, Any]:
        return {"caliper": {"workers": {"vms": self.vms, "processes": self.processes_per_vm}}}

    def patch_text(self) -> str:
        head = "".join(f"# {line}\n" for line in self.explanation)
        tail = ""
        if self.verify:
            tail = (f"# verify: with this patch applied (launch up), the target is met with "
                    f"headroom when this round's verdict is headroom and it sends and its "
                    f"goodput reaches {VERIFY_RATIO:.0%} of the target (`launch size ... "
                    f"--verify` runs it and says so):\n"
                    f"#   {self.verify_text()}\n")
        return head + yaml.safe_dump(self.patch(), sort_keys=False) + tail

    def to_json(self) -> dict[str, Any]:
        return {"target_tps": self.target_tps, "vms": self.vms,
                "processes_per_vm": self.processes_per_vm, "vcpus_per_vm": self.vcpus_per_vm,
                "planned_per_vm": self.planned_per_vm, "planned_total": self.planned_total,
                "headroom": self.headroom, "capacity": asdict(self.capacity),
                "patch": self.patch(), "explanation": list(self.explanation),
                "verify": list(self.verify), "extrapolated": self.extrapolated}


def _ceil(x: float) -> int:
    return math.ceil(x - 1e-9)      # 3.0000000001 from float noise is 3


def verify_command(environment: str, round_label: str, target_tps: float, processes: int,
                   duration: int | None, thresholds: Mapping[str, float]) -> tuple[str, ...]:
    """`launch bench` at the target on the proposed fleet (a whole-TPS rate: bench's --tps)."""
    argv = ["launch", "bench", environment, "--round", round_label,
            "--tps", str(_ceil(target_tps)), "--workers-per-vm", str(processes)]
    if duration:
        argv += ["--duration", str(duration)]
    for k, v in sorted(thresholds.items()):
        argv += ["--threshold", f"{k}={v:g}"]
    return tuple(argv)


def propose(cal: Calibration, target_tps: float, *, headroom: float = HEADROOM,
            vcpus_per_vm: int | None = None, environment: str = "ENV",
            duration: int | None = None) -> Proposal:
    """Worker VMs x processes for target_tps (the module docstring's rule)."""
    if not 0 < target_tps < math.inf:     # (NaN fails every comparison)
        raise InputError.field(None, "--target-tps", "a positive rate", target_tps)
    if not 0 < headroom <= 1:
        raise InputError.field(None, "--headroom", "a share in (0, 1]", headroom)
    cap = capacity(cal)
    v = vcpus_per_vm or cal.vcpus
    density = cal.processes / cal.vcpus
    p = min(MAX_PROCESSES, max(1, _ceil(density * v)))
    by_process, by_vcpu = cap.per_process * p, cap.per_vcpu * v
    per_vm = headroom * min(by_process, by_vcpu)
    vms = max(1, _ceil(target_tps / per_vm))
    if vms > MAX_VMS:
        raise InputError(f"--target-tps {target_tps:g} needs {vms} worker VMs of {v} vCPUs "
                         f"at {per_vm:.1f} TPS each (more than the spec's {MAX_VMS})",
                         hint="propose larger VMs (--vcpus) or lower the target")
    limit = "processes" if by_process <= by_vcpu else "vCPUs"
    lines = [
        f"launch size: {target_tps:g} TPS target; calibration on {cal.host} "
        f"({cal.vcpus} vCPUs, {cal.processes} worker processes, round {cal.round})",
        f"measured: {cap.basis}",
        f"= {cap.per_process:.1f} TPS per worker process, {cap.per_vcpu:.1f} TPS per vCPU",
        f"rule: plan each VM at {headroom:.0%} of what was measured; keep "
        f"{density:g} processes per vCPU",
        f"per VM of {v} vCPUs: {p} processes, {headroom:.0%} x min({by_process:.1f} by "
        f"processes, {by_vcpu:.1f} by vCPUs) = {per_vm:.1f} TPS (limited by {limit})",
        f"VMs: ceil({target_tps:g} / {per_vm:.1f}) = {vms}; planned {per_vm * vms:.1f} TPS, "
        f"{target_tps / (vms * p):.1f} TPS per process at the target",
    ]
    if cal.thresholds:
        lines.append("verdicts judged with " + ", ".join(
            f"{k}={v:g}" for k, v in sorted(cal.thresholds.items()))
            + " (not the defaults): judge the run at the target with the same")
    if cap.not_counted:
        lines.append("not counted as sustained: " + "; ".join(cap.not_counted))
    if not cap.reached:
        lines.append("the calibration never made the VM the limit: its capacity is a lower "
                     "bound, so this proposal may use more VMs than needed")
    if v != cal.vcpus:
        lines.append(f"assumes worker VMs of {v} vCPUs (set their size in the provider "
                     "settings); capacity scaled per vCPU from the calibration")
    extrapolated = v > EXTRAPOLATION * cal.vcpus
    if extrapolated:
        lines.append(f"EXTRAPOLATED: {v} vCPUs per VM is {v / cal.vcpus:g}x the calibrated "
                     f"VM's {cal.vcpus}, beyond the {EXTRAPOLATION}x this calibration can vouch "
                     "for (per-vCPU capacity is rarely linear that far): calibrate a VM of "
                     "that size, or run the verify command below before relying on it")
    verify = verify_command(environment, cal.round, target_tps, p, duration, cal.thresholds)
    return Proposal(float(target_tps), vms, p, v, per_vm, headroom, cap, tuple(lines), verify,
                    extrapolated)


# --- the calibration run ------------------------------------------------------------------

def step_rates(start: float, factor: float, steps: int) -> tuple[float, ...]:
    """start, start*factor, ... (rounded to whole TPS, strictly rising)."""
    if start < 1 or factor <= 1 or not 1 <= steps <= 30:
        raise InputError.field(None, "--start/--factor/--steps",
                               "start >= 1, factor > 1, 1 to 30 steps",
                               (start, factor, steps))
    out: list[float] = []
    for k in range(steps):
        r = float(round(start * factor ** k))
        out.append(r if not out or r > out[-1] else out[-1] + 1)
    return tuple(out)


def calibrate(lab: Any, round_label: str, processes: int, rates: Sequence[float],
              results_root: Path, *, duration: int | None = None,
              progress: Callable[[str], None] = lambda _: None,
              record: Callable[[Calibration], None] = lambda _: None) -> Calibration:
    """Run the round at each rate on the lab's one worker VM until load-generator-bound.
    `record` gets the calibration after every step (to keep it on disk). The thresholds it
    records are those the steps' bundles say they were judged with."""

    vcpus = lab.worker_vcpus()
    if len(vcpus) != 1:
        raise InputError(f"launch size calibrates ONE worker VM; {lab.environment} has "
                         f"{len(vcpus)} ({', '.join(sorted(vcpus))})",
                         hint="set caliper.workers.vms: 1 in the spec for the calibration")
    (host, n), = vcpus.items()
    cal = Calibration(host, n, processes, round_label, ())

    def one(rate: float, repeat: bool, what: str) -> Step | None:
        nonlocal cal
        progress(f"{what}: {round_label} at {rate:g} TPS on {host} ({processes} processes, "
                 f"{n} vCPUs)")
        b = lab.bench(results_root, (round_label,), tps=int(rate), duration=duration)
        r = next((x for x in b.summary.rounds if x.label == round_label), None)
        if r is None or r.status != "completed":
            progress(f"  the round did not complete ({r.status if r else 'missing'}) "
                     f"({b.bundle})")
            return None
        fired = tuple(str(c.get("detail")) for c in r.verdict.get("evidence", []))
        verdict = str(r.verdict.get("verdict"))
        step = Step(rate, r.send_rate_tps, r.throughput_tps, r.failed, verdict, fired,
                    str(b.bundle), r.succeeded, repeat)
        changed = Thresholds.from_mapping(b.summary.thresholds, source=str(b.bundle),
                                          path="thresholds").changed()
        cal = Calibration(host, n, processes, round_label, (*cal.steps, step), changed)
        record(cal)
        why = step.not_sustained()
        progress(f"  sent {r.send_rate_tps} TPS, throughput {r.throughput_tps} TPS "
                 f"({r.failed} failed): {verdict}"
                 + (f" (not counted as sustained: {why})" if why and verdict != LOAD_BOUND
                    else ""))
        return step

    for i, rate in enumerate(rates, 1):
        step = one(rate, False, f"calibration step {i}/{len(rates)}")
        if step is None:
            progress("  stopping the ladder")
            break
        if step.verdict == LOAD_BOUND:
            break
    if not cal.steps:
        raise InputError(f"calibration of {host}: no step completed",
                         hint=f"look at the bundles under {results_root}")
    # the best sustained step once more: a capacity seen once may be luck
    for _ in range(len(cal.steps)):
        again = to_repeat(cal)
        if again is None:
            break
        if one(again, True, "repeating the best sustained step") is None:
            # a repeat that did not complete did not sustain its rate
            cal = Calibration(host, n, processes, round_label, (*cal.steps, Step(
                again, None, None, 0, "incomplete", (), "", None, True)), cal.thresholds)
            record(cal)
    return cal


CALIBRATION = "calibration.json"
PROPOSAL = "proposal.yaml"


def write_proposal(p: Proposal, out_dir: Path) -> Path:
    """out_dir/proposal.yaml: the spec patch with its explanation as comments."""

    out_dir.mkdir(parents=True, exist_ok=True)
    return write_atomic(out_dir / PROPOSAL, p.patch_text())


def load_calibration(path: Path) -> Calibration:
    return Calibration.from_json(inputs.load_json_file(path, what="calibration"), str(path))


def run(lab: Any, out_dir: Path, *, round_label: str, processes: int,
        rates: Sequence[float], target_tps: float, duration: int | None = None,
        headroom: float = HEADROOM, vcpus_per_vm: int | None = None,
        progress: Callable[[str], None] = lambda _: None) -> tuple[Calibration, Proposal]:
    """`launch size`: calibrate (bundles under out_dir/<env>/, the steps in
    out_dir/calibration.json after each), propose, write out_dir/proposal.yaml."""
    out_dir.mkdir(parents=True, exist_ok=True)

    def keep(cal: Calibration) -> None:
        write_atomic(out_dir / CALIBRATION, json.dumps(cal.to_json(), indent=2) + "\n")

    cal = calibrate(lab, round_label, processes, rates, out_dir, duration=duration,
                    progress=progress, record=keep)
    proposal = propose(cal, target_tps, headroom=headroom, vcpus_per_vm=vcpus_per_vm,
                       environment=lab.environment, duration=duration)
    write_proposal(proposal, out_dir)
    return cal, proposal


# --- the check at the target --------------------------------------------------------------

VERIFY = "verify.json"


@dataclass(frozen=True)
class Verification:
    """What the run at the target said of the proposal."""

    met: bool
    """the target was sent and its goodput reached (within the send-rate tolerance)"""
    headroom: bool
    """... and the round's verdict is headroom: neither the fleet nor Fabric at a bound"""
    answer: str
    """one line: met with headroom | met, but ... | not met: ..."""
    verdict: str
    send_rate_tps: float | None
    goodput_tps: float | None
    failed: int
    evidence: tuple[str, ...]
    bundle: str
    command: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "evidence": list(self.evidence), "command": list(self.command)}


def verify(lab: Any, proposal: Proposal, round_label: str, results_root: Path, *,
           duration: int | None = None, send_ratio: float = VERIFY_RATIO,
           progress: Callable[[str], None] = lambda _: None) -> Verification:
    """Run the proposal's `launch bench` (the round at the target, the proposed processes
    per VM) on a lab whose spec carries the proposal, and judge it: met when the round
    completed, sent >= send_ratio x the target and its goodput reached send_ratio x the
    target; with headroom when its verdict is also headroom. The answer is kept in
    results_root/verify.json (the bundle under results_root/<env>/)."""
    v = _verify(lab, proposal, round_label, results_root, duration=duration,
                send_ratio=send_ratio, progress=progress)
    results_root.mkdir(parents=True, exist_ok=True)
    write_atomic(results_root / VERIFY, json.dumps(v.to_json(), indent=2) + "\n")
    return v


def _verify(lab: Any, proposal: Proposal, round_label: str, results_root: Path, *,
            duration: int | None, send_ratio: float,
            progress: Callable[[str], None]) -> Verification:
    vms = lab.worker_vcpus()
    if len(vms) != proposal.vms:
        raise InputError(f"{lab.environment} has {len(vms)} worker VM(s), the proposal "
                         f"{proposal.vms}", hint="apply proposal.yaml to the spec "
                         f"(caliper.workers.vms: {proposal.vms}) and `launch up` it first")
    small = {h: c for h, c in vms.items() if c < proposal.vcpus_per_vm}
    if small:
        raise InputError(f"worker VMs smaller than the proposal's {proposal.vcpus_per_vm} "
                         f"vCPUs: {small}", hint="size the worker VMs in the provider settings")
    tps = _ceil(proposal.target_tps)
    progress(f"verify: {proposal.verify_text()}")
    b = lab.bench(results_root, (round_label,), tps=tps, duration=duration,
                  workers_per_vm=proposal.processes_per_vm)
    r = next((x for x in b.summary.rounds if x.label == round_label), None)
    if r is None or r.status != "completed":
        return Verification(False, False, f"not met: the round did not complete "
                            f"({r.status if r else 'missing'})", "-", None, None, 0, (),
                            str(b.bundle), proposal.verify)
    verdict = str(r.verdict.get("verdict", "-"))
    evidence = tuple(str(c.get("detail")) for c in r.verdict.get("evidence", []))
    good = figures.goodput(r)
    sent_ok = (r.send_rate_tps or 0.0) >= send_ratio * tps
    good_ok = (good or 0.0) >= send_ratio * tps
    met = sent_ok and good_ok and verdict != LOAD_BOUND
    because = "; ".join(evidence) or verdict
    if met and verdict == "headroom":
        answer = (f"met with headroom: sent {r.send_rate_tps} TPS, goodput {good:.2f} TPS of "
                  f"{tps}, verdict headroom")
    elif met:
        answer = (f"met, without headroom: verdict {verdict} ({because}): the fleet kept "
                  "up, something else is at its bound")
    elif verdict == LOAD_BOUND:
        answer = (f"not met: the proposed fleet is the limit ({because}): plan with a lower "
                  "--headroom or recalibrate")
    else:
        answer = (f"not met: sent {r.send_rate_tps} TPS, goodput "
                  f"{'-' if good is None else f'{good:.2f}'} TPS of {tps} (verdict {verdict}: "
                  f"{because})")
    return Verification(met, met and verdict == "headroom", answer, verdict, r.send_rate_tps,
                        good, r.failed, evidence, str(b.bundle), proposal.verify)
