"""`launch bench ENV`: run the spec's rounds with Caliper spread over the worker VMs.

    check   the environment is up (every host ready) and bootstrapped (the bootstrap node
            holds BOOTSTRAP_DONE); else InputError (exit 2) saying to run `launch up`
    clean   the Pushgateway's caliper-workers groups of earlier runs are deleted
    workers caliper-worker@1..N restarted on every worker VM (remote workers over MQTT to
            the monitor's Mosquitto; each VM's network config names its own gateway peer)
    manager `caliper launch manager --caliper-flow-only-test` as a transient systemd unit on
            the first worker VM, with this run's benchmark config (workers.number = all
            worker processes); its journal is polled for registration, rounds, progress
    watch   registration within Timeouts.register, else the workers that never came are
            named (unit state on each VM, connections Mosquitto logged per address);
            a progress line per poll; Ctrl-C stops the manager and the workers and goes on
            to save what was measured (status "interrupted"), then re-raises
    collect report.html, the manager's and workers' logs, Prometheus' answers per round
            window, a TSDB snapshot (admin API) as one archive, configs without private
            keys, versions -> launch.bench.collect -> results/<env>/<stamp>/

Why the manager runs on the first worker VM: the monitor image has no Node.js, while every
worker VM already has the pinned Caliper CLI bound at bake time, and the manager must be
the same Caliper as the workers. It costs little CPU: it sends a few MQTT messages per
round, merges the workers' 5 s updates and runs its Prometheus resource queries once per
round (a few % of one core at the rates a lab reaches; its process is in the `caliper`
process group of that VM, so the worker-VM CPU the verdict reads includes it - the safe
side for a load-generator verdict).

Every remote command goes through a Door (SshDoor: fabkit.runner + ssh); unit tests give a
fake one. Clocks: round windows are the manager VM's journal times, Prometheus' are the
monitor's; the lab's VMs share the host clock (qemu) or NTP (clouds).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
import re
import shlex
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import yaml

from fabkit import runner
from fabkit.atomic import write_atomic
from fabkit.errors import ExternalError, FabperfError, InputError
from launch.bench import collect, prometheus, report
from launch.bench.prometheus import Prometheus, Pushgateway, Window
from launch.bench.results import Summary
from launch.bench.signals import vector
from launch.machines import ssh
from launch.render import caliper as caliper_cfg
from launch.spec import contract
from launch.spec.thresholds import Thresholds

log = logging.getLogger("fabperf.bench")

BOOTSTRAP_DONE = "/var/lib/fabperf/bootstrap.done"     # written by the bootstrap job (JSON)
MANAGER_UNIT = "fabperf-caliper-manager"
RUN_ROOT = "/var/lib/caliper/bench"                    # caliper's home: the manager writes here
CALIPER_BIN = f"{contract.CALIPER_WORKSPACE}/node_modules/.bin/caliper"
PROMETHEUS_SNAPSHOTS = "/var/lib/prometheus/metrics2/snapshots"   # Debian's storage path


class Door(Protocol):
    """How bench reaches a host: run a shell command, copy a file back."""

    def run(self, host: str, command: str, *, input: str | None = None,
            timeout: float | None = 120, check: bool = True) -> runner.Completed: ...

    def fetch(self, host: str, remote: str, local: Path) -> None: ...


class SshDoor:
    """The real Door: ssh/scp through fabkit.runner, logged to one file."""

    def __init__(self, targets: Mapping[str, ssh.Target], log_path: Path) -> None:
        self.targets = dict(targets)
        self.log_path = log_path

    def run(self, host: str, command: str, *, input: str | None = None,
            timeout: float | None = 120, check: bool = True) -> runner.Completed:
        return ssh.run(self.targets[host], command, input=input, timeout=timeout,
                       check=check, log_path=self.log_path, connect_timeout=15,
                       attempts=ssh.CONNECT_ATTEMPTS)

    def fetch(self, host: str, remote: str, local: Path) -> None:
        runner.run(ssh.scp_argv(self.targets[host], remote, local), timeout=600,
                   log_path=self.log_path, what=f"scp from {host}")


@dataclass(frozen=True)
class Timeouts:
    """Seconds for each wait of a run."""

    register: float = 300          # every worker registered with the manager
    poll: float = 5                # between two looks at the manager's journal
    round_slack: float = 300       # per round, on top of twice its duration
    command: float = 120           # one remote command


@dataclass(frozen=True)
class Options:
    """What `launch bench` was asked."""

    rounds: tuple[str, ...] = ()          # labels, in spec order; empty: all
    tps: int | None = None                # every selected round at this fixed rate
    duration: int | None = None           # every selected round for this many seconds
    workers_per_vm: int | None = None     # default: the spec's caliper.workers.processes
    thresholds: Thresholds = field(default_factory=Thresholds)
    timeouts: Timeouts = field(default_factory=Timeouts)
    threshold_pairs: tuple[str, ...] = ()  # --threshold NAME=VALUE (bench() applies them)


@dataclass(frozen=True)
class Lab:
    """A launched environment as bench sees it."""

    name: str
    env_dir: Path
    spec_path: Path
    plan: Any                          # launch.render.plan.Plan
    prometheus_url: str
    pushgateway_url: str
    workers: Mapping[str, int]         # worker VM -> worker processes
    manager_host: str

    @property
    def total_workers(self) -> int:
        return sum(self.workers.values())


@dataclass(frozen=True)
class BenchResult:
    """What a run produced."""

    bundle: Path
    summary: Summary
    interrupted: bool


def default_workers(vcpus: int) -> int:
    """About 1.5 worker processes per vCPU (one Node.js process is about one core), within
    the spec's bound on processes per VM."""
    from launch.spec.env import MAX_PROCESSES

    return min(MAX_PROCESSES, max(1, math.ceil(1.5 * vcpus)))


