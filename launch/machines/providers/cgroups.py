"""cgroup v1 limits and accounting of one container (the nspawn provider's hosts).

With `systemd-nspawn --keep-unit` and no systemd on the host, nspawn makes no cgroup of its
own: the container's processes stay in the cgroups of whoever started it. So each container
gets a cgroup named after it in every hierarchy, made *before* it starts (Limits below:
the spec's vCPUs as a CFS quota, `host_cpus` as its cpuset, its memory as a hard limit); the
starting shell writes its own pid into each `cgroup.procs` and then execs nspawn, so every
process of the container is accounted there from the first instruction.

Its own hierarchy for `name=systemd` (and the cgroup2 `unified` mount when the host has
one) keeps the systemd inside each container from sharing a cgroup subtree with the others.

Inside a container `/proc/stat` is the host's (node_exporter there reports host-wide CPU), so
a host's CPU comes from here: `cpuacct.usage` against `cpus` (the quota or the cpuset,
whichever is smaller). `sample` reads it; launch.machines.providers.cgroup_sampler publishes it.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fabkit.errors import ExternalError

log = logging.getLogger("fabperf.cgroups")

ROOT = Path("/sys/fs/cgroup")
CPU_SHARES = 1024                # cpu.shares of one nice-0 task
CFS_PERIOD_US = 100_000          # the kernel's default period; quota = cpus x period
# Hierarchies a container's processes join: the limits (cpu, cpuset, memory), the
# accounting (cpuacct), the kill list (pids), and the ones systemd inside uses for itself.
HIERARCHIES = ("cpu", "cpuacct", "cpuset", "memory", "pids", "systemd", "unified")
REQUIRED = ("cpu", "cpuacct", "cpuset", "memory")


@dataclass(frozen=True)
class Limits:
    """What the spec's size of a host becomes on its cgroup."""

    cpus: int                         # vCPUs: CFS quota of cpus x period
    memory_mb: int                    # memory.limit_in_bytes
    cores: tuple[int, ...] = ()       # host_cpus: cpuset.cpus (empty: the parent's)

    def quota_us(self) -> int:
        """cpu.cfs_quota_us for ``cpus`` cores at the default period."""
        return self.cpus * CFS_PERIOD_US

    def memory_bytes(self) -> int:
        return self.memory_mb * 1024 * 1024

    def effective_cpus(self, available: Iterable[int]) -> float:
        """Cores the container may use: its quota or its cpuset, whichever is fewer."""
        cores = self.cores or tuple(available)
        return float(min(self.cpus, len(cores)))

    def files(self, parent_cpus: str, parent_mems: str) -> list[tuple[str, str, str]]:
        """(hierarchy, file, value) to write, in order: cpuset.mems and cpuset.cpus come
        first (a process cannot join a cpuset whose cpus or mems are empty)."""
        cpus = ",".join(map(str, self.cores)) if self.cores else parent_cpus
        return [
            ("cpuset", "cpuset.mems", parent_mems),
            ("cpuset", "cpuset.cpus", cpus),
            # a container competes for the machine like `cpus` busy threads, not like one
            # (v1 weighs a whole cgroup as one task of the root cgroup: 1024 shares)
            ("cpu", "cpu.shares", str(CPU_SHARES * self.cpus)),
            ("cpu", "cpu.cfs_period_us", str(CFS_PERIOD_US)),
            ("cpu", "cpu.cfs_quota_us", str(self.quota_us())),
            ("memory", "memory.limit_in_bytes", str(self.memory_bytes())),
        ]


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """A kernel cpu list ("0-1,3") as core numbers ("" is no core)."""
    cores: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cores.update(range(int(lo), int(hi or lo) + 1))
    return tuple(sorted(cores))


@dataclass(frozen=True)
class Sample:
    """One reading of a container's cgroup."""

    cpu_seconds: float            # cpuacct.usage / 1e9
    cpus: float                   # cores it may use
    throttled_seconds: float      # cpu.stat throttled_time / 1e9
    memory_bytes: int             # memory.usage_in_bytes
    memory_limit_bytes: int       # memory.limit_in_bytes


