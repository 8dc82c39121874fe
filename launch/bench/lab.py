"""The launched environment as bench sees it (the Lab): opened from the state and the
spec it was launched with, checked up, ready and bootstrapped (or, for BYOF, what can be known
of the user's channel), and how many Caliper worker processes run on each worker VM."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fabkit.errors import ExternalError, InputError
from launch.bench.door import Door
from launch.bench.prometheus import Prometheus
from launch.bench.signals import vector
from launch.lifecycle import up
from launch.machines import ssh
from launch.render import plan as plan_mod
from launch.render.plan import Plan
from launch.spec import byof, contract
from launch.spec.byof import ByofSpec
from launch.spec.common import MAX_PROCESSES, SpecKind


@dataclass(frozen=True)
class Lab:
    """A launched environment as bench sees it."""

    name: str
    env_dir: Path
    spec_path: Path
    plan: Plan
    prometheus_url: str
    pushgateway_url: str
    workers: Mapping[str, int]         # worker VM -> worker processes
    manager_host: str

    @property
    def total_workers(self) -> int:
        return sum(self.workers.values())

    @property
    def byof(self) -> ByofSpec | None:
        """The spec when it is a BYOF one (the user's Fabric network), else None."""
        return self.plan.spec if isinstance(self.plan.spec, ByofSpec) else None


def default_workers(vcpus: int) -> int:
    """About 1.5 worker processes per vCPU (one Node.js process is about one core), within
    the spec's bound on processes per VM."""
    return min(MAX_PROCESSES, max(1, math.ceil(1.5 * vcpus)))


def endpoint(target: ssh.Target, ports: Mapping[str, int], guest_port: int) -> str:
    """host:port where the operator's machine reaches a guest port (a forwarded port on
    the address the provider gave for SSH, else the guest port itself)."""
    return f"{target.address}:{ports.get(str(guest_port), guest_port)}"


def recorded_spec(arg: str, *, build_dir: Path) -> tuple[Path, Any]:
    """The spec the environment ENV was launched with (path, loaded), unchanged since; read
    from disk only, so that every option can be checked against it before a machine is
    touched. InputError (exit 2) when it is gone or changed."""
    state = up.recorded(arg, build_dir=build_dir)
    spec_path = Path(state.spec_path)
    if not spec_path.is_file():
        raise InputError(f"environment {state.environment}: its spec {spec_path} is gone",
                         hint="bench renders the rounds from the spec the lab was launched with")
    if state.spec_sha256 and hashlib.sha256(spec_path.read_bytes()).hexdigest() \
            != state.spec_sha256:
        raise InputError(f"{spec_path} changed since `launch up` of {state.environment}",
                         hint="run `launch up` again (or restore the file) so the rounds "
                              "match the running lab")
    return spec_path, byof.load_any(spec_path)


def open_lab(arg: str, *, build_dir: Path, repo_root: Path,
             workers_per_vm: int | None = None) -> tuple[Lab, dict[str, ssh.Target]]:
    """The environment ENV names, checked up and ready; InputError (exit 2) otherwise."""
    state, rows = up.status(arg, build_dir=build_dir)
    down = [f"{r.name} ({r.phase}{'' if r.alive else ', not running'})" for r in rows
            if r.phase != "ready" or not r.alive]
    if not rows or down:
        raise InputError(f"environment {state.environment} is not up: "
                         + (", ".join(down) or "no hosts"),
                         hint=f"run `launch up {state.spec_path or 'ENV.yaml'}`")
    spec_path, spec = recorded_spec(arg, build_dir=build_dir)
    plan = plan_mod.build(spec, manifest_root=repo_root)
    targets = {h: up.target(state.environment, h, build_dir=build_dir) for h in state.hosts}
    mon = state.hosts[plan.monitor.name]
    mt = targets[plan.monitor.name]
    n = workers_per_vm
    workers = {w.host: n or w.processes for w in plan.workers}
    lab = Lab(state.environment, up.env_dir(build_dir, state.environment), spec_path, plan,
              f"http://{endpoint(mt, mon.ports, contract.PORTS['prometheus'])}",
              f"http://{endpoint(mt, mon.ports, contract.PORTS['pushgateway'])}",
              workers, plan.workers[0].host)
    return lab, targets


def worker_vcpus(door: Door, lab: Lab, hosts: Sequence[str] | None = None) -> dict[str, int]:
    """The vCPUs of each worker VM of `hosts` (default: every one), `nproc` there."""
    out = {}
    for host in lab.workers if hosts is None else hosts:
        res = door.run(host, "nproc")
        try:
            out[host] = int(res.stdout.split()[0])
        except (ValueError, IndexError):
            raise ExternalError(f"{host}: `nproc` answered {res.stdout!r}") from None
    return out


def auto_workers(door: Door, lab: Lab, hosts: Sequence[str] | None = None) -> Lab:
    """The Lab with default_workers(vCPUs) worker processes on each VM of `hosts` (default:
    every worker VM)."""
    counts = {host: default_workers(n) for host, n in worker_vcpus(door, lab, hosts).items()}
    return replace(lab, workers={**lab.workers, **counts})


def resolve_workers(door: Door, lab: Lab, workers_per_vm: int | str | None) -> Lab:
    """Worker processes per VM for this run: --workers-per-vm N (already in the Lab), `auto`
    on every VM, else the spec's count, where the spec's `processes: auto` (its default)
    means about 1.5 per vCPU of that VM."""
    if workers_per_vm == "auto":
        return auto_workers(door, lab)
    if workers_per_vm is None:
        auto = [w.host for w in lab.plan.workers if w.auto]
        if auto:
            return auto_workers(door, lab, auto)
    return lab


def check_bootstrapped(door: Door, lab: Lab) -> dict[str, Any]:
    """The bootstrap node's contract.BOOTSTRAP_DONE (JSON); InputError when it is not there."""
    if lab.plan.bootstrap is None:
        raise InputError(f"environment {lab.name} has no bootstrap node (a BYOF network is "
                         "the user's)")
    host = lab.plan.bootstrap.name
    res = door.run(host, f"sudo -n cat {contract.BOOTSTRAP_DONE}", check=False)
    if ssh.no_session(res):
        # an unreachable host says nothing about its bootstrap: not "run launch up"
        raise ExternalError(f"environment {lab.name}: {host} did not answer over SSH, so its "
                            f"bootstrap could not be checked: "
                            f"{res.stderr.strip()[-300:] or 'no message'}",
                            hint=f"`launch status {lab.name}` shows whether it runs; a VM "
                                 "starved of CPU answers late (load average)")
    if not res.ok or not res.stdout.strip():
        raise InputError(f"environment {lab.name} is not bootstrapped: {host} has no "
                         f"{contract.BOOTSTRAP_DONE} (channel and chaincode are not set up)",
                         hint=f"run `launch up {lab.spec_path}`; `launch status {lab.name}` "
                              "shows where it stands")
    try:
        doc = json.loads(res.stdout)
    except ValueError:
        doc = {"raw": res.stdout.strip()}
    return doc if isinstance(doc, dict) else {"value": doc}


def check_byof(prom: Prometheus, spec: ByofSpec) -> dict[str, Any]:
    """What can be known of a BYOF network's channel without touching it beyond its
    operations endpoints (fabperf did not set it up, so there is no bootstrap marker): the
    peers' ledger_blockchain_height for the spec's channel, as the monitor scraped it. The
    chaincode is the spec's word (a missing one shows as failed transactions)."""
    # (the first key names the check, as bootstrap.done names the other kind's)
    doc: dict[str, Any] = {SpecKind.BYOF.value: True, "channel": spec.channel,
                           "chaincode": spec.chaincode,
                           "channel_checked": False, "chaincode_checked": False}
    if not spec.operations:
        doc["note"] = ("the spec lists no operations endpoint: channel and chaincode are "
                       "taken from the spec unchecked")
        return doc
    query = (f'max by (host) (ledger_blockchain_height{{job="fabric", '
             f'channel="{spec.channel}"}})')
    try:
        heights = {labels.get("host", "?"): int(v)
                   for labels, v in vector(prom.query(query))}
    except ExternalError as exc:
        doc["note"] = f"Prometheus could not be asked for the channel: {exc.message}"
        return doc
    doc["query"] = query
    if heights:
        doc.update(channel_checked=True, heights=heights,
                   note=f"channel {spec.channel} is on {len(heights)} scraped peer(s); the "
                        "chaincode is taken from the spec unchecked")
    else:
        doc["note"] = (f"no operations endpoint reports channel {spec.channel} "
                       "(ledger_blockchain_height) yet: channel and chaincode are taken "
                       "from the spec unchecked")
    return doc


def byof_notes(lab: Lab, checked: Mapping[str, Any]) -> list[str]:
    """What a BYOF run's summary says about the evidence it could not have."""
    ops = lab.byof.operations if lab.byof is not None else ()
    with_cpus = [o.host for o in ops if o.cpus]
    notes = [f"BYOF: {checked.get('note', '')}"]
    if with_cpus:
        notes.append("BYOF: fabperf runs no exporter on the user's Fabric hosts: the "
                     "fabric-cpu rule reads the operations endpoints' process CPU over the "
                     f"vCPUs the spec gives (for {', '.join(with_cpus)}); no host's total "
                     "CPU and no chaincode process CPU")
    else:
        notes.append("BYOF: fabperf runs no exporter on the user's Fabric hosts and the spec "
                     "gives no operations endpoint's cpus: the verdict's fabric-cpu rule has "
                     "no data (Fabric process CPU unavailable); it uses Caliper's numbers, "
                     "the worker VMs' metrics and the user's operations metrics")
    if not ops:
        notes.append("BYOF: no operations endpoint is scraped: the ledger cross-check is "
                     "skipped (no ledger_transaction_count) and the committed rate is not "
                     "plotted")
    return notes
