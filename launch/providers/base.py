"""The provider interface: reserve addresses, create hosts, wait until ready, destroy, find leaks.

A provider instance serves one environment. It records every resource in the
environment's StateStore the moment the resource exists and tags it with the environment
id, so `destroy` can remove what the state lists plus whatever `find_leaked` turns up.
Providers are registered by name in PROVIDERS; cloud SDKs are imported inside their module.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bake.errors import InputError
from launch.ready import HostReadiness, Timeouts
from launch.ssh import Target
from launch.state import HostState, StateStore


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


@dataclass(frozen=True)
class Leaked:
    """A resource tagged with the environment that the state file does not list."""

    kind: str          # "vm", "switch", ...
    ident: str         # pid, instance id...
    detail: str = ""


@dataclass(frozen=True)
class DestroyReport:
    """What `destroy` removed."""

    removed: tuple[str, ...] = ()
    leaked_found: tuple[Leaked, ...] = ()
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProviderContext:
    """What every provider is built with."""

    environment: str
    env_dir: Path                           # build/environments/<env>
    store: StateStore
    options: Mapping[str, object] = field(default_factory=dict)   # provider-specific


class Provider(Protocol):
    """What `launch` needs from a place to run hosts."""

    name: str

    def reserve(self, hosts: Sequence[HostRequest]) -> dict[str, str]:
        """Choose (and hold) each host's private address before certificates are made."""
        ...

    def create(self, host: HostRequest, user_data: bytes) -> None:
        """Start one host with its user-data; a host already running is left alone."""
        ...

    def wait_ready(self, hosts: Sequence[str], nonce: str,
                   timeouts: Timeouts | None = None) -> list[HostReadiness]:
        """Block until every host passes every readiness layer (raises NotReady)."""
        ...

    def destroy(self) -> DestroyReport:
        """Remove every resource of the environment (state-listed and leaked); idempotent."""
        ...

    def find_leaked(self) -> list[Leaked]:
        """Resources tagged with this environment that the state file does not list."""
        ...

    def target(self, host: HostState) -> Target:
        """Where the operator's machine reaches this host's sshd."""
        ...


# name -> "module:Class"; imported lazily so boto3/openstacksdk load only when used
PROVIDERS: dict[str, str] = {
    "qemu": "launch.providers.qemu:QemuProvider",
    "none": "launch.providers.none:NoneProvider",
}


def get_provider(name: str, ctx: ProviderContext) -> Provider:
    """Instantiate the provider registered under ``name``."""
    try:
        target = PROVIDERS[name]
    except KeyError:
        raise InputError.field(None, "provider", f"one of {sorted(PROVIDERS)}", name) from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)(ctx)