def textfile(sample: Sample) -> str:
    """The node_exporter textfile of one sample (no labels: node_exporter's target labels,
    host and role from the monitor's file_sd, are added at scrape)."""
    rows = [
        ("fabperf_cgroup_cpu_seconds_total", "counter",
         "CPU seconds this container's cgroup used (cpuacct.usage)", sample.cpu_seconds),
        ("fabperf_cgroup_cpus", "gauge",
         "cores this container may use (its CFS quota or cpuset, whichever is fewer)",
         sample.cpus),
        ("fabperf_cgroup_cpu_throttled_seconds_total", "counter",
         "time this container's cgroup was throttled by its CFS quota",
         sample.throttled_seconds),
        ("fabperf_cgroup_memory_usage_bytes", "gauge",
         "memory this container's cgroup uses (memory.usage_in_bytes)", sample.memory_bytes),
        ("fabperf_cgroup_memory_limit_bytes", "gauge",
         "memory limit of this container's cgroup", sample.memory_limit_bytes),
    ]
    out = []
    for name, kind, help_, value in rows:
        out += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {value:g}"
                if isinstance(value, float) else f"{name} {value}"]
    return "\n".join(out) + "\n"


class Cgroup:
    """One container's cgroup in every hierarchy under ``root``."""

    def __init__(self, name: str, root: Path = ROOT) -> None:
        self.name = name
        self.root = root

    def dirs(self) -> list[Path]:
        """This cgroup's directory in each mounted hierarchy of HIERARCHIES."""
        return [self.root / h / self.name for h in HIERARCHIES if (self.root / h).is_dir()]

    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs()]

    def exists(self) -> bool:
        return any(d.is_dir() for d in self.dirs())

    def create(self, limits: Limits) -> None:
        """Make the cgroup and write its limits (before anything joins it)."""
        missing = [h for h in REQUIRED if not (self.root / h).is_dir()]
        if missing:
            raise ExternalError(
                f"cgroup v1 hierarchies {missing} are not mounted under {self.root}",
                hint="the nspawn provider sets each container's CPU and memory on cgroup v1 "
                     "(cpu, cpuacct, cpuset, memory); use provider qemu on this machine")
        for d in self.dirs():
            d.mkdir(exist_ok=True)
        parent = self.root / "cpuset"
        for hierarchy, name, value in limits.files(
                (parent / "cpuset.cpus").read_text().strip(),
                (parent / "cpuset.mems").read_text().strip()):
            (self.root / hierarchy / self.name / name).write_text(value)

    def pids(self) -> set[int]:
        """Every process in the cgroup (any hierarchy; a half-joined one too)."""
        found: set[int] = set()
        for f in self.procs_files():
            try:
                found.update(int(x) for x in f.read_text().split())
            except OSError:
                continue
        return found

    def sample(self, available: Sequence[int]) -> Sample:
        """CPU and memory of the cgroup now."""
        cpu = self.root / "cpu" / self.name
        acct = self.root / "cpuacct" / self.name
        mem = self.root / "memory" / self.name
        quota = int((cpu / "cpu.cfs_quota_us").read_text())
        period = int((cpu / "cpu.cfs_period_us").read_text()) or CFS_PERIOD_US
        cores = parse_cpu_list((self.root / "cpuset" / self.name / "cpuset.cpus").read_text())
        n = float(len(cores or available))
        if quota > 0:
            n = min(n, quota / period)
        stat = dict(line.split() for line in (cpu / "cpu.stat").read_text().splitlines()
                    if line.strip())
        return Sample(
            cpu_seconds=int((acct / "cpuacct.usage").read_text()) / 1e9,
            cpus=n,
            throttled_seconds=int(stat.get("throttled_time", "0")) / 1e9,
            memory_bytes=int((mem / "memory.usage_in_bytes").read_text()),
            memory_limit_bytes=int((mem / "memory.limit_in_bytes").read_text()))

    def kill(self, sleep: Callable[[float], None] = time.sleep, wait: float = 5.0) -> set[int]:
        """SIGKILL whatever is still in the cgroup (after the container's own shutdown);
        returns the pids that would not go."""
        deadline = time.monotonic() + wait
        left = self.pids()
        while left and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            sleep(0.2)
            left = self.pids()
        return left

    def remove(self) -> list[str]:
        """rmdir the cgroup in every hierarchy (children first: systemd inside makes its
        own); errors for what could not go (a cgroup still holding processes)."""
        errors: list[str] = []
        for d in self.dirs():
            if not d.is_dir():
                continue
            for sub in sorted((p for p in d.rglob("*") if p.is_dir()),
                              key=lambda p: len(p.parts), reverse=True):
                _rmdir(sub, errors)
            _rmdir(d, errors)
        return errors


def _rmdir(path: Path, errors: list[str]) -> None:
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            errors.append(f"cgroup {path}: {exc.strerror}")
