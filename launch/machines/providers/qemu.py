"""The local QEMU provider: an environment's VMs on one machine, no cloud account, no root network.

Per environment (everything under build/environments/<env>/):
- one `vde_switch` (userspace Ethernet switch): every VM's first NIC plugs into it and gets
  the static address `reserve` chose on the environment's private subnet (default
  10.77.0.0/24), so VMs reach each other at the addresses in their certificates. Host
  networking is never touched.
- per VM a second NIC with QEMU user-mode networking: outbound access for the guest
  (Debian mirror, npm) and `hostfwd` on 127.0.0.1 only for SSH and the role's service ports
  (free host ports, recorded in the state). The host talks to VMs only through 127.0.0.1.
- per VM a copy-on-write qcow2 overlay on the baked image, a NoCloud seed ISO (user-data,
  meta-data with instance-id <env>-<host>-<generation>, network-config), a serial log,
  a QMP socket, a pidfile. QEMU runs daemonized and is tagged `-name fabperf:<env>:<host>:<id>`
  (id = hash of the environment directory) so `down` finds VMs the state file lost.

Settings of a qemu environment file (all optional; SETTINGS below)::

    settings:
      accel: auto          # auto | kvm | tcg (auto: tcg under a hypervisor, where nested KVM
                           #   is slower than TCG)
      memory_mb: 1536      # every VM (default per role: fabric 2048, caliper/monitor 1536)
      cpus: 2
      hosts: {caliper0: {memory_mb: 1024, cpus: 1}}   # per-host overrides
      # host_cpus (per host): the cores of this machine the VM's QEMU may run on, a taskset
      # list ("1", "0-1,3"). Pinning the load generator and Fabric to different cores is the
      # local stand-in for separate machines: neither can take the other's CPU.
      # hosts: {caliper: {host_cpus: "1"}, fabric: {host_cpus: "0"}, monitor: {host_cpus: "0"}}
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from bake import manifest
from fabkit import inputs, runner
from fabkit.errors import ExternalError, InputError
from launch.machines import ssh
from launch.machines.providers.base import (
    ROLE_PORTS,
    DestroyReport,
    HostRequest,
    Leaked,
    ProviderContext,
    env_id,
    manifest_artifact,
    plan_hosts,
    wait_recorded,
)
from launch.machines.ready import HostReadiness, Probe, Timeouts
from launch.machines.state import EnvState, HostState, Phase, StateStore
from launch.render.plan import Plan
from launch.spec.contract import Role

log = logging.getLogger("fabperf.qemu")

DEFAULT_SUBNET = "10.77.0.0/24"
FIRST_HOST_OFFSET = 10          # .1-.9 stay free (gateway-like addresses people expect)
SSH_PORT = 22
TAG_PREFIX = "fabperf"
# sun_path is 108 bytes; QEMU/vde append their own names below the socket directory
MAX_SOCKET_DIR = 70

# Per-role VM sizes when the spec's settings do not say (TCG on a 2-core machine).
DEFAULT_MEMORY_MB = {Role.PEER: 2048, Role.ORDERER: 2048, Role.CALIPER: 1536,
                     Role.MONITOR: 1536}
DEFAULT_CPUS = 2
_MEMORY_RULE = inputs.Rule("memory_mb", (int, type(None)), None, minimum=256,
                           maximum=1024 * 1024, why="a VM on one machine")
_CPUS_RULE = inputs.Rule("cpus", (int, type(None)), None, minimum=1, maximum=256,
                         why="a VM on one machine")

SETTINGS: tuple[inputs.Rule, ...] = (
    inputs.Rule("accel", str, "auto", choices=("auto", "kvm", "tcg"),
                doc="accelerator (auto: tcg under a hypervisor)"),
    replace(_MEMORY_RULE, doc="memory of every VM (default per role)"),
    replace(_CPUS_RULE, kind=int, default=DEFAULT_CPUS, doc="vCPUs of every VM"),
    inputs.Rule("hosts", dict, {},
                doc="per-host overrides {HOST: {memory_mb, cpus, host_cpus}}"),
)
HOST_SETTINGS: tuple[inputs.Rule, ...] = (
    _MEMORY_RULE,
    _CPUS_RULE,
    inputs.Rule("host_cpus", (str, int, type(None)), None,
                doc="the host cores its QEMU runs on, a taskset list such as 1 or 0-1,3"),
)
_CORE_LIST = re.compile(r"[0-9]{1,4}(-[0-9]{1,4})?(,[0-9]{1,4}(-[0-9]{1,4})?)*")


def host_cores(value: str | int | None, where: str,
               available: frozenset[int] | None = None) -> tuple[int, ...]:
    """A host's `host_cpus` setting as sorted core numbers (empty: not pinned); a list that
    is malformed or names a core this process may not run on is an InputError."""
    if value is None:
        return ()
    text = str(value).strip()
    if isinstance(value, bool) or not _CORE_LIST.fullmatch(text):
        raise InputError.field(None, where, "a taskset core list such as 1 or 0-1,3", value)
    cores: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        first, last = int(lo), int(hi or lo)
        if last < first:
            raise InputError.field(None, where, "ranges written low-high", value)
        cores.update(range(first, last + 1))
    have = available if available is not None else frozenset(os.sched_getaffinity(0))
    if not cores <= have:
        raise InputError.field(None, where, f"cores of this machine ({_span(have)})", value)
    return tuple(sorted(cores))


def _span(cores: Iterable[int]) -> str:
    return ",".join(map(str, sorted(cores)))


def image_path(image: str | None, image_id: str | None, build_dir: Path, repo_root: Path) -> str:
    """The qcow2 a qemu host boots: the plan's image id, else the bake manifest's artifact."""
    if image is None:   # the plan gives every host of a provider that boots images one
        raise InputError("a qemu host without an image in the plan")
    found = image_id or manifest_artifact(image, "qemu", "path", build_dir)
    if not found:
        raise InputError(f"image {image} has not been baked for qemu "
                         f"({manifest.path(build_dir)} has no entry)",
                         hint=f"run `bake build --provider qemu --image {image}`")
    p = Path(found)
    return str(p if p.is_absolute() else repo_root / p)


class Accel:
    """Accelerator choice: kvm, tcg, or auto."""

    CHOICES = ("auto", "kvm", "tcg")

    @staticmethod
    def resolve(choice: str, *, dev_kvm: Path = Path("/dev/kvm"),
                cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
        """auto -> kvm on bare metal with a usable /dev/kvm, else tcg.

        Under a hypervisor (nested virtualisation) KVM is far slower than TCG on the
        fabperf build machines, so auto picks tcg there.
        """
        if choice not in Accel.CHOICES:
            raise InputError.field(None, "accel", f"one of {Accel.CHOICES}", choice)
        if choice != "auto":
            return choice
        if not os.access(dev_kvm, os.R_OK | os.W_OK):
            return "tcg"
        try:
            flags = cpuinfo.read_text()
        except OSError:
            return "tcg"
        return "tcg" if " hypervisor" in flags else "kvm"


def vm_tag(environment: str, host: str, eid: str) -> str:
    """The -name of a VM: fabperf:<env>:<host>:<id>."""
    return f"{TAG_PREFIX}:{environment}:{host}:{eid}"


def mac_address(environment: str, host: str, nic: int, eid: str) -> str:
    """A stable locally administered MAC (QEMU's 52:54:00 prefix) per environment/host/NIC."""
    h = hashlib.sha256(f"{eid}/{environment}/{host}/{nic}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in h[:3])


def network_config(lan_mac: str, address: str, prefix: int, wan_mac: str) -> dict[str, object]:
    """NoCloud network-config v2: static private address on the switch NIC, DHCP on the other."""
    return {
        "version": 2,
        "ethernets": {
            "eth0": {"match": {"macaddress": lan_mac}, "set-name": "eth0",
                     "addresses": [f"{address}/{prefix}"]},
            "eth1": {"match": {"macaddress": wan_mac}, "set-name": "eth1", "dhcp4": True},
        },
    }


def meta_data(environment: str, host: str, generation: int,
              keys: Sequence[str]) -> dict[str, object]:
    """NoCloud meta-data: a new instance-id per generation (cloud-init runs again on a
    replaced host), the host name, and the environment's key pair, which cloud-init
    authorises for the image's default user."""
    meta: dict[str, object] = {"instance-id": f"{environment}-{host}-{generation}",
                               "local-hostname": host}
    if keys:
        meta["public-keys"] = list(keys)
    return meta


def free_port(exclude: set[int]) -> int:
    """A TCP port free on 127.0.0.1 now (the kernel picks it)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in exclude:
            return int(port)
    raise ExternalError("no free TCP port on 127.0.0.1")


@dataclass(frozen=True)
class ProcInfo:
    """A process found by scanning /proc."""

    pid: int
    argv: tuple[str, ...]


def scan_processes(proc: Path = Path("/proc")) -> list[ProcInfo]:
    """Every process's argv, read from /proc/<pid>/cmdline (vanished processes skipped)."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if raw:
            found.append(ProcInfo(int(entry.name), tuple(a.decode(errors="replace")
                                                         for a in raw.rstrip(b"\0").split(b"\0"))))
    return found


def pid_argv(pid: int, proc: Path = Path("/proc")) -> tuple[str, ...] | None:
    """argv of a live process, None when it is gone (or a zombie)."""
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None
    return tuple(a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0"))


def qmp_command(sock_path: Path, command: str, timeout: float = 5.0) -> dict[str, object]:
    """Send one QMP command (after the capabilities handshake) and return the reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        f = s.makefile("rwb")
        json.loads(f.readline())                       # greeting
        f.write(b'{"execute": "qmp_capabilities"}\n')
        f.flush()
        json.loads(f.readline())
        f.write(json.dumps({"execute": command}).encode() + b"\n")
        f.flush()
        while True:
            line = f.readline()
            if not line:
                return {}
            reply = json.loads(line)
            if "return" in reply or "error" in reply:
                return dict(reply)


def signal_until_gone(pid: int, check: Callable[[], bool],
                      steps: Sequence[tuple[signal.Signals | None, float]],
                      sleep: Callable[[float], None], *, poll: float) -> bool:
    """Each (signal, seconds) step in turn until `check()` says the process is gone (a None
    signal only waits: a request sent another way, e.g. QMP quit); True once it is gone."""
    for sig, wait in steps:
        if not check():
            return True
        if sig is not None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not check():
                return True
            sleep(poll)
    return not check()


def public_keys(state: EnvState) -> list[str]:
    """The environment's SSH public key line for a host's meta-data (none before the key
    pair exists)."""
    if not state.ssh_key:
        return []
    pub = Path(state.ssh_key + ".pub")
    return [pub.read_text().strip()] if pub.exists() else []


def console_tail(path: str | None, lines: int) -> str:
    """The last `lines` lines of a host's console log (its last 64 KiB), "" without one."""
    if not path or not Path(path).exists():
        return ""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64 * 1024))
        text = f.read().decode(errors="replace").replace("\r", "")
    return "\n".join(text.splitlines()[-lines:])


def local_probe(name: str, host: Callable[[], HostState], *,
                target: Callable[[HostState], ssh.Target],
                alive: Callable[[HostState], bool], console_file: str,
                log_dir: Path) -> Probe:
    """The readiness probe of a host on this machine (a VM or a container): its process,
    SSH at its target, and the tail of the console log its state records as `console_file`.
    `host` reads the host's state afresh at each call (the state changes while it waits)."""
    def run(cmd: str, timeout: float) -> runner.Completed:
        return ssh.run(target(host()), cmd, timeout=timeout,
                       log_path=log_dir / f"{name}.ready.log")

    return Probe(name, alive=lambda: alive(host()), ssh=run,
                 console_tail=lambda lines: console_tail(host().files.get(console_file),
                                                         lines))


def reserve_static(store: StateStore, state: EnvState,
                   subnet: ipaddress.IPv4Network | ipaddress.IPv6Network,
                   hosts: Sequence[HostRequest]) -> dict[str, str]:
    """Static addresses on a local subnet, each recorded at once: kept from the state, else
    from the spec, else the next free one from .10 up (the local providers' `reserve`)."""
    taken = {h.address for h in state.hosts.values() if h.address}
    usable = list(subnet.hosts())[FIRST_HOST_OFFSET - 1:]
    result: dict[str, str] = {}
    for req in hosts:
        existing = state.hosts.get(req.name)
        if existing is not None and existing.address:
            result[req.name] = existing.address
            continue
        if req.address:
            ip = ipaddress.ip_address(req.address)
            if ip not in subnet:
                raise InputError.field(None, f"hosts.{req.name}.address",
                                       f"an address in {subnet}", req.address)
            addr = str(ip)
            if addr in taken:
                raise InputError.field(None, f"hosts.{req.name}.address",
                                       "an address no other host uses", addr)
        else:
            free = [str(a) for a in usable if str(a) not in taken]
            if not free:
                raise InputError(f"subnet {subnet} has no free address for {req.name}")
            addr = free[0]
        taken.add(addr)
        store.update_host(req.name, address=addr, roles=req.roles, image=req.image,
                          phase=Phase.RESERVED)
        result[req.name] = addr
    return result


class QemuProvider:
    """Provider for local QEMU VMs (see the module docstring)."""

    name = "qemu"
    SETTINGS = SETTINGS
    max_parallel = 1        # QEMU start-up is CPU-bound on the build machines
    follows_hosts = True
    # addresses that mean something else from the operator's machine than from a guest
    # (the BYOF preflight does not dial them from here)
    VM_SIDE_NETWORKS = (("10.0.2.0/24", "QEMU's user-mode network (10.0.2.2 is this machine "
                                        "as a guest sees it)"),)

    def __init__(self, ctx: ProviderContext, *,
                 proc: Path = Path("/proc"),
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.ctx = ctx
        self.env = ctx.environment
        self.dir = ctx.env_dir.resolve()
        self.store = ctx.store
        self.eid = env_id(self.dir)
        opts = ctx.options
        self.accel = Accel.resolve(str(opts.get("accel", "auto")))
        self.subnet = ipaddress.ip_network(ctx.cidr or str(opts.get("subnet", DEFAULT_SUBNET)))
        self.qemu = str(opts.get("qemu_binary", "qemu-system-x86_64"))
        self.proc = proc
        self.sleep = sleep
        self._lock = threading.RLock()

    # --- paths ---------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        """Sockets and pidfiles: in the environment dir when its path is short enough."""
        inside = self.dir / "run"
        if len(str(inside)) <= MAX_SOCKET_DIR:
            return inside
        return Path("/tmp") / f"fabperf-{self.eid}"

    @property
    def log_dir(self) -> Path:
        """Serial and command logs; kept after `down` for post-mortems."""
        return self.dir / "logs"

    def host_dir(self, host: str) -> Path:
        return self.dir / "hosts" / host

    # --- state ---------------------------------------------------------------------
    def _state(self) -> EnvState:
        state = self.store.load()
        if state is None:
            state = self.store.save(EnvState(environment=self.env, provider=self.name,
                                             network={"kind": "vde",
                                                      "subnet": str(self.subnet),
                                                      "env_id": self.eid}))
        return state

    # --- sizing and images -----------------------------------------------------------
    def host_requests(self, plan: Plan, only: Sequence[str] = ()) -> list[HostRequest]:
        """Per host: memory and vCPUs (settings, else per role), forwarded ports, the qcow2."""
        opts = self.ctx.options
        build_dir = self.ctx.build_dir or self.dir.parent.parent
        root = self.ctx.repo_root or Path.cwd()
        overrides = opts.get("hosts") or {}
        assert isinstance(overrides, dict)
        out = []
        for h in plan_hosts(plan, only):
            o = inputs.check_fields(overrides.get(h.name, {}), HOST_SETTINGS, source=None,
                                    path=f"settings.hosts.{h.name}")
            roles = tuple(h.roles)
            mem = o["memory_mb"] or opts.get("memory_mb") \
                or max(DEFAULT_MEMORY_MB[r] for r in roles)
            ports = sorted({p for r in roles for p in ROLE_PORTS[r]})
            out.append(HostRequest(
                name=h.name, roles=tuple(r.value for r in roles),
                image=image_path(h.image, h.image_id, build_dir, root),
                memory_mb=int(mem), cpus=int(o["cpus"] or opts.get("cpus", DEFAULT_CPUS)),
                service_ports=tuple(ports), address=h.address,
                host_cpus=host_cores(o["host_cpus"], f"settings.hosts.{h.name}.host_cpus")))
        return out

    # --- reserve -------------------------------------------------------------------
    def reserve(self, hosts: Sequence[HostRequest]) -> dict[str, str]:
        """Static addresses on the private subnet (reserve_static)."""
        with self._lock:
            return reserve_static(self.store, self._state(), self.subnet, hosts)

    # --- network -------------------------------------------------------------------
    def _switch_alive(self, net: dict[str, object]) -> bool:
        pid = net.get("switch_pid")
        if not isinstance(pid, int):
            return False
        argv = pid_argv(pid, self.proc)
        return argv is not None and str(net.get("socket")) in argv

    def ensure_network(self) -> dict[str, object]:
        """Start the environment's vde_switch unless it runs; record it at once."""
        with self._lock:
            state = self._state()
            net = dict(state.network)
            if self._switch_alive(net):
                return net
            run = self.run_dir
            run.mkdir(parents=True, exist_ok=True, mode=0o700)
            sock, mgmt, pidfile = run / "vde.ctl", run / "vde.mgmt", run / "vde.pid"
            for stale in (mgmt, pidfile):
                stale.unlink(missing_ok=True)
            if sock.exists():
                shutil.rmtree(sock, ignore_errors=True)
            runner.run(["vde_switch", "--daemon", "--sock", sock, "--mgmt", mgmt,
                        "--pidfile", pidfile, "--dirmode", "0700", "--mode", "0600"],
                       log_path=self.log_dir / "vde_switch.log", what="vde_switch",
                       timeout=30)
            pid = self._read_pidfile(pidfile, "vde_switch")
            net.update({"kind": "vde", "subnet": str(self.subnet), "env_id": self.eid,
                        "switch_pid": pid, "socket": str(sock), "mgmt": str(mgmt),
                        "pidfile": str(pidfile), "run_dir": str(run)})
            self.store.update(network=net)
            return net

    def _read_pidfile(self, pidfile: Path, what: str) -> int:
        for _ in range(50):
            try:
                return int(pidfile.read_text().strip())
            except (OSError, ValueError):
                self.sleep(0.1)
        raise ExternalError(f"{what} did not write its pidfile {pidfile}")

    # --- create --------------------------------------------------------------------
    def vm_alive(self, host: HostState) -> bool:
        """The recorded pid runs and carries this VM's tag."""
        if host.pid is None:
            return False
        argv = pid_argv(host.pid, self.proc)
        return argv is not None and vm_tag(self.env, host.name, self.eid) in argv

    alive = vm_alive

    def wait_running(self, hosts: Sequence[str]) -> None:
        """`create` returns once QEMU runs: check that they still do."""
        state = self._state()
        dead = [h for h in hosts if h not in state.hosts or not self.vm_alive(state.hosts[h])]
        if dead:
            raise ExternalError(f"QEMU of {', '.join(dead)} is not running",
                                hint=f"see {self.log_dir}/<host>.serial.log")

    def create(self, host: HostRequest, user_data: bytes) -> None:
        """Overlay, seed, ports, QEMU; each recorded the moment it exists. A running VM is
        left alone; a dead one is replaced (new generation, fresh overlay)."""
        state = self._state()
        current = state.hosts.get(host.name)
        if current is None or not current.address:
            raise ExternalError(f"host {host.name}: create before reserve")
        if self.vm_alive(current):
            log.info("%s: already running (pid %s)", host.name, current.pid)
            return
        image = Path(host.image).resolve()
        if not image.is_file():
            raise InputError.field(None, f"hosts.{host.name}.image",
                                   "an existing qcow2 file (bake build --provider qemu)",
                                   host.image)
        net = self.ensure_network()
        generation = current.generation + (1 if current.pid is not None else 0)
        hdir = self.host_dir(host.name)
        if hdir.exists():
            shutil.rmtree(hdir)
        hdir.mkdir(parents=True, mode=0o700)
        logs = self.log_dir
        logs.mkdir(parents=True, exist_ok=True)
        cmdlog = logs / f"{host.name}.commands.log"
        self.store.update_host(host.name, phase=Phase.CREATING, generation=generation,
                               pid=None, image=str(image), roles=host.roles, error="",
                               user_data_sha256=hashlib.sha256(user_data).hexdigest())

        overlay = hdir / "disk.qcow2"
        argv: list[str | os.PathLike[str]] = ["qemu-img", "create", "-q", "-f", "qcow2", "-F",
                                              "qcow2", "-b", image, overlay]
        if host.disk_gb:
            argv.append(f"{host.disk_gb}G")
        runner.run(argv, log_path=cmdlog, what=f"overlay for {host.name}")
        self.store.update_host(host.name, files={"overlay": str(overlay)})

        lan_mac = mac_address(self.env, host.name, 0, self.eid)
        wan_mac = mac_address(self.env, host.name, 1, self.eid)
        seed = self._make_seed(hdir, host.name, generation, user_data,
                               network_config(lan_mac, current.address,
                                              self.subnet.prefixlen, wan_mac), cmdlog)
        self.store.update_host(host.name, files={"seed": str(seed)})

        taken = {p for h in state.hosts.values() for p in h.ports.values()}
        ports = dict(current.ports)   # keep the ports a replaced VM had
        for guest in (SSH_PORT, *host.service_ports):
            key = "ssh" if guest == SSH_PORT else str(guest)
            if key not in ports:
                ports[key] = free_port(taken)
                taken.add(ports[key])
        self.store.update_host(host.name, ports=ports)

        run = self.run_dir
        qmp = run / f"{host.name}.qmp"
        pidfile = run / f"{host.name}.pid"
        serial = logs / f"{host.name}.serial.log"
        pidfile.unlink(missing_ok=True)
        qmp.unlink(missing_ok=True)
        self.store.update_host(host.name, files={"qmp": str(qmp), "pidfile": str(pidfile),
                                                 "serial_log": str(serial)})
        fwd = ",".join(f"hostfwd=tcp:127.0.0.1:{hp}-:{SSH_PORT if k == 'ssh' else int(k)}"
                       for k, hp in sorted(ports.items()))
        qargv = self.qemu_argv(host, overlay=overlay, seed=seed, qmp=qmp, pidfile=pidfile,
                               serial=serial, vde_sock=Path(str(net["socket"])),
                               lan_mac=lan_mac, wan_mac=wan_mac, hostfwd=fwd)
        with open(serial, "a") as f:
            f.write(f"--- fabperf: {host.name} generation {generation} starting ---\n")
        runner.run(qargv, log_path=cmdlog, what=f"qemu for {host.name}", timeout=120)
        pid = self._read_pidfile(pidfile, f"qemu for {host.name}")
        self.store.update_host(host.name, pid=pid, phase=Phase.RUNNING)
        log.info("%s: started (pid %s, ssh 127.0.0.1:%s, %s%s)", host.name, pid,
                 ports["ssh"], self.accel,
                 f", host cores {_span(host.host_cpus)}" if host.host_cpus else "")

    def qemu_argv(self, host: HostRequest, *, overlay: Path, seed: Path, qmp: Path,
                  pidfile: Path, serial: Path, vde_sock: Path, lan_mac: str, wan_mac: str,
                  hostfwd: str) -> list[str]:
        """The QEMU command line of one VM."""
        accel = ["-accel", "tcg,thread=multi"] if self.accel == "tcg" else \
            ["-accel", "kvm", "-cpu", "host"]
        # taskset's affinity is inherited by every thread QEMU starts (vCPUs, I/O)
        pin = ["taskset", "--cpu-list", _span(host.host_cpus)] \
            if host.host_cpus else []
        return [
            *pin, self.qemu, "-name", vm_tag(self.env, host.name, self.eid),
            "-machine", "pc", *accel, "-m", str(host.memory_mb), "-smp", str(host.cpus),
            "-nodefaults", "-display", "none", "-vga", "none",
            "-drive", f"file={overlay},if=virtio,format=qcow2,discard=unmap",
            "-drive", f"file={seed},if=virtio,format=raw,readonly=on",
            "-netdev", f"vde,id=lan,sock={vde_sock}",
            "-device", f"virtio-net-pci,netdev=lan,mac={lan_mac}",
            "-netdev", f"user,id=wan,{hostfwd}",
            "-device", f"virtio-net-pci,netdev=wan,mac={wan_mac}",
            "-object", "rng-random,filename=/dev/urandom,id=rng0",
            "-device", "virtio-rng-pci,rng=rng0",
            "-serial", f"file:{serial}",
            "-qmp", f"unix:{qmp},server=on,wait=off",
            "-pidfile", str(pidfile), "-daemonize",
        ]

    def _make_seed(self, hdir: Path, host: str, generation: int, user_data: bytes,
                   netcfg: dict[str, object], cmdlog: Path) -> Path:
        """The NoCloud seed ISO (volume id cidata); the plain user-data is not kept."""
        src = hdir / "seed"
        src.mkdir(mode=0o700)
        fd = os.open(src / "user-data", os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(user_data)
        meta = meta_data(self.env, host, generation, public_keys(self._state()))
        (src / "meta-data").write_text(yaml.safe_dump(meta, sort_keys=False))
        (src / "network-config").write_text(yaml.safe_dump(netcfg, sort_keys=False))
        seed = hdir / "seed.iso"
        old = os.umask(0o077)
        try:
            runner.run(["genisoimage", "-quiet", "-output", seed, "-volid", "cidata",
                        "-joliet", "-rock", src / "user-data", src / "meta-data",
                        src / "network-config"], log_path=cmdlog, what=f"seed for {host}")
        finally:
            os.umask(old)
        shutil.rmtree(src)
        return seed

    # --- readiness -----------------------------------------------------------------
    def target(self, host: HostState) -> ssh.Target:
        """Where this host's sshd answers on the operator's machine."""
        if "ssh" not in host.ports:
            raise InputError(f"host {host.name} of {self.env} has no SSH port recorded "
                             f"(phase {host.phase})")
        state = self._state()
        return ssh.Target(host.name, "127.0.0.1", host.ports["ssh"], state.ssh_user,
                          Path(state.ssh_key))

    def probe(self, name: str) -> Probe:
        """The readiness probe of one host (pid, forwarded SSH, serial log)."""
        return local_probe(name, lambda: self._state().hosts[name], target=self.target,
                           alive=self.vm_alive, console_file="serial_log",
                           log_dir=self.log_dir)

    def wait_ready(self, hosts: Sequence[str], nonce: str,
                   timeouts: Timeouts | None = None) -> list[HostReadiness]:
        """Every host through every readiness layer; phases recorded in the state."""
        return wait_recorded(self.store, [self.probe(h) for h in hosts], nonce, timeouts)

    # --- destroy -------------------------------------------------------------------
    def find_leaked(self) -> list[Leaked]:
        """QEMU and vde_switch processes tagged with this environment but not in the state."""
        state = self.store.load()
        known = {h.pid for h in state.hosts.values()} if state else set()
        if state and isinstance(state.network.get("switch_pid"), int):
            known.add(state.network["switch_pid"])
        return [p for p in self._tagged_processes() if int(p.ident) not in known]

    def _tagged_processes(self) -> list[Leaked]:
        prefix = f"{TAG_PREFIX}:{self.env}:"
        suffix = f":{self.eid}"
        found = []
        for p in scan_processes(self.proc):
            args = p.argv
            for i, a in enumerate(args[:-1]):
                if a == "-name" and args[i + 1].startswith(prefix) \
                        and args[i + 1].endswith(suffix):
                    found.append(Leaked("vm", str(p.pid), args[i + 1]))
                    break
            else:
                if self._is_our_switch(args):
                    found.append(Leaked("switch", str(p.pid), " ".join(args)))
        return found

    def _is_our_switch(self, argv: Sequence[str]) -> bool:
        socks = {str(self.dir / "run" / "vde.ctl"),
                 str(Path("/tmp") / f"fabperf-{self.eid}" / "vde.ctl")}
        return bool(argv) and os.path.basename(argv[0]) == "vde_switch" \
            and any(a in socks for a in argv)

    def _stop_pid(self, pid: int, qmp: Path | None, check: Callable[[], bool]) -> bool:
        """Stop a process: QMP quit when there is a socket, then SIGTERM, then SIGKILL."""
        if not check():
            return False
        steps: list[tuple[signal.Signals | None, float]] = [(signal.SIGTERM, 5.0),
                                                             (signal.SIGKILL, 5.0)]
        if qmp is not None and qmp.exists():
            try:
                qmp_command(qmp, "quit")
                steps.insert(0, (None, 5.0))
            except (OSError, ValueError) as exc:
                log.debug("qmp quit %s: %s", qmp, exc)
        return signal_until_gone(pid, check, steps, self.sleep, poll=0.1)

    def destroy(self) -> DestroyReport:
        """Stop every VM (state + tags), the switch, remove overlays, seeds, sockets, state.

        Serial logs stay in build/environments/<env>/logs for post-mortems.
        """
        removed: list[str] = []
        errors: list[str] = []
        state = self.store.load()
        leaked = self.find_leaked()
        tag_of = {}
        if state is not None:
            for h in state.hosts.values():
                if h.pid is None:
                    continue
                tag = vm_tag(self.env, h.name, self.eid)
                tag_of[h.pid] = tag
                qmp = Path(h.files["qmp"]) if "qmp" in h.files else None
                self._stop_one(h.pid, qmp, tag, f"vm {h.name}", removed, errors)
        for item in leaked:
            if item.kind == "vm":
                self._stop_one(int(item.ident), None, item.detail,
                               f"leaked vm {item.detail}", removed, errors)
        # the switch last: VMs hold its ports
        sw_pids = [int(x.ident) for x in leaked if x.kind == "switch"]
        if state is not None and isinstance(state.network.get("switch_pid"), int):
            sw_pids.insert(0, int(state.network["switch_pid"]))
        for pid in sw_pids:
            def is_switch(pid: int = pid) -> bool:
                argv = pid_argv(pid, self.proc)
                return argv is not None and self._is_our_switch(argv)
            if self._stop_pid(pid, None, is_switch):
                removed.append(f"vde_switch pid {pid}")
            elif is_switch():
                errors.append(f"vde_switch pid {pid} did not stop")
        if errors:
            return DestroyReport(tuple(removed), tuple(leaked), tuple(errors))
        # files: overlays, seeds, sockets, pidfiles, the state; logs stay
        for path in (self.dir / "hosts", self.dir / "run", Path("/tmp") / f"fabperf-{self.eid}"):
            if path.exists():
                shutil.rmtree(path)
                removed.append(str(path))
        if state is not None:
            self.store.remove()
            removed.append(str(self.store.path))
        return DestroyReport(tuple(removed), tuple(leaked), ())

    def destroy_hosts(self, names: Sequence[str]) -> DestroyReport:
        """Stop some VMs and forget them (rollback of a partial `up`); the switch stays."""
        removed: list[str] = []
        errors: list[str] = []
        state = self.store.load()
        if state is None:
            return DestroyReport()
        for name in names:
            h = state.hosts.get(name)
            if h is None:
                continue
            if h.pid is not None:
                qmp = Path(h.files["qmp"]) if "qmp" in h.files else None
                self._stop_one(h.pid, qmp, vm_tag(self.env, name, self.eid), f"vm {name}",
                               removed, errors)
            if not errors:
                shutil.rmtree(self.host_dir(name), ignore_errors=True)
                cur = self.store.load()
                if cur is not None:
                    self.store.save(replace(cur, hosts={k: v for k, v in cur.hosts.items()
                                                        if k != name}))
                removed.append(str(self.host_dir(name)))
        return DestroyReport(tuple(removed), (), tuple(errors))

    def _stop_one(self, pid: int, qmp: Path | None, tag: str, label: str,
                  removed: list[str], errors: list[str]) -> None:
        def check() -> bool:
            argv = pid_argv(pid, self.proc)
            return argv is not None and tag in argv
        if not check():
            return
        if self._stop_pid(pid, qmp, check):
            removed.append(f"{label} (pid {pid})")
        else:
            errors.append(f"{label} (pid {pid}) did not stop")
