"""The provider interface: settings, image lookup, reserve, create, wait, destroy, find leaks.

A provider instance serves one environment. It declares its `settings:` as a table of
fabkit.inputs.Rule (SETTINGS; `launch render` and `launch up` both check them), turns the plan
into HostRequests (sizes, the artifact each host boots: `host_requests`), records every
resource in the environment's StateStore the moment the resource exists and tags it with
the environment, so `destroy` can remove what the state lists plus whatever `find_leaked`
turns up. Providers are registered by name in PROVIDERS; cloud SDKs are imported inside
their module, lazily.

Two optional methods (the clouds have them; `up` and `down` look for them, never at a
provider's name): `where()`, where the provider makes its machines for the user to read
("aws eu-west-1"), and `addresses_in_use()`, the addresses something else holds in the
environment's network, which the plan then leaves out.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from bake import build, manifest, profiles
from fabkit import inputs
from fabkit.errors import ExternalError, InputError
from launch.machines import ready
from launch.machines.ready import HostReadiness, Probe, Timeouts
from launch.machines.ssh import Target
from launch.machines.state import EnvState, HostState, Phase, StateStore
from launch.render.plan import Host, Plan
from launch.spec.contract import PORTS, Role

log = logging.getLogger("fabperf.providers")


@dataclass(frozen=True)
class HostRequest:
    """One host the environment wants, as the provider needs it."""

    name: str
    roles: tuple[str, ...]
    image: str                              # provider artifact: qcow2 path, AMI id, Glance id
    memory_mb: int = 2048
    cpus: int = 2
    disk_gb: int | None = None              # None: the image's size
    service_ports: tuple[int, ...] = ()     # guest TCP ports the operator's machine must reach
    address: str | None = None              # a fixed address from the spec, else reserved
    size: str = ""                          # cloud instance type / flavor
    host_cpus: tuple[int, ...] = ()         # qemu: the host cores its QEMU runs on (): any


@dataclass(frozen=True)
class Leaked:
    """A resource tagged with the environment that the state file does not list."""

    kind: str          # "vm", "switch", "instance", "eni", ...
    ident: str         # pid, instance id...
    detail: str = ""


@dataclass(frozen=True)
class DestroyReport:
    """What `destroy` removed."""

    removed: tuple[str, ...] = ()
    leaked_found: tuple[Leaked, ...] = ()
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Garbage:
    """A fabperf resource `launch gc` removes: its environment is gone or its TTL passed."""

    provider: str
    kind: str
    ident: str
    environment: str
    reason: str        # "environment gone" / "TTL passed"
    age_hours: float = 0.0


@dataclass(frozen=True)
class ProviderContext:
    """What every provider is built with."""

    environment: str
    env_dir: Path                           # build/environments/<env>
    store: StateStore
    options: Mapping[str, Any] = field(default_factory=dict)   # the checked settings
    cidr: str | None = None                 # the spec's network.cidr
    build_dir: Path | None = None
    repo_root: Path | None = None


class Provider(Protocol):
    """What `launch` needs from a place to run hosts."""

    name: str
    SETTINGS: ClassVar[tuple[inputs.Rule, ...]]
    max_parallel: int                       # creates at once (`up` honours it)
    # True when `up` can follow the hosts itself (SSH for readiness and the channel
    # bootstrap); `none` renders for machines fabperf does not run, and cannot.
    follows_hosts: bool

    def host_requests(self, plan: Plan, only: Sequence[str] = ()) -> list[HostRequest]:
        """Size each host of the plan and find the artifact it boots (InputError when an
        image is not baked); called before anything is written."""
        ...

    def reserve(self, hosts: Sequence[HostRequest]) -> dict[str, str]:
        """Choose (and hold) each host's private address before certificates are made."""
        ...

    def create(self, host: HostRequest, user_data: bytes) -> None:
        """Start one host with its user-data; a host already running is left alone."""
        ...

    def wait_running(self, hosts: Sequence[str]) -> None:
        """Block until every host's machine runs (not that it booted)."""
        ...

    def wait_ready(self, hosts: Sequence[str], nonce: str,
                   timeouts: Timeouts | None = None) -> list[HostReadiness]:
        """Block until every host passes every readiness layer (raises NotReady)."""
        ...

    def alive(self, host: HostState) -> bool:
        """Whether the host's machine exists and runs."""
        ...

    def destroy(self) -> DestroyReport:
        """Remove every resource of the environment (state-listed and leaked); idempotent."""
        ...

    def destroy_hosts(self, names: Sequence[str]) -> DestroyReport:
        """Remove some hosts and forget them (rollback of a partial `up`)."""
        ...

    def find_leaked(self) -> list[Leaked]:
        """Resources tagged with this environment that the state file does not list."""
        ...

    def target(self, host: HostState) -> Target:
        """Where the operator's machine reaches this host's sshd."""
        ...


