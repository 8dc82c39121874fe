"""Bringing an environment up and down: spec -> plan -> reserve -> render -> create -> ready.

Everything of an environment lives in <build>/environments/<env>/: state.json (launch.state),
the per-environment SSH key (ssh/), the rendered bundle (bundle/), the provider's files
(for qemu: hosts/, run/) and logs/ (kept after `down`).

`up` is a reconcile: a second `up` of a running, ready environment changes nothing; an `up`
after an interrupted one resumes with the same nonce and certificates. On failure (or
Ctrl-C) the hosts this `up` created are rolled back unless keep_on_failure; anything an
interruption leaves behind is in the state file or carries the environment's tag, so
`down` finds it.

Provider settings of a qemu environment file (all optional)::

    settings:
      accel: auto          # auto | kvm | tcg (auto: tcg under a hypervisor, where nested KVM
                           #   is slower than TCG)
      memory_mb: 1536      # every VM (default per role: fabric 2048, caliper/monitor 1536)
      cpus: 2
      hosts: {caliper0: {memory_mb: 1024, cpus: 1}}   # per-host overrides
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bake.errors import ExternalError, InputError
from launch import ssh
from launch.contract import PORTS, Role
from launch.providers.base import (
    PROVIDERS,
    DestroyReport,
    HostRequest,
    Leaked,
    Provider,
    ProviderContext,
    get_provider,
)
from launch.ready import HostReadiness, Timeouts
from launch.state import (
    CorruptState,
    EnvState,
    HostState,
    Phase,
    StateStore,
    check_env_name,
)

log = logging.getLogger("fabperf.up")

ENVIRONMENTS = "environments"

# Guest ports the operator's machine should reach on each role's hosts (qemu forwards
# these to 127.0.0.1; clouds open them in the security group).
ROLE_PORTS: Mapping[Role, tuple[int, ...]] = {
    Role.PEER: (PORTS["peer"], PORTS["peer_operations"], PORTS["node_exporter"],
                PORTS["process_exporter"]),
    Role.ORDERER: (PORTS["orderer"], PORTS["orderer_admin"], PORTS["orderer_operations"],
                   PORTS["node_exporter"], PORTS["process_exporter"]),
    Role.CALIPER: (PORTS["node_exporter"], PORTS["process_exporter"], PORTS["caliper_scrape"]),
    Role.MONITOR: (PORTS["prometheus"], PORTS["pushgateway"], PORTS["grafana"], PORTS["mqtt"],
                   PORTS["node_exporter"]),
}

# Per-role VM sizes on qemu when the spec's settings do not say (TCG on a 2-core machine).
DEFAULT_MEMORY_MB = {Role.PEER: 2048, Role.ORDERER: 2048, Role.CALIPER: 1536,
                     Role.MONITOR: 1536}
DEFAULT_CPUS = 2


def env_dir(build_dir: Path, name: str) -> Path:
    """<build>/environments/<env>."""
    return build_dir / ENVIRONMENTS / name


def resolve_env(arg: str, build_dir: Path) -> tuple[str, Path]:
    """ENV on the command line: an environment name or the path of its spec file."""
    p = Path(arg)
    if arg.endswith((".yaml", ".yml")) or p.is_file():
        from launch import spec as spec_mod

        name = spec_mod.load(p).name
    else:
        name = check_env_name(arg)
    return name, env_dir(build_dir, name)


# --- provider settings ----------------------------------------------------------------

@dataclass(frozen=True)
class QemuSettings:
    """`settings:` of a qemu environment file."""

    accel: str = "auto"
    memory_mb: int | None = None            # None: per role (DEFAULT_MEMORY_MB)
    cpus: int = DEFAULT_CPUS
    hosts: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # per-host overrides


def qemu_settings(settings: Mapping[str, Any], source: Path | None) -> QemuSettings:
    """Validate the qemu settings; errors name the file and field."""
    known = {"accel", "memory_mb", "cpus", "hosts"}
    for key in settings:
        if key not in known:
            raise InputError.field(source, f"settings.{key}", f"one of {sorted(known)}", key)
    accel = settings.get("accel", "auto")
    if accel not in ("auto", "kvm", "tcg"):
        raise InputError.field(source, "settings.accel", "auto, kvm or tcg", accel)

    def pos_int(path: str, v: object) -> int:
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise InputError.field(source, path, "a positive integer", v)
        return v

    mem = settings.get("memory_mb")
    hosts: dict[str, dict[str, int]] = {}
    raw_hosts = settings.get("hosts", {}) or {}
    if not isinstance(raw_hosts, Mapping):
        raise InputError.field(source, "settings.hosts", "a mapping host -> {memory_mb, cpus}",
                               raw_hosts)
    for h, v in raw_hosts.items():
        if not isinstance(v, Mapping) or set(v) - {"memory_mb", "cpus"}:
            raise InputError.field(source, f"settings.hosts.{h}", "{memory_mb, cpus}", v)
        hosts[str(h)] = {k: pos_int(f"settings.hosts.{h}.{k}", x) for k, x in v.items()}
    return QemuSettings(
        accel=str(accel),
        memory_mb=None if mem is None else pos_int("settings.memory_mb", mem),
        cpus=pos_int("settings.cpus", settings.get("cpus", DEFAULT_CPUS)),
        hosts=hosts,
    )


def image_path(image: str, image_id: str | None, build_dir: Path, repo_root: Path) -> str:
    """The qcow2 a qemu host boots: the plan's image id, else the bake manifest's artifact."""
    if image_id:
        p = Path(image_id)
        return str(p if p.is_absolute() else repo_root / p)
    from bake import manifest

    entry = manifest.load(build_dir).get(image, {}).get("qemu")
    if entry is None or not entry.artifact.get("path"):
        raise InputError(f"image {image} has not been baked for qemu "
                         f"({manifest.path(build_dir)} has no entry)",
                         hint=f"run `bake build --provider qemu --image {image}`")
    p = Path(entry.artifact["path"])
    return str(p if p.is_absolute() else repo_root / p)


def host_requests(plan: Any, settings: QemuSettings, build_dir: Path, repo_root: Path,
                  only: Sequence[str] = ()) -> list[HostRequest]:
    """What the provider needs per host of the plan (optionally a subset)."""
    names = {h.name for h in plan.hosts}
    for n in only:
        if n not in names:
            raise InputError.field(None, "--only", f"one of the plan's hosts {sorted(names)}", n)
    out = []
    for h in plan.hosts:
        if only and h.name not in only:
            continue
        roles = tuple(h.roles)
        override = settings.hosts.get(h.name, {})
        mem = override.get("memory_mb") or settings.memory_mb \
            or max(DEFAULT_MEMORY_MB[r] for r in roles)
        ports = sorted({p for r in roles for p in ROLE_PORTS[r]})
        out.append(HostRequest(
            name=h.name, roles=tuple(r.value for r in roles),
            image=image_path(h.image, h.image_id, build_dir, repo_root),
            memory_mb=mem, cpus=override.get("cpus", settings.cpus),
            service_ports=tuple(ports), address=h.address))
    return out


# --- up --------------------------------------------------------------------------------

@dataclass(frozen=True)
class UpResult:
    """What `launch up` did."""

    environment: str
    changed: bool
    hosts: tuple[HostState, ...]
    readiness: tuple[HostReadiness, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _provider(name: str, environment: str, edir: Path, store: StateStore,
              options: Mapping[str, object]) -> Provider:
    return get_provider(name, ProviderContext(environment, edir, store, dict(options)))


def up(spec_path: Path, *, build_dir: Path, repo_root: Path, only: Sequence[str] = (),
       keep_on_failure: bool = False, timeouts: Timeouts | None = None) -> UpResult:
    """Bring the environment described by ``spec_path`` up (see the module docstring)."""
    from launch import bundle as bundle_mod
    from launch import plan as plan_mod
    from launch import spec as spec_mod

    t0 = time.monotonic()
    timings: dict[str, float] = {}
    spec = spec_mod.load(spec_path)
    name = spec.name
    # Every input is checked before anything is written (bad input changes nothing).
    if spec.provider.value not in PROVIDERS:
        raise InputError.field(spec.source, "provider", f"one of {sorted(PROVIDERS)}",
                               spec.provider.value,
                               hint="this version launches qemu and none; "
                                    "`launch render` renders the bundle for the others")
    settings = qemu_settings(spec.settings, spec.source) \
        if spec.provider.value == "qemu" else None
    options = {"accel": settings.accel, "subnet": spec.cidr} if settings else {}
    plan = plan_mod.build(spec, manifest_root=repo_root)
    names = [h.name for h in plan.hosts]
    for n in only:
        if n not in names:
            raise InputError.field(None, "--only", f"one of the plan's hosts {names}", n)
    wanted = [n for n in names if not only or n in only]
    edir = env_dir(build_dir, name)
    store = StateStore(edir)
    spec_sha = _sha256(spec_path)
    with store.lock():
        before = store.load()
        provider = _provider(spec.provider.value, name, edir, store, options)

        if before is not None:
            alive = {h.name for h in before.hosts.values() if _alive(provider, h)}
            if before.spec_sha256 and before.spec_sha256 != spec_sha and alive:
                raise InputError(
                    f"environment {name} runs from a different version of {spec_path} "
                    f"(hosts {sorted(alive)} are up)",
                    hint=f"`launch down {name}` first, then `launch up` again")
            if all(n in alive and before.hosts[n].phase is Phase.READY for n in wanted):
                log.info("%s: every host is up and ready; nothing to do", name)
                return UpResult(name, False, tuple(before.hosts[n] for n in wanted),
                                timings={"total": round(time.monotonic() - t0, 1)})

        keys = ssh.ensure_keypair(edir / "ssh", f"fabperf-{name}")
        if settings is not None:
            requests = host_requests(plan, settings, build_dir, repo_root, only)
        else:
            requests = [HostRequest(h.name, tuple(r.value for r in h.roles), h.image_id or "",
                                    address=h.address) for h in plan.hosts
                        if not only or h.name in only]
        nonce = before.nonce if before is not None and before.nonce else None
        if before is None:
            store.save(EnvState(environment=name, provider=spec.provider.value,
                                network={}))
        store.update(spec_path=str(Path(spec_path).resolve()), spec_sha256=spec_sha,
                     ssh_key=str(keys.private_key), ssh_user=ssh.ADMIN_USER)

        # Addresses before certificates: the plan's addresses are reserved first.
        t = time.monotonic()
        reserved = provider.reserve(requests)
        for r in requests:
            if r.address and reserved[r.name] != r.address:
                raise ExternalError(f"host {r.name}: the provider reserved {reserved[r.name]} "
                                    f"but the plan (and its certificates) use {r.address}")
        timings["reserve"] = round(time.monotonic() - t, 1)

        t = time.monotonic()
        bundle = bundle_mod.render(spec, edir / "bundle", nonce=nonce, manifest_root=repo_root)
        store.update(nonce=bundle.nonce)
        timings["render"] = round(time.monotonic() - t, 1)

        created: list[str] = []
        try:
            t = time.monotonic()
            for r in requests:
                current = store.load().hosts.get(r.name)  # type: ignore[union-attr]
                if current is not None and _alive(provider, current):
                    continue
                log.info("%s: creating %s (%s, %d MB, %d vCPU)", name, r.name,
                         ",".join(r.roles), r.memory_mb, r.cpus)
                created.append(r.name)
                provider.create(r, bundle.user_data[r.name].data)
            timings["create"] = round(time.monotonic() - t, 1)
            t = time.monotonic()
            log.info("%s: waiting for %s to be ready", name, ", ".join(wanted))
            reports = provider.wait_ready(wanted, bundle.nonce, timeouts)
            timings["wait_ready"] = round(time.monotonic() - t, 1)
        except BaseException:
            if keep_on_failure:
                log.warning("%s: keeping what failed (--keep-on-failure); "
                            "`launch down %s` removes it", name, name)
            else:
                _rollback(provider, before, created, name)
                if before is None or not before.hosts:
                    # nothing of the environment is left: its secrets go too
                    for sub in ("bundle", "ssh"):
                        shutil.rmtree(edir / sub, ignore_errors=True)
            raise
        state = store.load()
        assert state is not None
        timings["total"] = round(time.monotonic() - t0, 1)
        return UpResult(name, True, tuple(state.hosts[n] for n in wanted), tuple(reports),
                        timings, tuple(bundle.warnings))


def _alive(provider: Provider, host: HostState) -> bool:
    check = getattr(provider, "vm_alive", None)
    return bool(check(host)) if check is not None else host.phase is Phase.READY


def _rollback(provider: Provider, before: EnvState | None, created: Sequence[str],
              name: str) -> None:
    """Undo this `up`: everything when it started the environment, else its own hosts."""
    try:
        if before is None or not before.hosts:
            log.warning("%s: rolling back (removing the environment)", name)
            provider.destroy()
        elif created:
            log.warning("%s: rolling back hosts %s", name, ", ".join(created))
            destroy_hosts = getattr(provider, "destroy_hosts", None)
            if destroy_hosts is not None:
                destroy_hosts(created)
    except Exception as exc:  # the original error matters more; the state still lists all
        log.error("%s: rollback incomplete (%s); run `launch down %s`", name, exc, name)


# --- down / status ---------------------------------------------------------------------

@dataclass(frozen=True)
class DownResult:
    """What `launch down` removed."""

    environment: str
    report: DestroyReport
    known: bool


def _existing(arg: str, build_dir: Path) -> tuple[str, Path, StateStore, EnvState | None]:
    name, edir = resolve_env(arg, build_dir)
    store = StateStore(edir)
    return name, edir, store, store.load()


def down(arg: str, *, build_dir: Path) -> DownResult:
    """Remove everything of an environment; idempotent. An environment never seen: exit 2.

    A damaged state.json does not stop it: the provider's tag/process scan finds what runs,
    everything found is removed, and so is the damaged file."""
    name, edir = resolve_env(arg, build_dir)
    store = StateStore(edir)
    damaged = False
    try:
        state = store.load()
    except CorruptState as exc:
        log.warning("%s; removing what the provider's scan finds", exc.message)
        store, state, damaged = StateStore(edir, tolerate_damage=True), None, True
    provider_name = state.provider if state is not None else _recorded_provider(store)
    provider = _provider(provider_name, name, edir, store,
                         {"subnet": state.network.get("subnet", "10.77.0.0/24")}
                         if state is not None and state.network.get("subnet") else {})
    leaked: list[Leaked] = provider.find_leaked()
    if state is None and not leaked and not edir.exists():
        raise InputError(f"unknown environment {name!r}: nothing recorded in {edir} and no "
                         "running VM carries its tag")
    with store.lock():
        report = provider.destroy()
        if report.errors:
            raise ExternalError(f"environment {name}: could not remove everything:\n  "
                                + "\n  ".join(report.errors),
                                hint=f"the state file {store.path} still lists them")
        # Secrets of the environment go with it; logs stay for post-mortems.
        for sub in ("bundle", "ssh"):
            shutil.rmtree(edir / sub, ignore_errors=True)
        if damaged and store.path.exists():
            store.remove()
            report = replace(report, removed=(*report.removed, f"{store.path} (damaged)"))
    (edir / ".lock").unlink(missing_ok=True)
    return DownResult(name, report, state is not None or damaged)


def _recorded_provider(store: StateStore) -> str:
    """The provider a damaged state file still names (else qemu, the local default)."""
    import json
    import re

    try:
        text = store.path.read_text(encoding="utf-8", errors="replace")[:65536]
    except OSError:
        return "qemu"
    try:
        name = json.loads(text).get("provider")
    except (ValueError, AttributeError):
        m = re.search(r'"provider"\s*:\s*"([a-z]+)"', text)
        name = m.group(1) if m else None
    return name if isinstance(name, str) and name in PROVIDERS else "qemu"


@dataclass(frozen=True)
class HostStatus:
    """One row of `launch status`."""

    name: str
    address: str
    roles: tuple[str, ...]
    phase: str
    alive: bool
    pid: int | None
    ports: Mapping[str, int]
    error: str


def status(arg: str, *, build_dir: Path) -> tuple[EnvState, list[HostStatus]]:
    """The recorded state with a live check of every host; unknown environment: exit 2."""
    name, edir, store, state = _existing(arg, build_dir)
    if state is None:
        raise InputError(f"unknown environment {name!r}: no state in {edir}",
                         hint="`launch up ENV.yaml` creates it")
    provider = _provider(state.provider, name, edir, store, {})
    rows = [HostStatus(h.name, h.address, h.roles, h.phase.value, _alive(provider, h), h.pid,
                       dict(h.ports), h.error.splitlines()[0] if h.error else "")
            for h in sorted(state.hosts.values(), key=_address_key)]
    return state, rows


def _address_key(h: HostState) -> tuple[int, str]:
    try:
        return int(ipaddress.ip_address(h.address)), h.name
    except ValueError:
        return 0, h.name


def target(arg: str, host: str, *, build_dir: Path) -> ssh.Target:
    """Where `launch ssh ENV HOST` connects."""
    name, edir, _, state = _existing(arg, build_dir)
    if state is None:
        raise InputError(f"unknown environment {name!r}: no state in {edir}")
    h = state.hosts.get(host)
    if h is None:
        raise InputError.field(None, "HOST", f"one of {sorted(state.hosts)}", host)
    if "ssh" not in h.ports:
        raise InputError(f"host {host} of {name} has no SSH port recorded (phase {h.phase})")
    return _provider(state.provider, name, edir, StateStore(edir), {}).target(h)
