"""How often the bottleneck verdict is right: a lab with known bottlenecks injected, one per
case, and the verdict of every round against the known answer (issue 24).

One native lab (environments/local.yaml's shape on `provider: nspawn`, under its own name,
bridge and CIDR): Fabric and the monitor on host core 0, the Caliper container on core 1
(one core, cgroup cpuset + quota). First a probe round with nothing capped measures the
lab's capacity C (its goodput at a rate above what either side can do); every case's rate
is a share of C. Then per case: the injection is applied, one `launch bench` runs the
case's rounds (each `--repeats` times, `--duration` s, fixed rate), the injection is undone,
and each round's verdict is compared with the case's expected one(s).

Injections (undone after their case; every one acts on this lab's own containers only):

    caliper-cpu-quota  the Caliper container's cgroup cpu.cfs_quota_us cut to 20 % of a core
    one-worker         one Caliper worker process (--workers-per-vm 1) at 4 x C (C is two
                       processes' and Fabric's joint limit on a loaded machine; one process
                       sends about 200 TPS on a free core)
    peer-cpu-quota     the peer process alone moved into a child cgroup (cpu hierarchy) of
                       its container's, with a quota of 3 % of a core
    orderer-cpu-quota  the same for the orderer process, 1 % of a core (the least CFS
                       allows: at 2 % the orderer still carried C/2)
    gateway-limit      the peer restarted with CORE_PEER_LIMITS_CONCURRENCY_GATEWAYSERVICE=2 (a
                       systemd drop-in under /run in the container), restarted again without
    headroom           nothing, at C / 2
    chaincode-rejects  create rounds whose first ~13 % of ids already exist (a 2 s seed run
                       of the same rounds with the same id prefix first): the chaincode
                       answers "asset ... already exists"
    mvcc               update-asset.js on 2 assets per worker: MVCC_READ_CONFLICT
    peer-stopped       `systemctl stop fabric-peer` in the Fabric container when the round's
                       first push reaches the Pushgateway, started again a third of the
                       round later
    prometheus-stopped the monitor's Prometheus stopped the same way, started again
    disk-throttled     every process of the Fabric container moved into a blkio cgroup with
                       blkio.throttle.write_bps_device on the disk under the lab's overlays

Prints the confusion matrix (case x verdict) and writes everything as JSON (`--out`, default
results/verdict-matrix/<stamp>/matrix.json), with each case's bundle. `--test-data DIR`
also writes each case's bundle trimmed to what re-judging needs (summary.json, Prometheus'
answers, the manager log, the failure lines of the worker logs) with an expected.json, as
tests/data/bench/matrix/ keeps them (tests/unit/bench/test_verdict_matrix.py re-judges them).

Needs root, systemd-nspawn, cgroup v1 (cpu, cpuacct, cpuset, blkio) and the images of
build/manifest.json (`make bake-images`). The lab is taken down at the end, whatever happens.

    sudo .venv/bin/python benchmarks/verdict_matrix.py [--repeats 5] [--duration 15]
        [--cases a,b] [--out FILE] [--test-data DIR] [--keep-lab]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fabkit import runner  # noqa: E402
from launch.bench import run as bench_run  # noqa: E402
from launch.bench.door import SshDoor  # noqa: E402
from launch.bench.lab import open_lab as open_bench_lab  # noqa: E402
from launch.bench.lab import resolve_workers  # noqa: E402
from launch.bench.prometheus import Pushgateway  # noqa: E402
from launch.bench.results import Summary  # noqa: E402
from launch.lifecycle import up  # noqa: E402
from launch.spec import contract  # noqa: E402
from launch.spec.common import Round  # noqa: E402
from launch.spec.thresholds import Thresholds  # noqa: E402

BIN = Path(sys.executable).parent
ENV = "vmatrix"
CIDR = "10.91.0.0/24"          # not one of the nspawn e2e/benchmark labs' (10.77-10.89)
BRIDGE = "fp-vmatrix"
CGROUP = Path("/sys/fs/cgroup")
VERDICTS = ("headroom", "fabric-bound", "load-generator-bound", "failing", "inconclusive")
NOT_RUN = "not run"


# --- the lab ---------------------------------------------------------------------------------

@dataclass
class Lab:
    """The running lab as the injections need it."""

    build_dir: Path
    door: SshDoor
    machines: dict[str, str]           # host -> container/cgroup name
    addresses: dict[str, str]          # host -> address on our bridge

    def pushgateway(self) -> str:
        return f"http://{self.addresses['monitor']}:{contract.PORTS['pushgateway']}"

    def cpu_dir(self, host: str) -> Path:
        return CGROUP / "cpu" / self.machines[host]


def cli(*args: str | Path, log: Path, check: bool = True) -> runner.Completed:
    return runner.run([BIN / "launch", *args], log_path=log, check=check, timeout=3600,
                      what=f"launch {args[0]}")


def write_spec(where: Path, cidr: str = CIDR) -> Path:
    """local.yaml on nspawn under its own name, bridge and CIDR, Fabric and the monitor on
    core 0, Caliper alone on core 1. Its rounds are local.yaml's: each case's rounds are
    made per run (`rounds_of`), with an id prefix of their own."""
    doc = yaml.safe_load((REPO / "environments" / "local.yaml").read_text())
    doc.update({"name": ENV, "provider": "nspawn", "network": {"cidr": cidr},
                "manifest": str(REPO / "build" / "manifest.json")})
    doc["settings"] = {"bridge": BRIDGE,
                       "hosts": {"fabric": {"host_cpus": "0"}, "monitor": {"host_cpus": "0"},
                                 "caliper": {"host_cpus": "1", "cpus": 1}}}
    path = where / f"{ENV}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


_RUNS = iter(range(1, 10_000))


def rounds_of(name: str, workload: str, tps: int, duration: int, repeats: int,
              prefix: str | None = None) -> list[Round]:
    """`repeats` fixed-rate rounds <name>-<k>. Their asset ids carry a prefix of this run
    (fabperf's workloads make ids <prefix>_<round index>_<worker>_<n>): a later run never
    meets an earlier one's ids unless it is given the same `prefix` (the seeded case)."""
    prefix = prefix or f"{name}{next(_RUNS)}{int(time.time()) % 100_000}"
    if workload == "update":
        module, args = "workloads/update-asset.js", {"assets": 2, "idPrefix": prefix}
    else:
        module, args = "workloads/create-asset.js", {"payloadSize": 100, "idPrefix": prefix}
    return [Round(f"{name}-{k}", tps, duration, None, module, args, None)
            for k in range(1, repeats + 1)]


def open_lab(build_dir: Path, tmp: Path) -> Lab:
    state = up.recorded(ENV, build_dir=build_dir)
    targets = {h: up.target(ENV, h, build_dir=build_dir) for h in state.hosts}
    return Lab(build_dir, SshDoor(targets, tmp / "inject-ssh.log"),
               {h: s.resources.get("machine") or s.resources["cgroup"]
                for h, s in state.hosts.items()},
               {h: s.address for h, s in state.hosts.items()})


# --- injections ------------------------------------------------------------------------------

class Injection:
    """A known bottleneck: applied before the case's run (`apply`/`undo`), or during each
    round (`during`: called with the round's index once its first push is seen)."""

    what = ""

    def apply(self, lab: Lab) -> None:
        pass

    def undo(self, lab: Lab) -> None:
        pass

    def during(self, lab: Lab, round_s: float) -> None:
        pass

    mid_round = False


def _procs(directory: Path) -> list[int]:
    out: list[int] = []
    for f in [directory / "cgroup.procs", *directory.rglob("*/cgroup.procs")]:
        try:
            out += [int(x) for x in f.read_text().split()]
        except OSError:
            continue
    return out


def _move(pids: Sequence[int], to: Path) -> None:
    for pid in pids:
        try:
            (to / "cgroup.procs").write_text(str(pid))
        except ProcessLookupError:
            pass
        except OSError as exc:
            if exc.errno != 3:       # ESRCH: it exited meanwhile
                raise


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@dataclass
class ContainerQuota(Injection):
    """The container's CFS quota cut (its cgroup in the cpu hierarchy)."""

    host: str
    cores: float
    old: str = ""

    def __post_init__(self) -> None:
        self.what = f"{self.host} container cpu.cfs_quota_us: {self.cores:.0%} of a core"

    def apply(self, lab: Lab) -> None:
        f = lab.cpu_dir(self.host) / "cpu.cfs_quota_us"
        self.old = f.read_text().strip()
        f.write_text(str(int(self.cores * 100_000)))

    def undo(self, lab: Lab) -> None:
        if self.old:
            (lab.cpu_dir(self.host) / "cpu.cfs_quota_us").write_text(self.old)


@dataclass
class ProcessQuota(Injection):
    """One process of a container (by its command name) moved into a child cgroup of the
    container's in the cpu hierarchy, with its own CFS quota: the container stacks peer,
    orderer and chaincode (local.yaml's shape), so the container's own quota would cut all
    three. The quota is `cores` of a core; below 1 % (CFS's least quota, 1 ms, over the
    default 100 ms period) the period is lengthened instead (up to 1 s)."""

    host: str
    comm: str
    cores: float
    why: str = ""
    moved: dict[int, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.what = (f"{self.comm} process on {self.host}: cfs quota {self.cores:.1%} of a core"
                     + (f" ({self.why})" if self.why else ""))

    def child(self, lab: Lab) -> Path:
        return lab.cpu_dir(self.host) / f"fabperf-matrix-{self.comm}"

    def period_quota(self) -> tuple[int, int]:
        period = 100_000
        if self.cores * period < 1000:
            period = min(1_000_000, int(1000 / self.cores) + 1)
        return period, max(1000, int(self.cores * period))

    def apply(self, lab: Lab) -> None:
        root = lab.cpu_dir(self.host)
        found = {}
        for f in [root / "cgroup.procs", *root.rglob("*/cgroup.procs")]:
            for x in f.read_text().split():
                if _comm(int(x)) == self.comm:
                    found[int(x)] = f.parent
        if not found:
            raise RuntimeError(f"no {self.comm} process in {root}")
        child = self.child(lab)
        child.mkdir(exist_ok=True)
        period, quota = self.period_quota()
        (child / "cpu.cfs_period_us").write_text(str(period))
        (child / "cpu.cfs_quota_us").write_text(str(quota))
        _move(list(found), child)
        self.moved = found

    def undo(self, lab: Lab) -> None:
        child = self.child(lab)
        for pid, back in self.moved.items():
            _move([pid], back if back.is_dir() else lab.cpu_dir(self.host))
        left = _procs(child) if child.is_dir() else []
        _move(left, lab.cpu_dir(self.host))
        if child.is_dir():
            child.rmdir()


@dataclass
class DiskThrottle(Injection):
    """Every process of a container moved into a blkio cgroup that throttles its writes to
    the disk under the lab's overlays (the provider puts its containers in no blkio cgroup:
    they are in the hierarchy's root)."""

    host: str
    bps: int
    why: str = ""
    device: str = ""

    def __post_init__(self) -> None:
        self.what = (f"{self.host} container writes throttled to {self.bps // 1024} KiB/s "
                     "(blkio)" + (f" ({self.why})" if self.why else ""))

    def child(self, lab: Lab) -> Path:
        return CGROUP / "blkio" / f"{lab.machines[self.host]}-fabperf-matrix"

    def apply(self, lab: Lab) -> None:
        self.device = disk_of(lab.build_dir)
        child = self.child(lab)
        child.mkdir(exist_ok=True)
        (child / "blkio.throttle.write_bps_device").write_text(f"{self.device} {self.bps}")
        _move(_procs(CGROUP / "cpuacct" / lab.machines[self.host]), child)

    def written(self, lab: Lab) -> int:
        """Bytes the container's processes wrote to the disk since `apply`, as the throttle
        counts them (the cgroup's blkio.throttle.io_service_bytes)."""
        f = self.child(lab) / "blkio.throttle.io_service_bytes"
        for line in f.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == self.device and parts[1] == "Write":
                return int(parts[2])
        return 0

    def undo(self, lab: Lab) -> None:
        child = self.child(lab)
        if child.is_dir():
            # the rule first: a process exiting under the throttle waits for its writes
            (child / "blkio.throttle.write_bps_device").write_text(f"{self.device} 0")
            _move(_procs(child), CGROUP / "blkio")
            child.rmdir()


def disk_of(path: Path) -> str:
    """MAJ:MIN of the whole disk holding `path` (blkio throttles whole disks)."""
    st = os.stat(path)
    mm = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    sysdir = Path(f"/sys/dev/block/{mm}").resolve()
    if (sysdir / "partition").is_file():
        sysdir = sysdir.parent
    return (sysdir / "dev").read_text().strip()


@dataclass
class PeerGatewayLimit(Injection):
    limit: int

    def __post_init__(self) -> None:
        self.what = f"peer restarted with CORE_PEER_LIMITS_CONCURRENCY_GATEWAYSERVICE={self.limit}"

    DROPIN = "/run/systemd/system/fabric-peer.service.d/fabperf-matrix.conf"
    ENVFILE = "/run/fabperf-matrix-peer.env"

    def apply(self, lab: Lab) -> None:
        # a second EnvironmentFile: read after /etc/fabperf/peer.env (which sets the limit
        # to the spec's gateway_concurrency), so its value wins; Environment= would not
        lab.door.run("fabric", "sudo -n sh -c " + shlex.quote(
            f"mkdir -p {Path(self.DROPIN).parent} && "
            f"echo CORE_PEER_LIMITS_CONCURRENCY_GATEWAYSERVICE={self.limit} > {self.ENVFILE}"
            f" && printf '[Service]\\nEnvironmentFile={self.ENVFILE}\\n' > {self.DROPIN}"
            " && systemctl daemon-reload && systemctl restart fabric-peer"))
        wait_peer(lab)

    def undo(self, lab: Lab) -> None:
        lab.door.run("fabric", "sudo -n sh -c " + shlex.quote(
            f"rm -f {self.DROPIN} {self.ENVFILE} && systemctl daemon-reload && "
            "systemctl restart fabric-peer"))
        wait_peer(lab)


def wait_peer(lab: Lab, timeout: float = 90) -> None:
    """The peer's operations endpoint answers /healthz (on our bridge), then a few seconds
    for its gateway to reconnect to the orderer and the chaincode."""
    url = f"http://{lab.addresses['fabric']}:{contract.PORTS['peer_operations']}/healthz"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                if r.status == 200:
                    time.sleep(3)
                    return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"the peer did not answer {url} within {timeout:.0f} s")


@dataclass
class StopService(Injection):
    """A unit stopped when the round's first push is seen, started again `share` of the
    round later."""

    host: str
    unit: str
    share: float = 1 / 3
    mid_round = True
    log: list[dict[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.what = f"{self.unit} on {self.host} stopped for {self.share:.0%} of each round"

    def during(self, lab: Lab, round_s: float) -> None:
        t0 = time.time()
        lab.door.run(self.host, f"sudo -n systemctl stop {self.unit}")
        t1 = time.time()
        time.sleep(max(0.0, round_s * self.share - (t1 - t0)))
        lab.door.run(self.host, f"sudo -n systemctl start {self.unit}")
        self.log.append({"stop": round(t0, 1), "stopped": round(t1, 1),
                         "start": round(time.time(), 1)})


def pushed_rounds(url: str) -> set[int]:
    """Round indexes the Caliper workers pushed so far."""
    try:
        with urllib.request.urlopen(f"{url}/api/v1/metrics", timeout=3) as r:
            doc = json.loads(r.read())
    except (OSError, ValueError):
        return set()
    out = set()
    for g in doc.get("data", []):
        idx = g.get("labels", {}).get("roundIndex")
        if idx is not None and idx.isdigit():
            out.add(int(idx))
    return out


def mid_round_driver(lab: Lab, during: dict[int, Injection], rounds: int, round_s: float,
                     stop: threading.Event, errors: list[str]) -> None:
    """Calls during[k].during for each round k that has one, when the round's first push
    appears."""
    done: set[int] = set()
    try:
        while not stop.is_set() and len(done) < rounds:
            for k in sorted(pushed_rounds(lab.pushgateway()) - done):
                if k in during:
                    during[k].during(lab, round_s)
                done.add(k)
            stop.wait(0.5)
    except Exception as exc:   # reported with the case, never silent
        errors.append(f"{type(exc).__name__}: {exc}")


# --- what a transaction costs Fabric (measured in the probe) ---------------------------------

@dataclass(frozen=True)
class Usage:
    """CPU seconds of one container's processes, by command name."""

    cpu: dict[str, float]

    @classmethod
    def of(cls, lab: Lab, host: str) -> Usage:
        tick = os.sysconf("SC_CLK_TCK")
        cpu: dict[str, float] = {}
        for pid in set(_procs(CGROUP / "cpuacct" / lab.machines[host])):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            cpu[comm] = cpu.get(comm, 0.0) + (int(fields[11]) + int(fields[12])) / tick
        return cls(cpu)


@dataclass(frozen=True)
class Costs:
    """Per committed transaction of the probe round: each Fabric process's CPU seconds and
    the Fabric container's bytes written to the disk as blkio counts them (its processes
    in an unlimited blkio cgroup for the probe: buffered writes the flusher writes back are
    not theirs, and a throttle does not hold them). The Fabric injections are sized from them: each
    leaves Fabric `SHARE` of what the case's rate needs, so it is truly bound (a backlog of
    about 1 - SHARE of the send rate, far above the 5 % rule) and drains within a round
    length."""

    cpu_s: dict[str, float]
    write_bytes: float

    @classmethod
    def between(cls, before: Usage, after: Usage, written: int, committed: int) -> Costs:
        n = max(1, committed)
        return cls({k: (v - before.cpu.get(k, 0.0)) / n for k, v in after.cpu.items()},
                   written / n)

    def to_json(self) -> dict[str, Any]:
        return {"cpu_ms_per_tx": {k: round(v * 1000, 3) for k, v in self.cpu_s.items()
                                  if v > 0},
                "write_kib_per_tx": round(self.write_bytes / 1024, 2)}


SHARE = 0.5


def cpu_cap(host: str, comm: str) -> Callable[[float, Costs], Injection]:
    def make(tps: float, costs: Costs) -> Injection:
        need = tps * costs.cpu_s.get(comm, 0.0)
        if need <= 0:
            raise RuntimeError(f"the probe measured no CPU for {comm} on {host}")
        return ProcessQuota(host, comm, SHARE * need,
                            f"{SHARE:.0%} of the {need:.1%} of a core {tps:g} TPS needs: "
                            f"{costs.cpu_s[comm] * 1000:.2f} ms per transaction in the probe")
    return make


def disk_cap(host: str) -> Callable[[float, Costs], Injection]:
    def make(tps: float, costs: Costs) -> Injection:
        need = tps * costs.write_bytes
        if need <= 0:
            raise RuntimeError(f"the probe measured no writes on {host}")
        return DiskThrottle(host, max(64 * 1024, int(SHARE * need)),
                            f"{SHARE:.0%} of the {need / 1024:.0f} KiB/s {tps:g} TPS needs: "
                            f"{costs.write_bytes / 1024:.1f} KiB per transaction in the probe")
    return make


# --- the cases -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    expected: tuple[str, ...]
    rate: float                          # share of the measured capacity
    make: Callable[[float, Costs], Injection | None]   # (the case's TPS, the probe's costs)
    workload: str = "create"             # create | update | reject
    workers_per_vm: int | None = None
    names: tuple[str, ...] = ()          # what the verdict's summary must name
    why_not: str = ""                    # set: the case cannot be injected here (not run)


def none(_tps: float, _costs: Costs) -> None:
    return None


# Cases without an injection for the whole run (none, or one during each round) run in one
# `launch bench` together, in this order (the seeded chaincode-rejects first: its rounds'
# indexes are the seed's); the others each in their own.
CASES: tuple[Case, ...] = (
    Case("caliper-cpu-quota", ("load-generator-bound",), 0.5,
         lambda tps, costs: ContainerQuota("caliper", 0.2)),
    Case("one-worker", ("load-generator-bound",), 4.0, none, workers_per_vm=1),
    Case("peer-cpu-quota", ("fabric-bound",), 0.5, cpu_cap("fabric", "peer")),
    Case("orderer-cpu-quota", ("fabric-bound",), 0.5, cpu_cap("fabric", "orderer")),
    Case("disk-throttled", ("fabric-bound",), 0.5, disk_cap("fabric"), names=("disk",)),
    Case("gateway-limit", ("fabric-bound", "failing"), 0.5,
         lambda tps, costs: PeerGatewayLimit(2), names=("concurrency limit",)),
    Case("chaincode-rejects", ("failing",), 0.5, none, workload="reject",
         names=("chaincode response", "already exists")),
    Case("headroom", ("headroom",), 0.5, none),
    Case("mvcc", ("failing",), 0.25, none, workload="update", names=("MVCC",)),
    Case("peer-stopped", ("failing",), 0.25,
         lambda tps, costs: StopService("fabric", "fabric-peer"), names=("fabric/peer",)),
    Case("prometheus-stopped", ("inconclusive",), 0.5,
         lambda tps, costs: StopService("monitor", "prometheus")),
)


def bench(lab: Lab, rounds: Sequence[Round], results: Path,
          workers_per_vm: int | None = None) -> tuple[Path, Summary]:
    """`launch bench` (launch.bench.run, as its `bench()` opens the lab) with these rounds
    instead of the spec's: the lab's plan is data, and its rounds are what the benchmark
    config is rendered from."""
    blab, targets = open_bench_lab(ENV, build_dir=lab.build_dir, repo_root=REPO,
                                   workers_per_vm=workers_per_vm)
    spec = blab.plan.spec
    spec = replace(spec, caliper=replace(spec.caliper, rounds=tuple(rounds)))
    blab = replace(blab, plan=replace(blab.plan, spec=spec))
    door = SshDoor(targets, blab.env_dir / "logs" / "bench-ssh.log")
    blab = resolve_workers(door, blab, workers_per_vm)
    res = bench_run.run(blab, door, bench_run.Options(thresholds=Thresholds()),
                        results_root=results,
                        on_progress=lambda line: print(f"    {line}", flush=True))
    return res.bundle, res.summary


def tps_of(case: Case, capacity: float) -> int:
    return max(1, int(round(case.rate * capacity)))


def batches(cases: Sequence[Case], capacity: float, costs: Costs
            ) -> list[list[tuple[Case, Injection | None]]]:
    """The cases as `launch bench` runs them: a case with an injection for the whole run (or
    with its own workers) alone, consecutive others together."""
    out: list[list[tuple[Case, Injection | None]]] = []
    shared = False          # the last batch takes more cases
    for case in cases:
        inj = None if case.why_not else case.make(tps_of(case, capacity), costs)
        alone = (inj is not None and not inj.mid_round) or case.workers_per_vm is not None
        if shared and not alone:
            out[-1].append((case, inj))
        else:
            out.append([(case, inj)])
        shared = not alone
    return out


def run_cases(lab: Lab, batch: Sequence[tuple[Case, Injection | None]], capacity: float,
              repeats: int, duration: int, results: Path) -> list[dict[str, Any]]:
    """One `launch bench` with every round of these cases; each case's result."""
    outs: list[dict[str, Any]] = []
    rounds: list[Round] = []
    during: dict[int, Injection] = {}
    static = [inj for _, inj in batch if inj is not None and not inj.mid_round]
    t0 = time.monotonic()
    for case, inj in batch:
        tps = tps_of(case, capacity)
        out: dict[str, Any] = {"case": case.name, "expected": list(case.expected), "tps": tps,
                               "names": list(case.names), "rounds": [],
                               "injection": inj.what if inj else "none"}
        outs.append(out)
        if case.why_not:
            out.update(status=NOT_RUN, why=case.why_not)
            continue
        prefix = None
        if case.workload == "reject":
            if rounds:
                raise RuntimeError(f"{case.name} must come first in its batch (its seed's "
                                   "round indexes are its own)")
            # the seed: the same rounds for 2 s with the same id prefix, so the first ~2/D
            # of each worker's ids already exist when the case's own rounds run (same round
            # indexes): the chaincode rejects them ("asset ... already exists")
            seed = rounds_of(f"{case.name}-seed", "create", tps, 2, repeats)
            prefix = str(seed[0].workload_arguments["idPrefix"])
            bench(lab, seed, results)
        own = rounds_of(case.name, case.workload, tps, duration, repeats, prefix)
        if inj is not None and inj.mid_round:
            during.update({len(rounds) + k: inj for k in range(len(own))})
        rounds += own
    stop, errors = threading.Event(), list[str]()
    driver = None
    try:
        for inj in static:
            inj.apply(lab)
        if during:
            # the previous run's groups would read as this run's rounds
            Pushgateway(lab.pushgateway()).wipe()
            driver = threading.Thread(target=mid_round_driver, args=(
                lab, during, len(rounds), duration, stop, errors), daemon=True)
            driver.start()
        bundle, summary = bench(lab, rounds, results, batch[0][0].workers_per_vm)
    finally:
        stop.set()
        if driver is not None:
            driver.join(timeout=60)
        for inj in static:
            inj.undo(lab)
    seconds = round(time.monotonic() - t0, 1)
    by_case = {o["case"]: o for o in outs}
    for (case, inj), out in zip(batch, outs, strict=True):
        if case.why_not:
            continue
        out.update(bundle=str(bundle), seconds=seconds, batch=[c.name for c, _ in batch])
        if errors:
            out["injection_errors"] = errors
        if isinstance(inj, StopService):
            out["injected_at"] = inj.log
    for r in summary.rounds:
        out = by_case[r.label.rsplit("-", 1)[0]]
        v = r.verdict.get("verdict", "?")
        summ = r.verdict.get("summary", "")
        out["rounds"].append({
            "label": r.label, "verdict": v, "hit": v in out["expected"],
            "named": all(n.lower() in summ.lower() for n in out["names"]),
            "summary": summ, "goodput_tps": r.goodput_tps, "send_rate_tps": r.send_rate_tps,
            "succeeded": r.succeeded, "failed": r.failed,
            "seconds": (r.window or {}).get("seconds"),
            "evidence": [c["rule"] for c in r.verdict.get("evidence", [])]})
    return outs


def confusion(cases: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """case -> verdict -> rounds (NOT_RUN: the case could not be injected)."""
    out: dict[str, dict[str, int]] = {}
    for c in cases:
        row = dict.fromkeys((*VERDICTS, NOT_RUN), 0)
        if c.get("status") == NOT_RUN:
            row[NOT_RUN] = 1
        for r in c["rounds"]:
            row[r["verdict"]] = row.get(r["verdict"], 0) + 1
        out[c["case"]] = row
    return out


def print_matrix(doc: dict[str, Any]) -> None:
    short = {"headroom": "headroom", "fabric-bound": "fabric", "load-generator-bound": "loadgen",
             "failing": "failing", "inconclusive": "inconcl", NOT_RUN: "not run"}
    head = f"{'case':<20} {'expected':<28} {'tps':>5} " + " ".join(
        f"{short[v]:>8}" for v in short) + "  hit  named"
    print(head)
    print("-" * len(head))
    for c in doc["cases"]:
        row = doc["confusion"][c["case"]]
        hits = sum(r["hit"] for r in c["rounds"])
        named = sum(r["named"] for r in c["rounds"])
        print(f"{c['case']:<20} {'|'.join(c['expected']):<28} {c['tps']:>5} " + " ".join(
            f"{row.get(v, 0):>8}" for v in short) +
            f"  {hits}/{len(c['rounds'])}  {named}/{len(c['rounds'])}")
    t = doc["totals"]
    print(f"\nrounds {t['rounds']}, expected verdict {t['hits']} ({t['accuracy']:.1%}); "
          f"truly bound rounds called headroom: {t['bound_called_headroom']}; "
          f"evidence named what was injected: {t['named']}/{t['rounds']}; "
          f"capacity C {doc['capacity_tps']:.1f} TPS; {doc['seconds']:.0f} s")


# --- the reference run ----------------------------------------------------------------------

def check_value(r: Any, rule: str) -> tuple[float | None, str]:
    for c in r.verdict.get("checks", []):
        if c["rule"] == rule:
            return c.get("value"), c.get("where", "")
    return None, ""


def reference(lab: Lab, rates: Sequence[int], duration: int, results: Path
              ) -> dict[str, Any]:
    """A `launch size`-style ramp in one run: create rounds (local.yaml's create workload)
    at rising fixed rates; the figure is the highest goodput the verdict calls
    `fabric-bound` with the ledger check passing (else, said so, the best `headroom`)."""
    prefix = f"ref{int(time.time()) % 100_000}"
    rounds = [Round(f"ref-{r}", r, duration, None, "workloads/create-asset.js",
                    {"payloadSize": 100, "idPrefix": prefix}, None) for r in rates]
    bundle, summary = bench(lab, rounds, results)
    steps = []
    for r in summary.rounds:
        fabric, fwhere = check_value(r, "fabric-vm-cpu")
        worker, _ = check_value(r, "worker-vm-cpu")
        proc, pwhere = check_value(r, "worker-process-cpu")
        steps.append({"label": r.label, "requested_tps": r.requested_tps,
                      "send_rate_tps": r.send_rate_tps, "goodput_tps": r.goodput_tps,
                      "ledger_goodput_tps": r.ledger_goodput_tps, "failed": r.failed,
                      "succeeded": r.succeeded, "latency_avg_s": r.latency.avg,
                      "ledger": results_ledger(r.ledger), "ledger_flagged": bool(
                          r.ledger.get("flagged")), "verdict": r.verdict.get("verdict"),
                      "summary": r.verdict.get("summary"),
                      "fabric_container_cpu": fabric, "caliper_container_cpu": worker,
                      "busiest_worker_process_cpu": proc})
    ok = [s for s in steps if s["verdict"] == "fabric-bound" and not s["ledger_flagged"]]
    best = max(ok, key=lambda s: s["goodput_tps"] or 0) if ok else None
    return {"bundle": str(bundle), "steps": steps, "figure": best,
            "cpu_split": "Fabric (peer + orderer + chaincode) and the monitor pinned to host "
                         "core 0, the Caliper container (2 worker processes + the manager) "
                         "pinned to host core 1 and limited to one core"}


def results_ledger(ledger: Any) -> str:
    from launch.bench.results import ledger_text
    return ledger_text(ledger)


def print_reference(ref: dict[str, Any]) -> None:
    print(f"{'req':>5} {'sent':>7} {'goodput':>8} {'fail':>5} {'avg s':>6} {'ledger':>12} "
          f"{'fabric':>7} {'caliper':>7} {'proc':>5}  verdict")
    for s in ref["steps"]:
        def pct(v: float | None) -> str:
            return "-" if v is None else f"{v:.0%}"
        print(f"{s['requested_tps'] or 0:>5.0f} {s['send_rate_tps'] or 0:>7.1f} "
              f"{s['goodput_tps'] or 0:>8.1f} {s['failed']:>5} {s['latency_avg_s'] or 0:>6.2f} "
              f"{s['ledger']:>12} {pct(s['fabric_container_cpu']):>7} "
              f"{pct(s['caliper_container_cpu']):>7} {pct(s['busiest_worker_process_cpu']):>5}"
              f"  {s['summary']}")
    best = ref["figure"]
    print("reference figure: " + (f"{best['goodput_tps']:.1f} TPS goodput at "
                                  f"{best['requested_tps']:.0f} requested ({best['summary']})"
                                  if best else "no step was fabric-bound with the ledger "
                                  "check passing"))


# --- test data -------------------------------------------------------------------------------

def _failure_entries(text: str) -> list[tuple[float | None, list[str]]]:
    """A worker journal's failed transactions: each "Failed to perform" line with the
    "Details:" lines the gateway's error carries after it, and the entry's time."""
    entries: list[tuple[float | None, list[str]]] = []
    for line in text.splitlines():
        if "Failed to perform" in line:
            try:
                at: float | None = _dt.datetime.fromisoformat(
                    line.split(" ", 1)[0].replace("+0000", "+00:00")).timestamp()
            except ValueError:
                at = None
            entries.append((at, [line]))
        elif entries and ("Details:" in line or ": -  " in line):
            entries[-1][1].append(line)
    return entries


def trim_bundle(src: Path, dst: Path, case: dict[str, Any], per_round: int = 15) -> None:
    """What collect.rejudge reads, small: summary.json, prometheus/round-*.json (compact),
    logs/manager.log and, of each worker log, the first `per_round` failed transactions of
    each round (with their Details lines): the verdicts do not depend on the logs, the
    failure reasons named do."""
    if dst.exists():
        shutil.rmtree(dst)
    (dst / "prometheus").mkdir(parents=True)
    # a bundle of several cases (one `launch bench`): this case's rounds only
    labels = {r["label"] for r in case["rounds"]}
    doc = json.loads((src / "summary.json").read_text())
    doc["rounds"] = [r for r in doc["rounds"] if r["label"] in labels]
    (dst / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")
    windows = [(r["window"]["start"], r["window"]["end"]) for r in doc["rounds"]
               if r.get("window")]
    for r in doc["rounds"]:
        p = src / "prometheus" / f"round-{r['index']}.json"
        if p.is_file():
            (dst / "prometheus" / p.name).write_text(
                json.dumps(json.loads(p.read_text()), separators=(",", ":")) + "\n")
    logs = src / "logs"
    if (logs / "manager.log").is_file():
        (dst / "logs").mkdir(exist_ok=True)
        # the lines of this case's rounds (each journal line starts with its epoch time)
        first = min((w[0] for w in windows), default=0.0) - 15
        last = max((w[1] for w in windows), default=float("inf")) + 15
        kept = []
        for line in (logs / "manager.log").read_text(errors="replace").splitlines():
            try:
                at = float(line.split(" ", 1)[0])
            except ValueError:
                at = None
            if at is None or first <= at <= last:
                kept.append(line)
        (dst / "logs" / "manager.log").write_text("".join(ln + "\n" for ln in kept))
    for p in sorted(logs.rglob("caliper-worker@*.log")):
        kept: list[str] = []
        taken = [0] * len(windows)
        for at, lines in _failure_entries(p.read_text(errors="replace")):
            for i, (start, end) in enumerate(windows):
                if at is not None and start - 2 <= at <= end + 2 and taken[i] < per_round:
                    taken[i] += 1
                    kept += lines
                    break
        out = dst / "logs" / p.relative_to(logs)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(ln + "\n" for ln in kept))
    verdicts = {r["label"]: r["verdict"] for r in case["rounds"]}
    (dst / "expected.json").write_text(json.dumps({
        "case": case["case"], "injection": case.get("injection"),
        "expected": case["expected"], "names": case["names"], "tps": case["tps"],
        "recorded": verdicts}, indent=2) + "\n")


def write_test_data(doc: dict[str, Any], where: Path) -> None:
    """Each case's bundle (and the reference run's) trimmed into `where`."""
    for c in doc["cases"]:
        if c.get("bundle"):
            trim_bundle(Path(c["bundle"]), where / c["case"], c)
    if "reference" in doc:
        ref = doc["reference"]
        dst = where.parent / "reference-nspawn"
        trim_bundle(Path(ref["bundle"]), dst, {
            "case": "reference", "injection": "none", "expected": [], "names": [],
            "tps": None, "rounds": ref["steps"]})
        verdicts = {s["label"]: s["verdict"] for s in ref["steps"]}
        # the form tests/unit/bench/test_bench_judgement.py judges recorded bundles in
        (dst / "expected.json").write_text(json.dumps({
            "verdicts": verdicts, "recorded": verdicts,
            "why": "the reference ramp of issue 24 (local.yaml's shape on nspawn, Fabric and "
                   "the monitor on core 0, Caliper on core 1), recorded by this fabperf: "
                   "judged again it gets the same verdicts"}, indent=2) + "\n")


# --- main ------------------------------------------------------------------------------------

def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    # Ctrl-C or a TERM (a background job's SIGINT is ignored): the injection is undone and
    # the lab taken down on the way out
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--duration", type=int, default=15, help="seconds per round")
    ap.add_argument("--cases", default="", help="comma-separated case names (default all)")
    ap.add_argument("--capacity", type=float, default=None,
                    help="the lab's capacity C in TPS instead of the probe's goodput (the "
                    "probe still runs: it measures what a transaction costs Fabric)")
    ap.add_argument("--probe-tps", type=int, default=600)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--test-data", type=Path, default=None)
    ap.add_argument("--keep-lab", action="store_true", help="leave the lab up at the end")
    ap.add_argument("--reuse-lab", action="store_true", help="use the lab already up")
    ap.add_argument("--cidr", default=CIDR, help="the lab's network (its bridge's); one no "
                    "interface of this machine is on")
    ap.add_argument("--reference", default="", metavar="R,R,...",
                    help="after the cases: the reference ramp at these rates (TPS)")
    ap.add_argument("--reference-duration", type=int, default=20)
    ap.add_argument("--test-data-from", type=Path, default=None, metavar="MATRIX_JSON",
                    help="only write --test-data from a recorded matrix.json (nothing runs)")
    args = ap.parse_args()
    if args.test_data_from:
        if not args.test_data:
            ap.error("--test-data-from needs --test-data DIR")
        write_test_data(json.loads(args.test_data_from.read_text()), args.test_data)
        print(f"test data: {args.test_data}")
        return 0
    chosen = [c for c in CASES if not args.cases or c.name in args.cases.split(",")]
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or REPO / "results" / "verdict-matrix" / stamp / "matrix.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    build_dir = REPO / "build"
    results = out.parent / "bundles"
    t_start = time.monotonic()
    doc: dict[str, Any] = {"stamp": stamp, "repeats": args.repeats, "duration_s": args.duration,
                           "cidr": args.cidr, "cases": []}
    with tempfile.TemporaryDirectory(prefix="fabperf-matrix-") as t:
        tmp = Path(t)
        try:
            if not args.reuse_lab:
                spec = write_spec(REPO / "build", args.cidr)
                t0 = time.monotonic()
                cli("up", spec, "--build-dir", build_dir, log=out.parent / "up.log")
                doc["up_s"] = round(time.monotonic() - t0, 1)
                print(f"lab up in {doc['up_s']} s", flush=True)
            lab = open_lab(build_dir, tmp)
            # the probe: the lab's capacity, and what a transaction costs Fabric
            before = Usage.of(lab, "fabric")
            meter = DiskThrottle("fabric", 0)
            try:
                meter.apply(lab)
                _, s = bench(lab, rounds_of("probe", "create", args.probe_tps, args.duration,
                                            1), results)
                written = meter.written(lab)
            finally:
                meter.undo(lab)
            probe = s.rounds[0]
            costs = Costs.between(before, Usage.of(lab, "fabric"), written, probe.succeeded)
            capacity = args.capacity or float(probe.goodput_tps or 0)
            doc["probe"] = {"tps": args.probe_tps, "goodput_tps": probe.goodput_tps,
                            "verdict": probe.verdict.get("summary"), "costs": costs.to_json()}
            print(f"capacity probe at {args.probe_tps} TPS: goodput {probe.goodput_tps:.1f} "
                  f"TPS; {probe.verdict.get('summary')}; per transaction: "
                  f"{json.dumps(costs.to_json())}", flush=True)
            doc["capacity_tps"] = capacity
            for batch in batches(chosen, capacity, costs):
                print("== " + ", ".join(f"{c.name} ({inj.what if inj else 'nothing injected'})"
                                        for c, inj in batch), flush=True)
                for c in run_cases(lab, batch, capacity, args.repeats, args.duration, results):
                    doc["cases"].append(c)
                    print(f"   {c['case']}: " + ", ".join(r["verdict"] for r in c["rounds"]),
                          flush=True)
                out.write_text(json.dumps(doc, indent=2) + "\n")
            if args.reference:
                print("== reference ramp", flush=True)
                doc["reference"] = reference(lab, [int(x) for x in args.reference.split(",")],
                                             args.reference_duration, results)
                out.write_text(json.dumps(doc, indent=2) + "\n")
        finally:
            if not args.keep_lab:
                cli("down", ENV, "--build-dir", build_dir, log=out.parent / "down.log",
                    check=False)
    rounds = [r for c in doc["cases"] for r in c["rounds"]]
    bound = {"fabric-bound", "load-generator-bound"}
    doc["confusion"] = confusion(doc["cases"])
    doc["totals"] = {
        "rounds": len(rounds), "hits": sum(r["hit"] for r in rounds),
        "accuracy": sum(r["hit"] for r in rounds) / len(rounds) if rounds else 0.0,
        "named": sum(r["named"] for r in rounds),
        "bound_called_headroom": sum(
            1 for c in doc["cases"] if set(c["expected"]) & bound
            for r in c["rounds"] if r["verdict"] == "headroom"),
        "not_run": [c["case"] for c in doc["cases"] if c.get("status") == NOT_RUN]}
    doc["seconds"] = round(time.monotonic() - t_start, 1)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    if doc["cases"]:
        print_matrix(doc)
    if "reference" in doc:
        print_reference(doc["reference"])
    print(f"\nwritten: {out}")
    if args.test_data:
        write_test_data(doc, args.test_data)
        print(f"test data: {args.test_data}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
