"""The nspawn provider: an environment's hosts as systemd-nspawn containers, at native speed.

The same images as qemu (their qemu artifacts in build/manifest.json) boot as containers
sharing this machine's kernel, so a lab on a laptop or a CI runner without KVM measures
Fabric, not an emulator. Per environment (files under build/environments/<env>/):

- the image: its qcow2 unpacked once into a read-only tree (launch.machines.providers.rootfs, cached
  per artifact under /var/cache/fabperf/nspawn, removed by `launch gc`); per host an
  overlayfs (lower: the tree; upper and work: hosts/<host>/) mounted at hosts/<host>/root;
- cloud-init: the host's unchanged user-data, meta-data and a network-config (v2, `host0`
  at the planned address) in the overlay's NoCloud seed directory
  /var/lib/cloud/seed/nocloud/, so the image's cloud-init configures it as on qemu;
- network: one Linux bridge per environment (launch.machines.providers.bridge) with the spec's CIDR,
  the operator's machine at its first address; each container joins it with
  `--network-bridge` (veth; the container's side is `host0`). The operator's machine dials
  the containers' addresses on this bridge and nothing else. No NAT: the containers
  reach each other and the bridge, not the outside;
- resources: a cgroup per container in every v1 hierarchy (launch.machines.providers.cgroups), made
  before it starts: vCPUs -> CFS quota, host_cpus -> cpuset (as qemu pins its process),
  memory -> memory limit;
- per-host CPU for the verdict: inside a container /proc/stat is the host's, so a sampler
  process per environment (launch.machines.providers.cgroup_sampler, recorded in the state, tagged)
  writes each container's cgroup CPU into a directory bind-mounted over node_exporter's
  textfile directory: the monitor scrapes `fabperf_cgroup_cpu_seconds_total` and
  `fabperf_cgroup_cpus` with the host's own `host`/`role` labels.

Everything is tagged `fp-<env id>` (the machine name fp-<id>-<host>, its cgroups, the
sampler's argv, the default bridge name), recorded in state.json the moment it exists, and
removed by `down` (and by a failed or interrupted `up`): no process, mount, loop device, veth,
bridge or cgroup stays. Needs root, systemd-nspawn (Debian: systemd-container) and cgroup v1
with the cpu, cpuacct, cpuset and memory controllers (`--register=no --keep-unit`: PID 1 need
not be systemd).

Settings of an nspawn environment file (all optional; SETTINGS below)::

    settings:
      bridge: fp-lab       # the bridge's name (default fp-<env id>); must not exist yet
      memory_mb: 2048      # every container's memory limit (default per role, as qemu)
      cpus: 2              # every container's CPU quota in cores
      hosts:               # per-host overrides; host_cpus pins to cores of this machine
        fabric: {host_cpus: "0"}
        caliper: {host_cpus: "1", cpus: 1}
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import yaml

from fabkit import inputs, runner
from fabkit.atomic import write_atomic
from fabkit.errors import ExternalError, InputError
from launch.machines import ssh
from launch.machines.providers import bridge, cgroup_sampler, cgroups, rootfs
from launch.machines.providers.base import (
    DestroyReport,
    Garbage,
    HostRequest,
    Leaked,
    ProviderContext,
    env_id,
    parallel,
    plan_hosts,
    wait_recorded,
)
from launch.machines.providers.cgroups import Cgroup, Limits
from launch.machines.providers.qemu import (
    _CPUS_RULE,
    _MEMORY_RULE,
    DEFAULT_CPUS,
    DEFAULT_MEMORY_MB,
    DEFAULT_SUBNET,
    host_cores,
    image_path,
    local_probe,
    meta_data,
    pid_argv,
    public_keys,
    reserve_static,
    scan_processes,
    signal_until_gone,
)
from launch.machines.ready import HostReadiness, Probe, Timeouts
from launch.machines.state import EnvState, HostState, Phase
from launch.render.plan import Plan

log = logging.getLogger("fabperf.nspawn")

TAG_PREFIX = "fp-"
NSPAWN = "systemd-nspawn"
SEED_DIR = "var/lib/cloud/seed/nocloud"
# node_exporter's textfile collector directory in Debian's package (its default
# --collector.textfile.directory); the cgroup sampler's files appear there
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
# Units that cannot work in a container and would show as failed (`launch validate` checks
# that no unit failed): remounting / needs the host's mount namespace. Masked in the
# overlay, so the image stays as baked.
CONTAINER_MASKED = ("systemd-remount-fs.service",)
MACHINE_NAME_MAX = 64             # a machine name is a host name
# where the `launch` package lives: the sampler runs it with this interpreter
PACKAGE_ROOT = Path(__file__).resolve().parents[3]
STOP_WAIT = 20.0                  # seconds for the container's own shutdown (SIGTERM)

SETTINGS: tuple[inputs.Rule, ...] = (
    inputs.Rule("bridge", (str, type(None)), None, pattern=bridge.NAME_RE.pattern,
                doc="the environment's bridge (default fp-<env id>); a name not in use"),
    replace(_MEMORY_RULE, doc="memory limit of every container (default per role)"),
    replace(_CPUS_RULE, kind=int, default=DEFAULT_CPUS,
            doc="CPU quota of every container, in cores"),
    inputs.Rule("hosts", dict, {},
                doc="per-host overrides {HOST: {memory_mb, cpus, host_cpus}}"),
)
HOST_SETTINGS: tuple[inputs.Rule, ...] = (
    _MEMORY_RULE,
    _CPUS_RULE,
    inputs.Rule("host_cpus", (str, int, type(None)), None,
                doc="the host cores the container runs on (its cpuset), such as 1 or 0-1,3"),
)


# --- pure parts: names, seed, command line --------------------------------------------

def tag_of(eid: str) -> str:
    """fp-<env id>: every resource of the environment carries it."""
    return f"{TAG_PREFIX}{eid}"


def machine_name(tag: str, host: str) -> str:
    """The container's machine name (and its cgroup's name): fp-<env id>-<host>."""
    return f"{tag}-{host}"


def network_config(address: str, prefix: int) -> dict[str, object]:
    """NoCloud network-config v2: the container's side of the veth, `host0`, at its planned
    address. No gateway: the bridge is the whole network."""
    return {"version": 2,
            "ethernets": {"host0": {"match": {"name": "host0"},
                                    "addresses": [f"{address}/{prefix}"]}}}


def nspawn_argv(*, machine: str, host: str, root: Path, bridge_name: str,
                textfile_dir: Path, procs_files: Sequence[Path]) -> list[str]:
    """The command that starts one container: a shell that joins the container's cgroups
    (its own pid into each cgroup.procs, so everything it starts is accounted and limited
    there) and execs systemd-nspawn booting the overlay."""
    join = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 1; shift; done; shift; exec "$@"'
    return [
        "sh", "-c", join, "fabperf-cgroup-join", *map(str, procs_files), "--",
        NSPAWN,
        # PID 1 of these machines is not systemd: no machined to register with, no scope
        # unit to make (the cgroups above are ours)
        "--register=no", "--keep-unit",
        f"--machine={machine}", f"--hostname={host}", f"--directory={root}", "--boot",
        f"--network-bridge={bridge_name}",
        "--console=read-only",           # the boot messages go to the console log
        "--link-journal=no", "--resolv-conf=off", "--timezone=off",
        f"--bind={textfile_dir}:{TEXTFILE_DIR}",
    ]


def mask_units(root: Path, units: Sequence[str]) -> None:
    """Mask systemd units in a root tree (a link to /dev/null in /etc/systemd/system)."""
    d = root / "etc" / "systemd" / "system"
    d.mkdir(parents=True, exist_ok=True)
    for unit in units:
        link = d / unit
        if not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to("/dev/null")


def overlay_options(lower: Path, upper: Path, work: Path) -> str:
    return f"lowerdir={lower},upperdir={upper},workdir={work}"


class NspawnProvider:
    """Provider for systemd-nspawn containers on this machine (see the module docstring)."""

    name = "nspawn"
    SETTINGS = SETTINGS
    max_parallel = 3        # a container starts in seconds; three boot together
    follows_hosts = True

    def __init__(self, ctx: ProviderContext, *, proc: Path = Path("/proc"),
                 cgroup_root: Path = cgroups.ROOT,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.ctx = ctx
        self.env = ctx.environment
        self.dir = ctx.env_dir.resolve()
        self.store = ctx.store
        self.eid = env_id(self.dir)
        self.tag = tag_of(self.eid)
        self.subnet = ipaddress.IPv4Network(ctx.cidr or DEFAULT_SUBNET)
        self.proc = proc
        self.cgroup_root = cgroup_root
        self.sleep = sleep
        self._lock = threading.RLock()
        wanted = ctx.options.get("bridge")
        self._bridge_setting = str(wanted) if wanted else None

    # --- paths and names ------------------------------------------------------------
    def host_dir(self, host: str) -> Path:
        return self.dir / "hosts" / host

    @property
    def log_dir(self) -> Path:
        return self.dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.dir / "run"

    @property
    def sampler_config(self) -> Path:
        return self.run_dir / "cgroups.json"

    def machine(self, host: str) -> str:
        return machine_name(self.tag, host)

    def cgroup(self, host: str) -> Cgroup:
        return Cgroup(self.machine(host), self.cgroup_root)

    def bridge_name(self) -> str:
        """The recorded bridge, else the setting, else fp-<env id>."""
        state = self.store.load()
        recorded = state.network.get("bridge") if state is not None else None
        return str(recorded or self._bridge_setting or bridge.default_name(self.tag))

    def _state(self) -> EnvState:
        state = self.store.load()
        if state is None:
            state = self.store.save(EnvState(environment=self.env, provider=self.name,
                                             network={}))
        if not state.network.get("subnet"):
            state = self.store.update(network={**state.network, "kind": "bridge",
                                               "subnet": str(self.subnet),
                                               "env_id": self.eid})
        return state

    # --- sizing, images, preconditions --------------------------------------------------
    def host_requests(self, plan: Plan, only: Sequence[str] = ()) -> list[HostRequest]:
        """Per host: memory and CPU limits (settings, else per role), cores, the qcow2 whose
        tree it boots; the machine's preconditions (tools, cgroups, bridge, CIDR) checked
        before anything is written."""
        opts = self.ctx.options
        build_dir = self.ctx.build_dir or self.dir.parent.parent
        root = self.ctx.repo_root or Path.cwd()
        overrides = opts.get("hosts") or {}
        assert isinstance(overrides, dict)
        out = []
        for h in plan_hosts(plan, only):
            where = f"settings.hosts.{h.name}"
            o = inputs.check_fields(overrides.get(h.name, {}), HOST_SETTINGS, source=None,
                                    path=where)
            if len(self.machine(h.name)) > MACHINE_NAME_MAX:
                raise InputError.field(None, f"placement.hosts.{h.name}",
                                       f"a host name of at most "
                                       f"{MACHINE_NAME_MAX - len(self.tag) - 1} characters "
                                       "(it becomes part of the container's machine name)",
                                       h.name)
            roles = tuple(h.roles)
            mem = o["memory_mb"] or opts.get("memory_mb") \
                or max(DEFAULT_MEMORY_MB[r] for r in roles)
            cpus = o["cpus"] or opts.get("cpus", DEFAULT_CPUS)
            assert isinstance(mem, int) and isinstance(cpus, int)   # checked by the rules
            out.append(HostRequest(
                name=h.name, roles=tuple(r.value for r in roles),
                image=image_path(h.image, h.image_id, build_dir, root),
                memory_mb=mem, cpus=cpus,
                address=h.address,
                host_cpus=host_cores(o["host_cpus"], f"{where}.host_cpus")))
        for r in out:
            if not Path(r.image).is_file():
                raise InputError(f"image {Path(r.image).name} of host {r.name} is not baked "
                                 f"({r.image} does not exist)",
                                 hint="run `make bake-images` (or `bake build --provider "
                                      "qemu`): nspawn boots the qemu images")
        self.check_machine()
        return out

    def check_machine(self) -> None:
        """systemd-nspawn and cgroup v1 are there, and the bridge name and CIDR are free
        (unless this environment already holds them); InputError otherwise."""
        if shutil.which(NSPAWN) is None:
            raise InputError(f"{NSPAWN} is not installed",
                             hint="`make deps` (Debian package systemd-container), or "
                                  "use provider qemu")
        if os.geteuid() != 0:
            raise InputError("the nspawn provider needs root (containers, mounts, a bridge)",
                             hint="run as root, or use provider qemu")
        missing = [h for h in cgroups.REQUIRED if not (self.cgroup_root / h).is_dir()]
        if missing:
            raise InputError(f"cgroup v1 hierarchies {missing} are not mounted under "
                             f"{self.cgroup_root}",
                             hint="the nspawn provider limits each container's CPU and "
                                  "memory there; use provider qemu on this machine")
        name = self.bridge_name()
        found = bridge.machine_conflicts(name, str(self.subnet), self._bridge_is_ours(name),
                                         log_path=self.log_dir / "network.log")
        if found:
            c = found[0]
            raise InputError.field(None, "settings.bridge" if c.field == "bridge" else c.field,
                                   c.expected, c.found)

    def _bridge_is_ours(self, name: str) -> bool:
        """The bridge exists and belongs to this environment: its state records it, or it
        carries the environment's tag (the default name: left by an interrupted run of this
        environment, adopted rather than refused)."""
        if not bridge.exists(name):
            return False
        state = self.store.load()
        recorded = state is not None and state.network.get("bridge") == name
        return recorded or name == bridge.default_name(self.tag)

    # --- reserve ------------------------------------------------------------------------
    def reserve(self, hosts: Sequence[HostRequest]) -> dict[str, str]:
        """Static addresses on the bridge's CIDR (its first address is the operator's)."""
        with self._lock:
            gateway = bridge.operator_address(str(self.subnet)).split("/")[0]
            for r in hosts:
                if r.address == gateway:
                    raise InputError.field(None, f"hosts.{r.name}.address",
                                           f"an address other than {gateway} (the "
                                           "operator's address on the bridge)", r.address)
            return reserve_static(self.store, self._state(), self.subnet, hosts)

    # --- network and sampler -------------------------------------------------------------
    def ensure_network(self) -> str:
        """The environment's bridge, up with the operator's address, and the cgroup
        sampler; each recorded the moment it exists."""
        with self._lock:
            state = self._state()
            name = self.bridge_name()
            netlog = self.log_dir / "network.log"
            ours = self._bridge_is_ours(name)
            found = bridge.machine_conflicts(name, str(self.subnet), ours, netlog)
            if found:
                c = found[0]
                raise InputError.field(None, "settings.bridge" if c.field == "bridge"
                                       else c.field, c.expected, c.found)
            if not ours:
                bridge.create(name, netlog)
            if state.network.get("bridge") != name:
                self.store.update(network={**state.network, "bridge": name})
            address = bridge.operator_address(str(self.subnet))
            bridge.configure(name, address, netlog)
            self.store.update(network={**self._state().network, "bridge_address": address})
            self._ensure_sampler()
            return name

    def _sampler_alive(self, pid: object) -> bool:
        if not isinstance(pid, int):
            return False
        argv = pid_argv(pid, self.proc)
        return argv is not None and self._is_sampler(argv)

    def _is_sampler(self, argv: Sequence[str]) -> bool:
        return cgroup_sampler.__name__ in argv and self.tag in argv

    def _ensure_sampler(self) -> None:
        state = self._state()
        if self._sampler_alive(state.network.get("sampler_pid")):
            return
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.sampler_config.exists():
            write_atomic(self.sampler_config, json.dumps({"hosts": {}}) + "\n")
        proc = runner.spawn([sys.executable, "-m", cgroup_sampler.__name__, self.tag,
                             self.sampler_config],
                            log_path=self.log_dir / "cgroup-sampler.log",
                            env={"PYTHONPATH": str(PACKAGE_ROOT)})
        self.store.update(network={**self._state().network, "sampler_pid": proc.pid})

    def _sampler_hosts(self, change: Callable[[dict[str, object]], None]) -> None:
        with self._lock:
            try:
                doc = json.loads(self.sampler_config.read_text())
            except (OSError, ValueError):
                doc = {"hosts": {}}
            change(doc["hosts"])
            if self.run_dir.is_dir():
                write_atomic(self.sampler_config, json.dumps(doc, sort_keys=True) + "\n")

    # --- create ---------------------------------------------------------------------------
    def alive(self, host: HostState) -> bool:
        """The recorded pid runs and is this host's container."""
        if host.pid is None:
            return False
        argv = pid_argv(host.pid, self.proc)
        return argv is not None and f"--machine={self.machine(host.name)}" in argv

    def wait_running(self, hosts: Sequence[str]) -> None:
        state = self._state()
        dead = [h for h in hosts if h not in state.hosts or not self.alive(state.hosts[h])]
        if dead:
            raise ExternalError(f"container of {', '.join(dead)} is not running",
                                hint=f"see {self.log_dir}/<host>.console.log")

    def create(self, host: HostRequest, user_data: bytes) -> None:
        """Tree, bridge, overlay, seed, cgroup, container; each recorded the moment it
        exists. A running container is left alone; a dead one is replaced (new
        generation, fresh overlay)."""
        state = self._state()
        current = state.hosts.get(host.name)
        if current is None or not current.address:
            raise ExternalError(f"host {host.name}: create before reserve")
        if self.alive(current):
            log.info("%s: already running (pid %s)", host.name, current.pid)
            return
        errors = self._clear_host(current)
        if errors:
            raise ExternalError(f"host {host.name}: what its last container left could not "
                                "be removed:\n  " + "\n  ".join(errors))
        logs = self.log_dir
        logs.mkdir(parents=True, exist_ok=True)
        cmdlog = logs / f"{host.name}.commands.log"
        lower = rootfs.ensure(Path(host.image), log_path=logs / "rootfs.log")
        bridge_name = self.ensure_network()
        generation = current.generation + (1 if current.pid is not None else 0)
        machine = self.machine(host.name)
        hdir = self.host_dir(host.name)
        upper, work, root, textfiles = (hdir / "upper", hdir / "work", hdir / "root",
                                        hdir / "textfile")
        console = logs / f"{host.name}.console.log"
        self.store.update_host(host.name, phase=Phase.CREATING, generation=generation,
                               pid=None, image=host.image, roles=host.roles, error="",
                               user_data_sha256=hashlib.sha256(user_data).hexdigest(),
                               files={"dir": str(hdir), "root": str(root),
                                      "lower": str(lower), "console_log": str(console)},
                               resources={"machine": machine})
        for d in (upper, work, root):
            d.mkdir(parents=True, exist_ok=True, mode=0o755)
        os.chmod(hdir, 0o700)
        textfiles.mkdir(mode=0o755, exist_ok=True)
        runner.run(["mount", "-t", "overlay", "overlay", "-o",
                    overlay_options(lower, upper, work), root],
                   log_path=cmdlog, what=f"overlay for {host.name}")
        self.store.update_host(host.name, files={"overlay": str(root)})
        self._write_seed(root, host.name, generation, user_data,
                         network_config(current.address, self.subnet.prefixlen))
        mask_units(root, CONTAINER_MASKED)

        cg = self.cgroup(host.name)
        cg.create(Limits(host.cpus, host.memory_mb, host.host_cpus))
        argv = nspawn_argv(machine=machine, host=host.name, root=root,
                           bridge_name=bridge_name, textfile_dir=textfiles,
                           procs_files=cg.procs_files())
        with open(console, "a") as f:
            f.write(f"--- fabperf: {host.name} generation {generation} starting ---\n")
        with open(cmdlog, "a") as f:
            f.write(f"$ {shlex.join(argv)}\n")
        proc = runner.spawn(argv, log_path=console)
        self.store.update_host(host.name, pid=proc.pid, phase=Phase.RUNNING)

        def add(hosts: dict[str, object]) -> None:
            hosts[host.name] = {"cgroup": machine, "textfile_dir": str(textfiles)}
        self._sampler_hosts(add)
        self.sleep(0.5)
        if proc.poll() is not None:
            raise ExternalError(f"container {host.name} exited at once "
                                f"(exit code {proc.returncode})",
                                hint=f"see {console}")
        log.info("%s: started (pid %s, %s on %s, %d cpu, %d MB%s)", host.name, proc.pid,
                 current.address, bridge_name, host.cpus, host.memory_mb,
                 f", cores {','.join(map(str, host.host_cpus))}" if host.host_cpus else "")

    def _write_seed(self, root: Path, host: str, generation: int, user_data: bytes,
                    netcfg: dict[str, object]) -> None:
        """The NoCloud seed inside the overlay (user-data 0600: it holds keys)."""
        seed = root / SEED_DIR
        seed.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(seed, 0o700)
        write_atomic(seed / "user-data", user_data, mode=0o600)
        write_atomic(seed / "meta-data", yaml.safe_dump(
            meta_data(self.env, host, generation, public_keys(self._state())), sort_keys=False),
            mode=0o600)
        write_atomic(seed / "network-config", yaml.safe_dump(netcfg, sort_keys=False),
                     mode=0o600)

    # --- readiness -----------------------------------------------------------------------
    def target(self, host: HostState) -> ssh.Target:
        """sshd of the container at its address on the environment's bridge."""
        if not host.address:
            raise InputError(f"host {host.name} of {self.env} has no address recorded")
        state = self._state()
        return ssh.Target(host.name, host.address, 22, state.ssh_user, Path(state.ssh_key))

    def probe(self, name: str) -> Probe:
        """The readiness probe of one container (process, SSH on the bridge, console log)."""
        return local_probe(name, lambda: self._state().hosts[name], target=self.target,
                           alive=self.alive, console_file="console_log",
                           log_dir=self.log_dir)

    def wait_ready(self, hosts: Sequence[str], nonce: str,
                   timeouts: Timeouts | None = None) -> list[HostReadiness]:
        return wait_recorded(self.store, [self.probe(h) for h in hosts], nonce, timeouts)

    # --- destroy ---------------------------------------------------------------------------
    def _containers(self) -> dict[int, str]:
        """pid -> machine of every systemd-nspawn carrying this environment's tag."""
        prefix = f"--machine={self.tag}-"
        found = {}
        for p in scan_processes(self.proc):
            if not p.argv or os.path.basename(p.argv[0]) != NSPAWN:
                continue
            for a in p.argv:
                if a.startswith(prefix):
                    found[p.pid] = a.removeprefix("--machine=")
        return found

    def _cgroups(self) -> set[str]:
        """Names of this environment's cgroups in any hierarchy."""
        names: set[str] = set()
        for h in cgroups.HIERARCHIES:
            d = self.cgroup_root / h
            if d.is_dir():
                names.update(p.name for p in d.glob(f"{self.tag}-*") if p.is_dir())
        return names

    def find_leaked(self) -> list[Leaked]:
        """Containers, cgroups, overlay mounts, the sampler and the bridge of this
        environment that the state does not list."""
        state = self.store.load()
        hosts = state.hosts.values() if state is not None else ()
        pids = {h.pid for h in hosts}
        machines = {self.machine(h.name) for h in hosts}
        net = state.network if state is not None else {}
        found = [Leaked("container", str(pid), m) for pid, m in self._containers().items()
                 if pid not in pids]
        found += [Leaked("cgroup", n) for n in sorted(self._cgroups()) if n not in machines]
        mounted = {h.files.get("overlay") for h in hosts}
        found += [Leaked("mount", m) for m in rootfs.mounts_under(self.dir / "hosts")
                  if m not in mounted]
        found += [Leaked("sampler", str(p.pid), " ".join(p.argv))
                  for p in scan_processes(self.proc)
                  if self._is_sampler(p.argv) and p.pid != net.get("sampler_pid")]
        default = bridge.default_name(self.tag)
        if net.get("bridge") != default and bridge.exists(default):
            found.append(Leaked("bridge", default))
        return found

    def _stop_pid(self, pid: int, check: Callable[[], bool]) -> bool:
        """SIGTERM (nspawn asks the container's systemd to power off), then SIGKILL."""
        return signal_until_gone(pid, check, ((signal.SIGTERM, STOP_WAIT),
                                              (signal.SIGKILL, 5.0)), self.sleep, poll=0.2)

    def _clear_host(self, h: HostState) -> list[str]:
        """Stop a host's container and remove its cgroup, overlay mount and files;
        errors for what would not go."""
        errors: list[str] = []
        machine = self.machine(h.name)
        if h.pid is not None:
            pid = h.pid

            def ours() -> bool:
                argv = pid_argv(pid, self.proc)
                return argv is not None and f"--machine={machine}" in argv
            if not self._stop_pid(pid, ours):
                errors.append(f"container {h.name} (pid {pid}) did not stop")
        self._clear_machine(machine, self.host_dir(h.name), errors)
        return errors

    def _clear_machine(self, machine: str, hdir: Path, errors: list[str]) -> None:
        cg = Cgroup(machine, self.cgroup_root)
        left = cg.kill(self.sleep)
        if left:
            errors.append(f"cgroup {machine}: processes {sorted(left)} would not die")
            return
        for m in rootfs.mounts_under(hdir):
            res = runner.run(["umount", m], check=False, what=f"umount {m}",
                             log_path=self.log_dir / "destroy.log")
            if not res.ok:
                runner.run(["umount", "-l", m], check=False, what=f"umount -l {m}",
                           log_path=self.log_dir / "destroy.log")
        if rootfs.mounts_under(hdir):
            errors.append(f"{hdir}: still mounted")
            return
        errors += cg.remove()
        # nspawn's per-machine directory for propagating mounts into the container
        shutil.rmtree(Path("/run/systemd/nspawn/propagate") / machine, ignore_errors=True)
        shutil.rmtree(hdir, ignore_errors=True)

    def destroy(self) -> DestroyReport:
        """Every container (state + tags), cgroup, overlay, the sampler, the bridge, the
        files and the state; logs stay in build/environments/<env>/logs."""
        removed: list[str] = []
        errors: list[str] = []
        state = self.store.load()
        leaked = self.find_leaked()
        hosts = list(state.hosts.values()) if state is not None else []

        def one(h: HostState) -> None:
            errs = self._clear_host(h)
            errors.extend(errs)
            if not errs:
                removed.append(f"container {h.name}" + (f" (pid {h.pid})" if h.pid else ""))
        parallel(one, hosts, len(hosts) or 1)
        for item in leaked:
            if item.kind == "container":
                pid = int(item.ident)

                def is_it(pid: int = pid, m: str = item.detail) -> bool:
                    argv = pid_argv(pid, self.proc)
                    return argv is not None and f"--machine={m}" in argv
                if self._stop_pid(pid, is_it):
                    removed.append(f"leaked container {item.detail} (pid {pid})")
                else:
                    errors.append(f"leaked container {item.detail} (pid {pid}) did not stop")
        for item in leaked:
            if item.kind == "cgroup":
                host = item.ident.removeprefix(f"{self.tag}-")
                self._clear_machine(item.ident, self.host_dir(host), errors)
                removed.append(f"leaked cgroup {item.ident}")
            elif item.kind == "mount":
                runner.run(["umount", "-l", item.ident], check=False, what="umount",
                           log_path=self.log_dir / "destroy.log")
                removed.append(f"leaked mount {item.ident}")
        samplers = [int(x.ident) for x in leaked if x.kind == "sampler"]
        net = state.network if state is not None else {}
        if isinstance(net.get("sampler_pid"), int):
            samplers.insert(0, int(net["sampler_pid"]))
        for pid in samplers:
            def sampler_runs(pid: int = pid) -> bool:
                return self._sampler_alive(pid)
            if self._stop_pid(pid, sampler_runs):
                removed.append(f"cgroup sampler (pid {pid})")
            else:
                errors.append(f"cgroup sampler (pid {pid}) did not stop")
        if errors:
            return DestroyReport(tuple(removed), tuple(leaked), tuple(errors))
        names = {str(net["bridge"])} if net.get("bridge") else set()
        names |= {x.ident for x in leaked if x.kind == "bridge"}
        for name in sorted(names):
            left = bridge.ports(name)
            if left:
                errors.append(f"bridge {name} still has ports {left}")
            elif bridge.delete(name, self.log_dir / "destroy.log"):
                removed.append(f"bridge {name}")
        if errors:
            return DestroyReport(tuple(removed), tuple(leaked), tuple(errors))
        for path in (self.dir / "hosts", self.run_dir):
            if path.exists():
                shutil.rmtree(path)
                removed.append(str(path))
        if state is not None:
            self.store.remove()
            removed.append(str(self.store.path))
        return DestroyReport(tuple(removed), tuple(leaked), ())

    def destroy_hosts(self, names: Sequence[str]) -> DestroyReport:
        """Remove some containers and forget them (rollback of a partial `up`); the bridge
        and the sampler stay."""
        removed: list[str] = []
        errors: list[str] = []
        state = self.store.load()
        if state is None:
            return DestroyReport()
        for name in names:
            h = state.hosts.get(name)
            if h is None:
                continue
            errs = self._clear_host(h)
            errors += errs
            if errs:
                continue

            def drop(hosts: dict[str, object], name: str = name) -> None:
                hosts.pop(name, None)
            self._sampler_hosts(drop)
            cur = self.store.load()
            if cur is not None:
                self.store.save(replace(cur, hosts={k: v for k, v in cur.hosts.items()
                                                    if k != name}))
            removed.append(f"container {name}")
        return DestroyReport(tuple(removed), (), tuple(errors))

    # --- launch gc: the image cache ------------------------------------------------------------
    @classmethod
    def collect(cls, settings: object, live: Callable[[str, str], bool],
                older_than_hours: float) -> list[Garbage]:
        """Unpacked image trees no container uses whose qcow2 is gone or re-baked (or, with
        --older-than, unused for that long), and what an interrupted unpack left."""
        out = [Garbage("nspawn", "loop device", loop, "", "left by an interrupted unpack")
               for loop in rootfs.orphan_loops()]
        now = time.time()
        for t in rootfs.listing():
            if t.in_use:
                continue
            age = (now - t.path.stat().st_mtime) / 3600
            if t.path.name.startswith("."):
                pid = t.path.name.rpartition("-")[2]
                if not pid.isdigit() or not (Path("/proc") / pid).exists():
                    out.append(Garbage("nspawn", "unpack", str(t.path), "",
                                       "interrupted unpack", round(age, 2)))
                continue
            try:
                source = json.loads((t.path / rootfs.MARKER).read_text())
                current = Path(source["path"]).is_file() and \
                    rootfs.up_to_date(Path(source["path"]), t.path.parent) is not None
            except (OSError, ValueError, KeyError):
                current = False
            if not current:
                out.append(Garbage("nspawn", "image tree", str(t.path), "",
                                   "its image is gone or re-baked", round(age, 2)))
            elif older_than_hours > 0 and age >= older_than_hours:
                out.append(Garbage("nspawn", "image tree", str(t.path), "",
                                   "unused", round(age, 2)))
        return out

    @classmethod
    def located(cls, settings: object) -> str:
        """Where `collect` looks: this machine's image cache."""
        return f"nspawn {rootfs.CACHE}"

    @classmethod
    def remove_garbage(cls, settings: object, items: Sequence[Garbage]) -> list[str]:
        removed = []
        for g in items:
            if g.kind == "loop device":
                if rootfs.detach(g.ident):
                    removed.append(g.ident)
                continue
            rootfs.remove(Path(g.ident))
            removed.append(g.ident)
        return removed