def endpoint(target: ssh.Target, ports: Mapping[str, int], guest_port: int) -> str:
    """host:port where the operator's machine reaches a guest port (a forwarded port on
    the address the provider gave for SSH, else the guest port itself)."""
    return f"{target.address}:{ports.get(str(guest_port), guest_port)}"


def open_lab(arg: str, *, build_dir: Path, repo_root: Path,
             workers_per_vm: int | None = None) -> tuple[Lab, dict[str, ssh.Target]]:
    """The environment ENV names, checked up and ready; InputError (exit 2) otherwise."""
    from launch.lifecycle import up
    from launch.render import plan as plan_mod
    from launch.spec import byof

    state, rows = up.status(arg, build_dir=build_dir)
    down = [f"{r.name} ({r.phase}{'' if r.alive else ', not running'})" for r in rows
            if r.phase != "ready" or not r.alive]
    if not rows or down:
        raise InputError(f"environment {state.environment} is not up: "
                         + (", ".join(down) or "no hosts"),
                         hint=f"run `launch up {state.spec_path or 'ENV.yaml'}`")
    spec_path = Path(state.spec_path)
    if not spec_path.is_file():
        raise InputError(f"environment {state.environment}: its spec {spec_path} is gone",
                         hint="bench renders the rounds from the spec the lab was launched with")
    if state.spec_sha256 and hashlib.sha256(spec_path.read_bytes()).hexdigest() \
            != state.spec_sha256:
        raise InputError(f"{spec_path} changed since `launch up` of {state.environment}",
                         hint="run `launch up` again (or restore the file) so the rounds "
                              "match the running lab")
    spec = byof.load_any(spec_path)
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
    """The bootstrap node's BOOTSTRAP_DONE (JSON); InputError when it is not there."""
    host = lab.plan.bootstrap.name
    res = door.run(host, f"sudo -n cat {BOOTSTRAP_DONE}", check=False)
    if ssh.no_session(res):
        # an unreachable host says nothing about its bootstrap: not "run launch up"
        raise ExternalError(f"environment {lab.name}: {host} did not answer over SSH, so its "
                            f"bootstrap could not be checked: "
                            f"{res.stderr.strip()[-300:] or 'no message'}",
                            hint=f"`launch status {lab.name}` shows whether it runs; a VM "
                                 "starved of CPU answers late (load average)")
    if not res.ok or not res.stdout.strip():
        raise InputError(f"environment {lab.name} is not bootstrapped: {host} has no "
                         f"{BOOTSTRAP_DONE} (channel and chaincode are not set up)",
                         hint=f"run `launch up {lab.spec_path}`; `launch status {lab.name}` "
                              "shows where it stands")
    try:
        doc = json.loads(res.stdout)
    except ValueError:
        doc = {"raw": res.stdout.strip()}
    return doc if isinstance(doc, dict) else {"value": doc}


