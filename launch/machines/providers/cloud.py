"""What the cloud providers (aws, openstack) share: the settings an environment was made
with (recorded in its state, so `down` and `status` need no spec), the fan-out of address
reservation, readiness over SSH with the console in the error, destroy = what the state
lists plus what the tags find, and how `launch gc` decides a resource is garbage.

A subclass provides the cloud calls: _reserve_one, create, alive, wait_running, console,
find_leaked, _remove(state, leaked) and _remove_hosts(names).
"""

from __future__ import annotations

import datetime as _dt
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from fabkit.errors import InputError
from launch.machines import ssh
from launch.machines.providers.base import (
    ROLE_PORTS,
    DestroyReport,
    Garbage,
    HostRequest,
    Leaked,
    ProviderContext,
    cloud_target,
    env_id,
    parallel,
    wait_recorded,
)
from launch.machines.ready import HostReadiness, Probe, Timeouts
from launch.machines.state import EnvState, HostState
from launch.spec.contract import Role


class CloudProvider:
    """The shared half of a cloud provider (see the module docstring)."""

    name: ClassVar[str]
    PUBLIC: ClassVar[str]                  # the settings.readiness value for a public address
    DEFAULT_PARALLEL: ClassVar[int]
    follows_hosts: ClassVar[bool] = True   # readiness and the bootstrap over SSH
    # private addresses are the cloud network's, as the instances see it; from the
    # operator's machine they are some other network (the BYOF preflight does not dial them)
    VM_SIDE_NETWORKS: ClassVar[tuple[tuple[str, str], ...]] = tuple(
        (net, "a private address: the cloud network's, as the instances see it")
        for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"))

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self.env = ctx.environment
        self.store = ctx.store
        self.eid = env_id(ctx.env_dir)
        state = self.store.load()
        recorded = dict(state.network.get("settings", {})) if state is not None else {}
        # down/status of an existing environment: the settings it was made with
        self.settings: dict[str, Any] = {**recorded, **dict(ctx.options)}
        self.max_parallel = int(self.settings.get("max_parallel", self.DEFAULT_PARALLEL))
        self.ttl = float(self.settings.get("ttl_hours", 24))
        self.poll = float(self.settings.get("poll_seconds", 5))
        self._lock = threading.RLock()

    def _state(self) -> EnvState:
        """The state, created (with the settings it is made with) on first use."""
        state = self.store.load()
        if state is None:
            state = self.store.save(EnvState(environment=self.env, provider=self.name))
        if "settings" not in state.network:
            state = self.store.update(network={**state.network, "env_id": self.eid,
                                               "subnet": self.ctx.cidr or "",
                                               "settings": dict(self.settings)})
        return state

    # --- reserve / ready -----------------------------------------------------------------
    def _reserve_one(self, req: HostRequest) -> None:
        raise NotImplementedError

    def _before_reserve(self) -> None:
        """Anything the per-host reservations need first (the network lookup)."""

    def reserve(self, hosts: Sequence[HostRequest]) -> dict[str, str]:
        """One address per host at its planned address, max_parallel at once."""
        self._state()
        self._before_reserve()
        parallel(self._reserve_one, hosts, self.max_parallel)
        state = self._state()
        return {h.name: state.hosts[h.name].address for h in hosts}

    def alive(self, host: HostState) -> bool:
        raise NotImplementedError

    def wait_running(self, hosts: Sequence[str]) -> None:
        raise NotImplementedError

    def console(self, host: str, lines: int) -> str:
        raise NotImplementedError

    def _after_ready(self, hosts: Sequence[str]) -> None:
        """What is not needed once the hosts are ready."""

    def target(self, host: HostState) -> ssh.Target:
        """Private address, the public one (readiness == PUBLIC), or through ssh_jump."""
        return cloud_target(self._state(), host, self.settings, self.PUBLIC)

    def wait_ready(self, hosts: Sequence[str], nonce: str,
                   timeouts: Timeouts | None = None) -> list[HostReadiness]:
        """Running, then every readiness layer over SSH (the console in the error)."""
        self.wait_running(hosts)

        def probe(name: str) -> Probe:
            def run(cmd: str, timeout: float) -> Any:
                return ssh.run(self.target(self._state().hosts[name]), cmd, timeout=timeout,
                               log_path=self.ctx.env_dir / "logs" / f"{name}.ready.log")
            return Probe(name, alive=lambda: self.alive(self._state().hosts[name]), ssh=run,
                         console_tail=lambda n: self.console(name, n))

        reports = wait_recorded(self.store, [probe(h) for h in hosts], nonce, timeouts)
        self._after_ready(hosts)
        return reports

    # --- destroy -------------------------------------------------------------------------
    def find_leaked(self) -> list[Leaked]:
        raise NotImplementedError

    def _remove(self, state: EnvState | None,
                leaked: Sequence[Leaked]) -> tuple[list[str], list[str]]:
        raise NotImplementedError

    def _remove_hosts(self, state: EnvState, names: Sequence[str]) -> tuple[list[str], list[str]]:
        raise NotImplementedError

    def known_ids(self, state: EnvState | None) -> set[str]:
        """Every cloud id the state lists."""
        return {v for h in (state.hosts.values() if state else ()) for v in h.resources.values()}

    def listed(self, state: EnvState | None, kind: str) -> set[str]:
        """The ids of one kind ("instance", "port"...) the state lists."""
        return {h.resources[kind] for h in (state.hosts.values() if state else ())
                if h.resources.get(kind)}

    def destroy(self) -> DestroyReport:
        """Everything the state lists plus what the tags find; the state goes last."""
        state = self.store.load()
        leaked = self.find_leaked()
        removed, errors = self._remove(state, leaked)
        if errors:
            return DestroyReport(tuple(removed), tuple(leaked), tuple(errors))
        if state is not None:
            self.store.remove()
            removed.append(str(self.store.path))
        return DestroyReport(tuple(removed), tuple(leaked), ())

    def destroy_hosts(self, names: Sequence[str]) -> DestroyReport:
        """Remove some hosts (rollback of a partial `up`) and forget them."""
        state = self.store.load()
        if state is None:
            return DestroyReport()
        removed, errors = self._remove_hosts(state, names)
        if not errors:
            cur = self.store.load()
            if cur is not None:
                self.store.save(replace(cur, hosts={k: v for k, v in cur.hosts.items()
                                                    if k not in names}))
        return DestroyReport(tuple(removed), (), tuple(errors))


def require_open_ports(provider: str, field: str, groups: Sequence[str], roles: Iterable[Role],
                       cidr: str, allows: Callable[[int], bool]) -> None:
    """The security groups (`field` of settings) must let `cidr` reach SSH and every role
    port (`allows(port)`, read from the provider's own rule format): an InputError naming
    the missing ports otherwise, before anything is created."""
    need = sorted({22, *(p for r in roles for p in ROLE_PORTS.get(r, ()))})
    missing = [p for p in need if not allows(p)]
    if missing:
        raise InputError(
            f"settings.{field} {list(groups)}: TCP {', '.join(map(str, missing))} not open "
            f"from network.cidr {cidr} (the hosts reach each other and the readiness check "
            f"reaches SSH on these ports)",
            hint="add an ingress rule from the subnet's range (or from the group itself) for "
                 f"these ports; README, provider {provider}, lists them")


def garbage(provider: str, kind: str, ident: str, *, environment: str, env: str,
            created: str, ttl: str, live: Callable[[str, str], bool], older_than_hours: float,
            now: _dt.datetime) -> Garbage | None:
    """A tagged resource as `launch gc` sees it: garbage when its environment is gone or its
    TTL passed (and it is older than ``older_than_hours``); None otherwise or when untagged."""
    if not environment or not env:
        return None
    try:
        born = _dt.datetime.fromisoformat(created)
        hours = float(ttl or 24)
    except ValueError:
        born, hours = now, 24.0
    age = (now - born).total_seconds() / 3600
    if age < older_than_hours:
        return None
    if not live(environment, env):
        reason = "environment gone"
    elif age > hours:
        reason = "TTL passed"
    else:
        return None
    return Garbage(provider, kind, ident, environment, reason, round(age, 2))