# Guest ports each role's hosts must be reachable on (qemu forwards these to 127.0.0.1;
# the clouds check, before creating anything, that the user's security groups open them
# and SSH from network.cidr: they manage no group of their own).
ROLE_PORTS: Mapping[Role, tuple[int, ...]] = {
    Role.PEER: (PORTS["peer"], PORTS["peer_operations"], PORTS["node_exporter"],
                PORTS["process_exporter"]),
    Role.ORDERER: (PORTS["orderer"], PORTS["orderer_admin"], PORTS["orderer_operations"],
                   PORTS["node_exporter"], PORTS["process_exporter"]),
    Role.CALIPER: (PORTS["node_exporter"], PORTS["process_exporter"], PORTS["caliper_scrape"]),
    Role.MONITOR: (PORTS["prometheus"], PORTS["pushgateway"], PORTS["grafana"], PORTS["mqtt"],
                   PORTS["node_exporter"]),
}


def plan_hosts(plan: Plan, only: Sequence[str] = ()) -> list[Host]:
    """The plan's hosts, or the subset ``only`` names (each must be one of them)."""
    names = [h.name for h in plan.hosts]
    for n in only:
        if n not in names:
            raise InputError.field(None, "--only", f"one of the plan's hosts {names}", n)
    return [h for h in plan.hosts if not only or h.name in only]


def manifest_artifact(image: str, provider: str, key: str, build_dir: Path | None) -> str | None:
    """The artifact id bake recorded for ``image`` on ``provider`` (None: not baked here)."""
    if build_dir is None:
        return None

    entry = manifest.load(build_dir).get(image, {}).get(provider)
    value = entry.artifact.get(key) if entry is not None else None
    return str(value) if value else None


# name -> "module:Class"; imported lazily so boto3/openstacksdk load only when used
PROVIDERS: dict[str, str] = {
    "qemu": "launch.machines.providers.qemu:QemuProvider",
    "aws": "launch.machines.providers.aws:AwsProvider",
    "openstack": "launch.machines.providers.openstack:OpenStackProvider",
    "nspawn": "launch.machines.providers.nspawn:NspawnProvider",
    "none": "launch.machines.providers.none:NoneProvider",
}


def provider_class(name: str, source: str | Path | None = None) -> Any:
    """The class registered under ``name`` (its module imports no SDK at import time)."""
    try:
        target = PROVIDERS[name]
    except KeyError:
        raise InputError.field(source, "provider", f"one of {sorted(PROVIDERS)}",
                               name) from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


def check_settings(provider: str, settings: Mapping[str, Any] | None,
                   source: str | Path | None) -> dict[str, Any]:
    """The spec's `settings:` checked against the provider's table (defaults filled in)."""
    rules = provider_class(provider, source).SETTINGS
    return inputs.check_fields(settings or {}, rules, source=source, path="settings")