def check_byof(prom: Prometheus, lab: Lab) -> dict[str, Any]:
    """What can be known of a BYOF network's channel without touching it beyond its
    operations endpoints (fabperf did not set it up, so there is no bootstrap marker): the
    peers' ledger_blockchain_height for the spec's channel, as the monitor scraped it. The
    chaincode is the spec's word (a missing one shows as failed transactions)."""
    spec = lab.plan.spec
    doc: dict[str, Any] = {"byof": True, "channel": spec.channel, "chaincode": spec.chaincode,
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
    ops = lab.plan.spec.operations
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
    if not lab.plan.spec.operations:
        notes.append("BYOF: no operations endpoint is scraped: the ledger cross-check is "
                     "skipped (no ledger_transaction_count) and the committed rate is not "
                     "plotted")
    return notes


def select_rounds(spec: Any, options: Options) -> tuple[Any, ...]:
    """The spec's rounds to run, with --tps / --duration applied (spec.Round values)."""
    rounds = spec.caliper.rounds
    labels = [r.label for r in rounds]
    for label in options.rounds:
        if label not in labels:
            raise InputError.field(spec.source, "--round", f"one of the spec's rounds {labels}",
                                   label)
    chosen = [r for r in rounds if not options.rounds or r.label in options.rounds]
    out = []
    for r in chosen:
        if options.tps is not None:
            r = replace(r, tps=options.tps, rate_control=None)
        if options.duration is not None:
            r = replace(r, duration=options.duration, tx_number=None)
        out.append(r)
    return tuple(out)


def _units(n: int) -> list[str]:
    return [contract.CALIPER_UNIT.format(index=i) for i in range(1, n + 1)]


def start_workers(door: Door, lab: Lab) -> float:
    """Restart caliper-worker@1..N on every worker VM (fresh processes for this run, none
    beyond N); returns the earliest VM time (epoch) they were started at."""
    started = []
    for host, n in lab.workers.items():
        units = " ".join(_units(n))
        res = door.run(host, "sudo -n systemctl stop 'caliper-worker@*.service'; "
                             "sudo -n systemctl reset-failed 'caliper-worker@*.service' "
                             "2>/dev/null; date +%s.%N; "
                             f"sudo -n systemctl start {units}")
        started.append(float(res.stdout.split()[0]))
    return min(started)


def stop_workers(door: Door, lab: Lab) -> None:
    """Stop every caliper-worker@ unit (they would finish their round otherwise)."""
    for host in lab.workers:
        door.run(host, "sudo -n systemctl stop 'caliper-worker@*.service'", check=False)


def manager_command(run_dir: str) -> str:
    """The transient unit that runs the manager (as the caliper user, in the workspace)."""
    argv = ["sudo", "-n", "systemd-run", f"--unit={MANAGER_UNIT}", "--uid=caliper",
            "--gid=caliper", f"--working-directory={contract.CALIPER_WORKSPACE}",
            "--setenv=HOME=/var/lib/caliper", "--setenv=NODE_ENV=production",
            "--property=LimitNOFILE=1048576",
            # the manager stops its workers on SIGINT (launchManager.js): make `systemctl
            # stop` send that, and give it time to tell every worker
            "--property=KillSignal=SIGINT", "--property=TimeoutStopSec=30", "--",
            CALIPER_BIN, "launch", "manager",
            f"--caliper-workspace={contract.CALIPER_WORKSPACE}",
            f"--caliper-projectconfig={contract.CALIPER_DIR}/caliper.yaml",
            f"--caliper-networkconfig={contract.CALIPER_DIR}/networkconfig.yaml",
            f"--caliper-benchconfig={run_dir}/benchmark.yaml",
            f"--caliper-report-path={run_dir}/report.html", "--caliper-flow-only-test"]
    return shlex.join(argv)


def start_manager(door: Door, lab: Lab, run_dir: str, benchmark_text: str) -> float:
    """Upload the benchmark config and start the manager; returns the VM's start time."""
    host = lab.manager_host
    busy = door.run(host, f"sudo -n systemctl is-active --quiet {MANAGER_UNIT}", check=False)
    if busy.ok:
        raise ExternalError(f"a benchmark is already running on {host} ({MANAGER_UNIT} is "
                            "active)", hint=f"`launch ssh {lab.name} {host} -- sudo systemctl "
                                            f"stop {MANAGER_UNIT}` ends it")
    door.run(host, f"sudo -n systemctl reset-failed {MANAGER_UNIT} 2>/dev/null; "
                   f"sudo -n install -d -o caliper -g caliper -m 0750 {shlex.quote(run_dir)} && "
                   f"sudo -n tee {shlex.quote(run_dir + '/benchmark.yaml')} >/dev/null",
             input=benchmark_text)
    res = door.run(host, f"date +%s.%N; {manager_command(run_dir)}")
    return float(res.stdout.split()[0])


def stop_manager(door: Door, lab: Lab) -> None:
    door.run(lab.manager_host, f"sudo -n systemctl stop {MANAGER_UNIT}", check=False)


def manager_journal(door: Door, lab: Lab, since: float) -> str:
    return door.run(lab.manager_host, f"sudo -n journalctl -u {MANAGER_UNIT} -o short-unix "
                                      f"--no-pager --since @{int(since) - 1}").stdout


def manager_active(door: Door, lab: Lab) -> bool:
    res = door.run(lab.manager_host, f"sudo -n systemctl is-active {MANAGER_UNIT}", check=False)
    return res.stdout.strip() in ("active", "activating")


# --- who registered --------------------------------------------------------------------

_CONNECT = re.compile(r"New client connected from ([0-9a-fA-F.:]+?):\d+ as (\S+)")
_GONE = re.compile(r"Client (\S+) (?:disconnected|closed its connection|has exceeded)")


def mqtt_clients(mosquitto_log: str) -> Counter[str]:
    """Connected MQTT clients per address, from Mosquitto's log lines."""
    where: dict[str, str] = {}
    for line in mosquitto_log.splitlines():
        if m := _CONNECT.search(line):
            where[m.group(2)] = m.group(1)
        elif m := _GONE.search(line):
            where.pop(m.group(1).rstrip("."), None)
    return Counter(where.values())


def missing_workers(lab: Lab, unit_states: Mapping[str, Sequence[str]],
                    clients: Counter[str]) -> list[str]:
    """One line per worker VM that has fewer processes connected than asked, naming the
    units that are not running."""
    out = []
    for w in lab.plan.workers:
        n = lab.workers[w.host]
        states = list(unit_states.get(w.host, ()))
        connected = clients.get(w.address, 0) - (1 if w.host == lab.manager_host else 0)
        bad = [f"caliper-worker@{i} ({s})" for i, s in enumerate(states, 1) if s != "active"]
        if connected >= n and not bad:
            continue
        line = f"{w.host} ({w.address}): {max(0, connected)} of {n} worker processes " \
               "connected to Mosquitto"
        if bad:
            line += "; not running: " + ", ".join(bad)
        if not states:
            line += "; unit states unknown (SSH failed)"
        out.append(line)
    return out


def diagnose_registration(door: Door, lab: Lab, since: float) -> list[str]:
    """missing_workers() from the VMs' unit states and Mosquitto's log on the monitor."""
    states: dict[str, list[str]] = {}
    for host, n in lab.workers.items():
        res = door.run(host, "sudo -n systemctl is-active " + " ".join(_units(n)) + "; true",
                       check=False)
        if res.ok:
            states[host] = res.stdout.split()
    mq = door.run(lab.plan.monitor.name,
                  f"sudo -n journalctl -u mosquitto -o cat --no-pager --since @{int(since) - 1}",
                  check=False)
    found = missing_workers(lab, states, mqtt_clients(mq.stdout))
    return found or ["every worker unit runs and is connected, yet the manager did not count "
                     f"{lab.total_workers} registrations: see the manager log"]


# --- the run ---------------------------------------------------------------------------

def _stamp(now: float) -> str:
    return _dt.datetime.fromtimestamp(now, tz=_dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _iso(now: float) -> str:
    return _dt.datetime.fromtimestamp(now, tz=_dt.UTC).isoformat(timespec="seconds")


def progress_line(mlog: report.ManagerLog, rates: Mapping[str, float] | None) -> str | None:
    """The line for the round in progress (None before the first round)."""
    running = [r for r in mlog.rounds if r.finished is None]
    if not running:
        return None
    r = running[-1]
    total = len(mlog.rounds)
    text = f"round {r.label} ({r.index + 1}): "
    if r.progress is None:
        text += "preparing" if r.measured_start is None else "started"
    else:
        p = r.progress
        text += (f"sent {p.submitted}, succeeded {p.succeeded}, failed {p.failed}, "
                 f"unfinished {p.unfinished}")
    if rates:
        text += "; " + ", ".join(f"{k} {v:.1f} TPS" for k, v in rates.items())
    return text if total else None


def finished_line(r: report.RoundLog) -> str:
    if r.error:
        return f"round {r.label} failed: {r.error}"
    res = r.result
    if res is None:
        return f"round {r.label} finished in {r.duration or 0:.1f} s"
    return (f"round {r.label} finished in {r.duration or 0:.1f} s: send rate "
            f"{res.send_rate} TPS, throughput {res.throughput} TPS, succeeded {res.succeeded}, "
            f"failed {res.failed}")


def live_rates(prom: Prometheus, round_index: int, at: float) -> dict[str, float]:
    """Current send rate, finished rate (Caliper's throughput, failures included) and the
    ledger's committed rate (Prometheus, last 15 s)."""
    q = prometheus.range_queries(round_index)
    out = {}
    for name, key in (("send", "send_rate"), ("finished", "finish_rate"),
                      ("committed", "committed_rate")):
        data = prom.query(q[key], at)
        vals = [float(x["value"][1]) for x in data.get("result", [])]
        vals = [v for v in vals if not math.isnan(v)]
        if vals:
            out[name] = sum(vals)
    return out


def watch(door: Door, lab: Lab, since: float, timeouts: Timeouts, expected_s: float,
          on_progress: Callable[[str], None], prom: Prometheus | None, *,
          clock: Callable[[], float] = time.time,
          sleep: Callable[[float], None] = time.sleep) -> report.ManagerLog:
    """Poll the manager until it exits; registration and overall timeouts raise
    ExternalError (the caller stops everything and saves what was measured)."""
    start = clock()
    reported: set[int] = set()
    mlog = report.ManagerLog()
    while True:
        # activity first, then the journal: a manager that ends between the two looks has
        # logged its end by then (the other order took a finished run for a dead one)
        active = manager_active(door, lab)
        mlog = report.parse_manager_log(manager_journal(door, lab, since).splitlines())
        if not active:
            mlog = settle_journal(door, lab, since, mlog, timeouts, sleep)
        for r in mlog.rounds:
            if r.finished is not None and r.index not in reported:
                reported.add(r.index)
                on_progress(finished_line(r))
        if not active:
            return mlog
        if not mlog.connected and clock() - start > timeouts.register:
            missing = diagnose_registration(door, lab, since)
            raise ExternalError(
                f"not every Caliper worker registered with the manager within "
                f"{timeouts.register:.0f}s ({lab.total_workers} expected):\n  "
                + "\n  ".join(missing),
                hint=f"`launch ssh {lab.name} HOST -- journalctl -u caliper-worker@1` "
                     "shows a worker's log")
        if clock() - start > expected_s:
            raise ExternalError(f"the benchmark did not end within {expected_s:.0f}s "
                                f"(manager on {lab.manager_host}, unit {MANAGER_UNIT})")
        rates = None
        running = [r for r in mlog.rounds if r.finished is None and r.measured_start]
        if prom is not None and running:
            try:
                rates = live_rates(prom, running[-1].index, clock())
            except FabperfError:
                rates = None
        line = progress_line(mlog, rates)
        if line is None and not mlog.connected:
            got = "waiting for workers" if mlog.expected_workers else "manager starting"
            line = f"{got} ({lab.total_workers} processes on {len(lab.workers)} VMs)"
        if line:
            on_progress(line)
        sleep(timeouts.poll)


JOURNAL_SETTLE_LOOKS = 5     # journald writes a stopped unit's last lines asynchronously


def settle_journal(door: Door, lab: Lab, since: float, mlog: report.ManagerLog,
                   timeouts: Timeouts, sleep: Callable[[float], None]) -> report.ManagerLog:
    """The manager's log once its unit is inactive: read again (a second apart, at most
    JOURNAL_SETTLE_LOOKS times) until it says the benchmark finished, so a finished run is
    not taken for a dead one because journald had not written the last lines yet."""
    for _ in range(JOURNAL_SETTLE_LOOKS):
        if mlog.finished:
            break
        sleep(min(1.0, timeouts.poll))
        mlog = report.parse_manager_log(manager_journal(door, lab, since).splitlines())
    return mlog


def _safe(notes: list[str], what: str, fn: Callable[[], Any]) -> Any:
    """Run an optional collection step: a failure becomes a note, not a lost bundle."""
    try:
        return fn()
    except (FabperfError, OSError, ValueError) as exc:
        notes.append(f"{what}: {str(exc).splitlines()[0]}")
        log.warning("%s failed: %s", what, exc)
        return None


def fetch_snapshot(door: Door, lab: Lab, prom: Prometheus, stamp: str, into: Path) -> Path:
    """A TSDB snapshot, archived on the monitor, copied to `into`, removed there."""
    name = prom.snapshot()
    mon = lab.plan.monitor.name
    remote = f"/tmp/fabperf-snapshot-{stamp}.tar.gz"
    door.run(mon, f"sudo -n tar -C {PROMETHEUS_SNAPSHOTS} -czf {remote} {shlex.quote(name)} && "
                  f"sudo -n chown {ssh.ADMIN_USER} {remote}; "
                  f"sudo -n rm -rf {PROMETHEUS_SNAPSHOTS}/{shlex.quote(name)}", timeout=600)
    local = into / "snapshot.tar.gz"
    door.fetch(mon, remote, local)
    door.run(mon, f"rm -f {remote}", check=False)
    return local


def fetch_versions(door: Door, lab: Lab, local: Mapping[str, Any]) -> dict[str, Any]:
    """image.json of one host per image, the plan's image ids, fabperf's own version."""
    images: dict[str, Any] = {}
    for h in lab.plan.hosts:
        if h.image in images or h.image is None:
            continue
        res = door.run(h.name, f"cat {contract.IMAGE_JSON}", check=False)
        try:
            images[h.image] = {"host": h.name, "image_id": h.image_id,
                               **json.loads(res.stdout)}
        except ValueError:
            images[h.image] = {"host": h.name, "image_id": h.image_id,
                               "error": f"no readable {contract.IMAGE_JSON}"}
    out = {"images": images, "fabric_version": lab.plan.spec.fabric.version, **local}
    if lab.plan.kind == "byof":
        out["fabric_version_source"] = "declared in the BYOF spec (the user's network)"
    return out


def fabperf_version() -> dict[str, str]:
    """fabperf's package version (and its git commit when run from a checkout)."""
    from importlib import metadata

    out = {"fabperf": metadata.version("fabperf")}
    try:
        res = runner.run(["git", "rev-parse", "HEAD"], check=False, timeout=10,
                         cwd=Path(__file__).resolve().parents[2])
        if res.ok:
            out["fabperf_commit"] = res.stdout.strip()
    except (FabperfError, runner.SubprocessForbidden):
        pass
    return out


def local_configs(lab: Lab) -> dict[str, str]:
    """configs/: network configs (redacted), caliper.yaml, spec, plan.json."""
    cal = lab.env_dir / "bundle" / "caliper"
    out = {}
    for p in sorted(cal.glob("networkconfig-*.yaml")):
        out[p.name] = collect.network_config_text(p.read_text())
    if (cal / "caliper.yaml").is_file():
        out["caliper.yaml"] = (cal / "caliper.yaml").read_text()
    plan_json = lab.env_dir / "bundle" / "plan.json"
    if plan_json.is_file():
        out["plan.json"] = plan_json.read_text()
    out[f"spec-{lab.spec_path.name}"] = lab.spec_path.read_text()
    return out


def run(lab: Lab, door: Door, options: Options, *, results_root: Path,
        on_progress: Callable[[str], None] = lambda _: None,
        prom: Prometheus | None = None, pushgateway: Pushgateway | None = None,
        clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
        local_versions: Callable[[], Mapping[str, Any]] = fabperf_version) -> BenchResult:
    """One benchmark run on a checked Lab (see the module docstring). Ctrl-C: everything
    is stopped, what was measured is saved, then KeyboardInterrupt is raised again."""
    t_begin = clock()
    prom = prom or Prometheus(lab.prometheus_url)
    pushgateway = pushgateway or Pushgateway(lab.pushgateway_url)
    byof = lab.plan.kind == "byof"
    bootstrap = check_byof(prom, lab) if byof else check_bootstrapped(door, lab)
    rounds = select_rounds(lab.plan.spec, options)
    stamp = _stamp(t_begin)
    bench = caliper_cfg.benchmark(lab.plan, rounds=rounds, workers=lab.total_workers,
                                  run_id=stamp)
    bench_text = yaml.safe_dump(bench, sort_keys=False)
    run_dir = f"{RUN_ROOT}/{stamp}"
    notes: list[str] = byof_notes(lab, bootstrap) if byof else []
    expected = sum(2 * (r.duration or (r.tx_number or 0) / max(r.tps, 1)) for r in rounds) \
        + options.timeouts.round_slack * max(1, len(rounds)) + options.timeouts.register
    status = "complete"
    interrupted = False
    failure: ExternalError | None = None
    mlog: report.ManagerLog | None = None
    since = t_begin
    on_progress(f"{lab.name}: {len(rounds)} rounds, {lab.total_workers} workers on "
                f"{len(lab.workers)} VMs, manager on {lab.manager_host}")
    try:
        wiped = _safe(notes, "Pushgateway clean-up", pushgateway.wipe)
        if wiped:
            log.info("deleted %d Pushgateway groups of earlier runs", wiped)
        since = start_workers(door, lab)
        start_manager(door, lab, run_dir, bench_text)
        mlog = watch(door, lab, since, options.timeouts, expected, on_progress, prom,
                     clock=clock, sleep=sleep)
        if not mlog.finished:
            status = "failed"
            notes.append("the manager exited before the benchmark finished: see "
                         "logs/manager.log")
    except KeyboardInterrupt:
        interrupted, status = True, "interrupted"
        on_progress("interrupted: stopping the manager and the workers, saving what was "
                    "measured")
    except ExternalError as exc:
        status, failure = "failed", exc
        notes.append(str(exc))
    finally:
        if status != "complete":
            stop_manager(door, lab)
            stop_workers(door, lab)
    tmp = Path(tempfile.mkdtemp(prefix="fabperf-bench-"))
    try:
        fetched = _collect(lab, door, prom, stamp=stamp, run_dir=run_dir, since=since,
                           bench=bench, status=status, mlog=mlog, notes=notes,
                           bootstrap=bootstrap, t_begin=t_begin, tmp=tmp, clock=clock,
                           sleep=sleep, local_versions=local_versions)
        path, summary = collect.write(results_root, fetched, options.thresholds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    last_end = max((r.window["end"] for r in summary.rounds if r.window), default=None)
    if last_end is not None:
        # the bundle is published: its timings are completed in place (atomic replace)
        timings = {**summary.timings, "last_tx_to_bundle": round(clock() - last_end, 1)}
        summary = replace(summary, timings=timings)
        write_atomic(path / "summary.json", json.dumps(summary.to_json(), indent=2,
                                                       sort_keys=True, default=str) + "\n")
    if interrupted:
        on_progress(f"interrupted; what was measured is in {path}")
        raise KeyboardInterrupt
    if failure is not None:
        raise ExternalError(f"{failure.message}\n  what was fetched: {path}", hint=failure.hint)
    if status == "failed":
        raise ExternalError(f"the Caliper manager on {lab.manager_host} exited before the "
                            f"benchmark finished; what was fetched: {path}",
                            hint=f"see {path}/logs/manager.log")
    return BenchResult(path, summary, interrupted)


def _collect(lab: Lab, door: Door, prom: Prometheus, *, stamp: str, run_dir: str,
             since: float, bench: Mapping[str, Any], status: str,
             mlog: report.ManagerLog | None, notes: list[str], bootstrap: Mapping[str, Any],
             t_begin: float, tmp: Path, clock: Callable[[], float],
             sleep: Callable[[float], None],
             local_versions: Callable[[], Mapping[str, Any]]) -> collect.Fetched:
    """Everything the run left, each optional part a note when it fails."""
    text = _safe(notes, "manager log", lambda: manager_journal(door, lab, since)) or ""
    if text:
        mlog = report.parse_manager_log(text.splitlines())
    res = _safe(notes, "report.html", lambda: door.run(
        lab.manager_host, f"sudo -n cat {shlex.quote(run_dir + '/report.html')}", check=False))
    report_html = res.stdout if res is not None and res.ok and res.stdout.strip() else None
    byof = lab.plan.kind == "byof"
    logs: dict[str, str] = {"byof-check.json" if byof else "bootstrap.done.json":
                            json.dumps(dict(bootstrap), indent=2)}
    for host, n in lab.workers.items():
        for unit in _units(n):
            out = _safe(notes, f"log of {unit} on {host}", lambda h=host, u=unit: door.run(
                h, f"sudo -n journalctl -u {u} -o short-iso-precise --no-pager "
                   f"--since @{int(since) - 1}").stdout)
            if out is not None:
                logs[f"{host}/{unit.removesuffix('.service')}.log"] = out
    logged = list(mlog.rounds) if mlog else []
    windows = {r.index: Window(*r.window) for r in logged if r.window}
    # read the ledger after a round two scrapes after its end, but before the next round
    # starts (its preparation may commit: the read workload creates its assets)
    next_start = {r.index: nxt.started for r, nxt in zip(logged, logged[1:], strict=False)
                  if nxt.started is not None}
    if windows:
        # the last commits are scraped two intervals after a round's end
        wait = max(w.end for w in windows.values()) + 2 * prometheus.SCRAPE_INTERVAL_S - clock()
        if wait > 0:
            sleep(wait)
    responses = {}
    for i, w in windows.items():
        until = min(w.end + 2 * prometheus.SCRAPE_INTERVAL_S, next_start.get(i, math.inf))
        got = _safe(notes, f"Prometheus queries of round {i + 1}",
                    lambda w=w, i=i, u=until: prometheus.fetch_round(prom, w, i,
                                                                     ledger_until=u))
        if got is not None:
            responses[i] = got
    snapshot = _safe(notes, "Prometheus snapshot",
                     lambda: fetch_snapshot(door, lab, prom, stamp, tmp))
    versions = _safe(notes, "versions", lambda: fetch_versions(door, lab, local_versions())) \
        or {}
    first = min((w.start for w in windows.values()), default=None)
    timings = {"to_first_tx": round(first - t_begin, 1)} if first else {}
    return collect.Fetched(
        environment=lab.name, stamp=stamp, started_at=_iso(t_begin), finished_at=_iso(clock()),
        status=status, benchmark=bench, report_html=report_html, manager_log=text,
        responses=responses, logs=logs, configs=local_configs(lab), versions=versions,
        snapshot=snapshot,
        caliper={"workers": lab.total_workers, "manager_host": lab.manager_host,
                 "worker_vms": [{"host": w.host, "processes": lab.workers[w.host],
                                 "gateway": w.gateway.endpoint, "msp_id": w.gateway.msp_id}
                                for w in lab.plan.workers]},
        timings=timings, notes=tuple(notes),
        ledger_expected=not byof or bool(lab.plan.spec.operations))


def bench(env: str, options: Options, *, build_dir: Path, repo_root: Path, results_root: Path,
          workers_per_vm: int | str | None = None,
          on_progress: Callable[[str], None] = lambda _: None) -> BenchResult:
    """`launch bench ENV`: open the lab, reach it over SSH, run (see run()). The spec's
    `bench.thresholds` apply under options.thresholds' explicit overrides
    (--threshold NAME=VALUE pairs); `workers_per_vm`: a number, "auto" or None (the spec's)."""
    lab, targets = open_lab(env, build_dir=build_dir, repo_root=repo_root,
                            workers_per_vm=workers_per_vm if isinstance(workers_per_vm, int)
                            else None)
    base = Thresholds.from_mapping(lab.plan.spec.bench_thresholds, source=lab.spec_path)
    options = replace(options, thresholds=Thresholds.parse_pairs(options.threshold_pairs,
                                                                 base=base))
    door = SshDoor(targets, lab.env_dir / "logs" / "bench-ssh.log")
    lab = resolve_workers(door, lab, workers_per_vm)
    return run(lab, door, options, results_root=results_root, on_progress=on_progress)

