"""`launch size ENV.yaml --target-tps N`: how many Caliper worker VMs x processes a target
needs so that Caliper is not the limit.

Calibration (`calibrate`, on a launched environment with ONE worker VM): one round of the
spec at rising fixed rates (`rates`, e.g. 50, 75, 112 ...), `launch bench --round L --tps R`
each, until the verdict is load-generator-bound (launch.bench.verdict: send rate < 95 % of
the request, or the worker VM's CPU > 85 %, or event-loop lag). Every step's bundle is kept
and the steps are recorded in calibration.json.

Capacity (`capacity`): what that VM sustained = the highest send rate Caliper achieved in
the steps BEFORE the first load-generator-bound one (headroom or fabric-bound: the VM was
not the limit there). The load-generator-bound step's own rate is not it: that step was
already over a bound (live, TCG: worker VM 85 % at 3 TPS, and a later run at 70 % of those
3 TPS was itself load-generator-bound, VM CPU 86 %). Per process = capacity / processes,
per vCPU = capacity / vCPUs. A first step that is already load-generator-bound leaves
nothing sustained: an error that says to start lower. No load-generator-bound step: the VM
was never the limit, the capacity is a lower bound and the proposal errs towards more VMs;
it says so.

Proposal (`propose`, pure arithmetic): plan every VM at HEADROOM (70 %) of what the
calibration measured -
    processes per VM p = ceil(processes/vCPU measured x vCPUs of the proposed VMs), at most 64
    planned rate per VM = headroom x min(per-process x p, per-vCPU x vCPUs)
    VMs = ceil(target / planned rate per VM), at most 128 (the spec's bound)
so at the target each process runs at <= 70 % of what one sustained and each VM at <= 70 %
of its measured capacity. The patch sets caliper.workers.vms and .processes; VM size is the
provider's setting (the patch's comment names the vCPUs it assumes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fabkit import inputs
from fabkit.atomic import write_atomic
from fabkit.errors import InputError
from fabkit.inputs import Rule, check_fields
from launch.spec.thresholds import Thresholds

HEADROOM = 0.7
MAX_PROCESSES = 64          # launch.spec.env: processes per VM
MAX_VMS = 128               # launch.spec.env: Caliper VMs
LOAD_BOUND = "load-generator-bound"
SCHEMA = "fabperf.size.calibration/1"


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
                                 Rule("bundle", str, default="")],
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


def capacity(cal: Calibration) -> Capacity:
    """What the calibration VM sustained (see the module docstring)."""
    sustained: list[Step] = []
    bound: Step | None = None
    for s in cal.steps:
        if s.verdict == LOAD_BOUND:
            bound = s
            break
        sustained.append(s)
    why = ("; ".join(bound.evidence) or "verdict") if bound else ""
    rates = [(s.send_rate_tps, s) for s in sustained if s.send_rate_tps]
    if not rates:
        if bound is not None:
            raise InputError(f"calibration of {cal.host}: load-generator-bound from its first "
                             f"step ({bound.requested_tps:g} TPS: {why}), so it sustained "
                             "no rate to plan from",
                             hint="calibrate from a lower rate (--start or --rates)")
        raise InputError(f"calibration of {cal.host}: no step measured a send rate",
                         hint="look at the steps' bundles (manager log)")
    best, at = max(rates, key=lambda x: x[0])
    basis = (f"{best:.1f} TPS sent at the {at.requested_tps:g} TPS step, the most it sent "
             "without being the limit "
             + (f"(load-generator-bound at {bound.requested_tps:g} TPS: {why})"
                if bound is not None else
                f"(never load-generator-bound up to {cal.steps[-1].requested_tps:g} TPS: "
                "a lower bound)"))
    return Capacity(best, best / cal.processes, best / cal.vcpus, bound is not None, basis)


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

    @property
    def planned_total(self) -> float:
        return self.planned_per_vm * self.vms

    def patch(self) -> dict[str, Any]:
        return {"caliper": {"workers": {"vms": self.vms, "processes": self.processes_per_vm}}}

    def patch_text(self) -> str:
        head = "".join(f"# {line}\n" for line in self.explanation)
        return head + yaml.safe_dump(self.patch(), sort_keys=False)

    def to_json(self) -> dict[str, Any]:
        return {"target_tps": self.target_tps, "vms": self.vms,
                "processes_per_vm": self.processes_per_vm, "vcpus_per_vm": self.vcpus_per_vm,
                "planned_per_vm": self.planned_per_vm, "planned_total": self.planned_total,
                "headroom": self.headroom, "capacity": asdict(self.capacity),
                "patch": self.patch(), "explanation": list(self.explanation)}


def _ceil(x: float) -> int:
    return math.ceil(x - 1e-9)      # 3.0000000001 from float noise is 3


def propose(cal: Calibration, target_tps: float, *, headroom: float = HEADROOM,
            vcpus_per_vm: int | None = None) -> Proposal:
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
    if not cap.reached:
        lines.append("the calibration never made the VM the limit: its capacity is a lower "
                     "bound, so this proposal may use more VMs than needed")
    if v != cal.vcpus:
        lines.append(f"assumes worker VMs of {v} vCPUs (set their size in the provider "
                     "settings); capacity scaled per vCPU from the calibration")
    return Proposal(float(target_tps), vms, p, v, per_vm, headroom, cap, tuple(lines))


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
    for i, rate in enumerate(rates, 1):
        progress(f"calibration step {i}/{len(rates)}: {round_label} at {rate:g} TPS "
                 f"on {host} ({processes} processes, {n} vCPUs)")
        b = lab.bench(results_root, (round_label,), tps=int(rate), duration=duration)
        r = next((x for x in b.summary.rounds if x.label == round_label), None)
        if r is None or r.status != "completed":
            progress(f"  the round did not complete ({r.status if r else 'missing'}); "
                     f"stopping ({b.bundle})")
            break
        fired = tuple(str(c.get("detail")) for c in r.verdict.get("evidence", []))
        verdict = str(r.verdict.get("verdict"))
        step = Step(rate, r.send_rate_tps, r.throughput_tps, r.failed, verdict, fired,
                    str(b.bundle))
        changed = Thresholds.from_mapping(b.summary.thresholds, source=str(b.bundle),
                                          path="thresholds").changed()
        cal = Calibration(host, n, processes, round_label, (*cal.steps, step), changed)
        record(cal)
        progress(f"  sent {r.send_rate_tps} TPS, throughput {r.throughput_tps} TPS "
                 f"({r.failed} failed): {verdict}")
        if verdict == LOAD_BOUND:
            break
    if not cal.steps:
        raise InputError(f"calibration of {host}: no step completed",
                         hint=f"look at the bundles under {results_root}")
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
    import json


    out_dir.mkdir(parents=True, exist_ok=True)

    def keep(cal: Calibration) -> None:
        write_atomic(out_dir / CALIBRATION, json.dumps(cal.to_json(), indent=2) + "\n")

    cal = calibrate(lab, round_label, processes, rates, out_dir, duration=duration,
                    progress=progress, record=keep)
    proposal = propose(cal, target_tps, headroom=headroom, vcpus_per_vm=vcpus_per_vm)
    write_proposal(proposal, out_dir)
    return cal, proposal
