"""Provider `none`: hosts you already have. Addresses come from the spec; nothing is created.

`launch up` with this provider renders the bundle (nodes/<host>/user-data is what you feed
your machines) and records the hosts as ready (they are yours and already run), so a second
`up` changes nothing; creating and destroying are no-ops. It has no settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from fabkit.errors import InputError
from launch.machines import ssh
from launch.machines.providers.base import (
    DestroyReport,
    HostRequest,
    Leaked,
    ProviderContext,
    plan_hosts,
)
from launch.machines.ready import HostReadiness, Timeouts
from launch.machines.state import EnvState, HostState, Phase


class NoneProvider:
    """Render-only provider (see the module docstring)."""

    name = "none"
    SETTINGS = ()
    max_parallel = 1
    follows_hosts = False   # the machines are yours: the bootstrap runs when you apply the bundle

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self.store = ctx.store

    def host_requests(self, plan: object, only: Sequence[str] = ()) -> list[HostRequest]:
        """The plan's hosts as they are (no image, no size: the machines exist)."""
        return [HostRequest(h.name, tuple(r.value for r in h.roles), h.image_id or "",
                            address=h.address) for h in plan_hosts(plan, only)]

    def reserve(self, hosts: Sequence[HostRequest]) -> dict[str, str]:
        """The spec's own addresses (required for existing hosts), recorded in the state."""
        if self.store.load() is None:
            self.store.save(EnvState(environment=self.ctx.environment, provider=self.name))
        out = {}
        for h in hosts:
            if not h.address:
                raise InputError.field(None, f"placement.hosts.{h.name}.address",
                                       "an address (provider none hosts already exist)", None)
            self.store.update_host(h.name, address=h.address, roles=h.roles,
                                   phase=Phase.RESERVED)
            out[h.name] = h.address
        return out

    def create(self, host: HostRequest, user_data: bytes) -> None:
        """Nothing to create: the bundle's user-data is for you to apply."""

    def wait_running(self, hosts: Sequence[str]) -> None:
        """Your machines run already."""
        for h in hosts:
            self.store.update_host(h, phase=Phase.RUNNING)

    def wait_ready(self, hosts: Sequence[str], nonce: str,
                   timeouts: Timeouts | None = None) -> list[HostReadiness]:
        """Nothing to wait for: the hosts are recorded as ready (applying the bundle is yours)."""
        for h in hosts:
            self.store.update_host(h, phase=Phase.READY)
        return [HostReadiness(h) for h in hosts]

    def alive(self, host: HostState) -> bool:
        """A recorded host is taken as running."""
        return host.phase in (Phase.RUNNING, Phase.READY)

    def destroy_hosts(self, names: Sequence[str]) -> DestroyReport:
        """Forget some hosts."""
        state = self.store.load()
        if state is None:
            return DestroyReport()
        self.store.save(replace(state, hosts={k: v for k, v in state.hosts.items()
                                              if k not in names}))
        return DestroyReport(tuple(f"host {n} (forgotten)" for n in names))

    def destroy(self) -> DestroyReport:
        """Forget the environment (the hosts are yours)."""
        removed = ()
        if self.store.exists():
            self.store.remove()
            removed = (str(self.store.path),)
        return DestroyReport(removed)

    def find_leaked(self) -> list[Leaked]:
        """Nothing is created, so nothing leaks."""
        return []

    def target(self, host: HostState) -> ssh.Target:
        """The host's own address, port 22."""
        state = self.store.load()
        user = state.ssh_user if state else ssh.ADMIN_USER
        key = Path(state.ssh_key) if state and state.ssh_key else Path("~/.ssh/id_ed25519")
        return ssh.Target(host.name, host.address, 22, user, key.expanduser())