def check_region(value: str, option: str = "--region") -> str:
    """A region given on the command line, checked by the rule of every provider that has
    a `region` setting (InputError naming ``option``)."""
    for name in PROVIDERS:
        for rule in provider_class(name).SETTINGS:
            if rule.name == "region":
                inputs.check_value(value, rule, source=None, path=option)
    return value


def get_provider(name: str, ctx: ProviderContext) -> Provider:
    """Instantiate the provider registered under ``name``."""
    return provider_class(name)(ctx)


def wait_recorded(store: StateStore, probes: Sequence[Probe], nonce: str,
                  timeouts: Timeouts | None) -> list[HostReadiness]:
    """ready.wait_all over the probes; each host's phase (ready, or failed with the error)
    recorded in the state."""
    try:
        reports = ready.wait_all(probes, nonce, timeouts)
    except Exception as exc:
        message = getattr(exc, "message", str(exc))
        state = store.load()
        for p in probes:
            cur = state.hosts.get(p.host) if state is not None else None
            if cur is not None and cur.phase != Phase.READY:
                store.update_host(p.host, phase=Phase.FAILED, error=message[:2000])
        raise
    for p in probes:
        store.update_host(p.host, phase=Phase.READY, error="")
    return reports


def bake_fingerprint(ctx: ProviderContext, provider: str, image: str) -> str | None:
    """The fingerprint `bake build --provider P` gives ``image`` in this checkout (None when
    it cannot be computed here): how a cloud provider finds an image baked elsewhere."""
    if ctx.repo_root is None or ctx.build_dir is None:
        return None

    try:
        targets = build.plan(ctx.repo_root, ctx.build_dir, profiles.Provider(provider), [image],
                             profiles.make_overrides(None, ()))
    except InputError as exc:
        log.debug("no fingerprint for %s: %s", image, exc)
        return None
    return str(targets[0].fingerprint.digest)


def cloud_target(state: EnvState, host: HostState, settings: Mapping[str, Any],
                 public: str) -> Target:
    """SSH to a cloud host: its private address (from inside the network), its public one
    (settings readiness == ``public``), or the private one through settings ssh_jump."""
    how = settings.get("readiness", "private")
    address = host.resources.get("public_ip", "") if how == public else host.address
    if not address:
        raise ExternalError(f"host {host.name} has no public address "
                            f"(readiness: {public} needs one; or readiness: private/jump)")
    jump = str(settings.get("ssh_jump") or "") if how == "jump" else ""
    return Target(host.name, address, 22, state.ssh_user,
                  Path(state.ssh_key or "~/.ssh/id_ed25519").expanduser(), jump)


def env_id(env_dir: Path) -> str:
    """A short id of the environment directory: two checkouts may use the same env name."""
    return hashlib.sha256(str(env_dir.resolve()).encode()).hexdigest()[:8]


def parallel(fn: Callable[[Any], None], items: Sequence[Any], width: int) -> None:
    """fn(item) for every item, at most ``width`` at once.

    On the first failure (or Ctrl-C) nothing new starts, the calls already running
    finish (so each records what it made), then the error is raised.
    """
    width = max(1, min(width, len(items) or 1))
    if width == 1:
        for item in items:
            fn(item)
        return
    pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="provider")
    try:
        futures: list[Future[None]] = [pool.submit(fn, item) for item in items]
        wait(futures, return_when=FIRST_EXCEPTION)
        for f in futures:
            exc = f.exception() if f.done() and not f.cancelled() else None
            if exc is not None:
                raise exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def create_all(provider: Provider, items: Sequence[tuple[HostRequest, bytes]],
               on_start: Callable[[HostRequest], None] = lambda r: None) -> None:
    """provider.create for every item, at most provider.max_parallel at once (see parallel)."""
    def one(item: tuple[HostRequest, bytes]) -> None:
        on_start(item[0])
        provider.create(*item)

    parallel(one, items, int(getattr(provider, "max_parallel", 1)))
