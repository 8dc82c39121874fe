"""The plan: which host runs which Fabric node / role, at which address, from which image.

Addresses come before certificates: every host gets a fixed private address here (in order
from the spec's CIDR, or the explicit one for provider `none`), and the providers reserve
exactly these (EC2 ENIs, Neutron ports, the QEMU private network). Pure function of the spec
plus the image manifest.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bake import manifest as bake_manifest
from bake.providers import baker
from fabkit.errors import InputError
from launch.spec.byof import ByofSpec, Gateway, Spec
from launch.spec.common import SpecBase, SpecKind
from launch.spec.contract import PORTS, Role
from launch.spec.env import EnvSpec
from launch.spec.providers import Provider

HOST_DOMAIN = "fabperf.internal"  # <host>.<env>.fabperf.internal: the VM's own FQDN


@dataclass(frozen=True)
class FabricNode:
    """One peer or orderer: its identity names and where it runs."""

    role: Role
    org: str          # organisation name (the orderer organisation for orderers)
    msp_id: str
    domain: str
    index: int
    host: str         # the host (VM) it runs on
    address: str      # that host's address

    @property
    def short(self) -> str:
        return f"{self.role.value}{self.index}"

    @property
    def fqdn(self) -> str:
        return f"{self.short}.{self.domain}"

    @property
    def port(self) -> int:
        return PORTS["peer"] if self.role is Role.PEER else PORTS["orderer"]

    @property
    def endpoint(self) -> str:
        return f"{self.fqdn}:{self.port}"

    @property
    def operations_port(self) -> int:
        return PORTS["peer_operations"] if self.role is Role.PEER else PORTS["orderer_operations"]


@dataclass(frozen=True)
class CaliperWorker:
    """A Caliper worker VM and the gateway peer / identity its network config uses
    (a peer fabperf launched, or one of a BYOF spec's gateways)."""

    index: int
    host: str
    address: str
    processes: int          # started at boot (the spec's count; 1 for `auto`)
    gateway: FabricNode | Gateway
    user: str  # "User3" or "Admin" when the organisation has no users; BYOF: identity name
    auto: bool = False      # processes: auto (launch bench starts about 1.5 per vCPU)


@dataclass(frozen=True)
class Host:
    """A VM (or an existing machine for provider none)."""

    name: str
    fqdn: str
    address: str
    roles: tuple[Role, ...]
    image: str | None      # image name (fabric-node, ...); None for provider none
    image_id: str | None   # provider artifact id; None when not built / not given


@dataclass(frozen=True)
class Plan:
    """Everything the renderers need to know about the topology."""

    spec: Spec
    hosts: tuple[Host, ...]
    peers: tuple[FabricNode, ...]      # BYOF: none (the user's peers are not fabperf's hosts)
    orderers: tuple[FabricNode, ...]
    workers: tuple[CaliperWorker, ...]
    monitor: Host
    bootstrap: Host | None  # the one node that runs the channel bootstrap job; BYOF: None
    warnings: tuple[str, ...]

    @property
    def env(self) -> EnvSpec:
        """The spec of an environment plan: what the renderers of fabperf's own Fabric
        network (crypto, configtx, node settings) read; a BYOF plan has none."""
        if not isinstance(self.spec, EnvSpec):
            raise TypeError(f"{self.spec.name}: a {self.kind} plan has no Fabric network "
                            "of fabperf's")
        return self.spec

    @property
    def kind(self) -> SpecKind:
        """What the spec describes: fabperf launches Fabric, or Fabric is the user's."""
        return self.spec.kind

    # Per-host lookups through indexes built once: render asks them for every host, and a
    # scan per question would make rendering quadratic in the number of hosts.
    @functools.cached_property
    def _by_host(self) -> dict[str, tuple[Host | None, list[FabricNode],
                                          CaliperWorker | None]]:
        index: dict[str, tuple[Host | None, list[FabricNode], CaliperWorker | None]] = {
            h.name: (h, [], None) for h in self.hosts}
        for n in (*self.orderers, *self.peers):
            index.setdefault(n.host, (None, [], None))[1].append(n)
        for w in self.workers:
            h, nodes, _ = index.get(w.host, (None, [], None))
            index[w.host] = (h, nodes, w)
        return index

    def host(self, name: str) -> Host:
        """The host called `name`."""
        h = self._by_host.get(name, (None,))[0]
        if h is None:
            raise KeyError(name)
        return h

    def nodes_on(self, host: str) -> tuple[FabricNode, ...]:
        """The Fabric nodes a host runs (at most one peer and one orderer)."""
        return tuple(self._by_host.get(host, (None, [], None))[1])

    def peer_on(self, host: str) -> FabricNode | None:
        return next((n for n in self.nodes_on(host) if n.role is Role.PEER), None)

    def orderer_on(self, host: str) -> FabricNode | None:
        return next((n for n in self.nodes_on(host) if n.role is Role.ORDERER), None)

    def worker_on(self, host: str) -> CaliperWorker | None:
        return self._by_host.get(host, (None, [], None))[2]

    def to_json(self) -> dict[str, Any]:
        """plan.json: hosts, roles, addresses, image ids (no secrets)."""
        return {
            "environment": self.spec.name,
            "kind": self.kind.value,
            "provider": self.spec.provider.value,
            "network": {"cidr": self.spec.cidr},
            "fabric_version": self.spec.fabric.version,
            "bootstrap_host": self.bootstrap.name if self.bootstrap else None,
            "monitor_host": self.monitor.name,
            "hosts": [
                {
                    "name": h.name,
                    "fqdn": h.fqdn,
                    "address": h.address,
                    "roles": [r.value for r in h.roles],
                    "image": h.image,
                    "image_id": h.image_id,
                    "nodes": [n.fqdn for n in self.nodes_on(h.name)],
                }
                for h in self.hosts
            ],
            "caliper_workers": [
                {"host": w.host, "processes": w.processes, "gateway": w.gateway.endpoint,
                 "msp_id": w.gateway.msp_id, "user": w.user}
                for w in self.workers
            ],
            "warnings": list(self.warnings),
        }


def _label(text: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", text.lower()).strip("-")


def manifest_ids(path: Path, provider: Provider) -> dict[str, str]:
    """Image name -> artifact id for `provider` from bake's build/manifest.json (if any): the
    artifact field of the bake provider whose images it boots (bake.providers: the qcow2
    path on qemu, the AMI id on aws, the Glance image id on openstack)."""
    bakes = provider.bakes_with()
    if bakes is None:
        return {}
    if path.name != bake_manifest.FILE_NAME:
        raise InputError.field(None, "manifest", f"a path to bake's {bake_manifest.FILE_NAME}",
                               str(path))
    key = baker(bakes).artifact_key
    ids: dict[str, str] = {}
    for image, per_provider in bake_manifest.load(path.parent).items():
        entry = per_provider.get(bakes)
        value = entry.artifact.get(key) if entry is not None else None
        if value:
            ids[image] = value
    return ids


def _slots(spec: EnvSpec) -> list[tuple[str, tuple[Role, ...], str | None, str | None]]:
    """(name, roles, explicit address, explicit image) per host, in plan order."""
    if spec.placement is not None:
        return [(h.name, h.roles, h.address, h.image) for h in spec.placement]
    slots: list[tuple[str, tuple[Role, ...], str | None, str | None]] = [
        (f"orderer{i}", (Role.ORDERER,), None, None) for i in range(spec.orderers.count)]
    seen: dict[str, str] = {}
    for org in spec.organisations:
        label = _label(org.name)
        if label in seen:
            raise InputError.field(spec.source, "organisations", "names that give distinct "
                                   f"host names ({seen[label]} and {org.name} both give {label})",
                                   org.name)
        seen[label] = org.name
        slots += [(f"peer{i}-{label}", (Role.PEER,), None, None) for i in range(org.peers)]
    slots += [(f"caliper{i}", (Role.CALIPER,), None, None) for i in range(spec.caliper.vms)]
    slots.append(("monitor", (Role.MONITOR,), None, None))
    return slots


def _addresses(spec: SpecBase, explicit: list[str | None]) -> list[str]:
    """Explicit addresses as given; the rest in order from cidr + first_host, skipping those
    and the ones something else holds in the network (spec.avoid_addresses)."""
    net = ipaddress.IPv4Network(spec.cidr)
    taken = {a for a in explicit if a is not None} | set(spec.avoid_addresses)
    out: list[str] = []
    offset = spec.first_host
    for address in explicit:
        if address is not None:
            out.append(address)
            continue
        while str(net.network_address + offset) in taken:
            offset += 1
        if offset >= net.num_addresses - 1:
            raise InputError.field(spec.source, "network.cidr", f"a network with room for "
                                   f"{len(explicit)} hosts from offset {spec.first_host}",
                                   spec.cidr)
        out.append(str(net.network_address + offset))
        offset += 1
    return out


def build(spec: Spec, *, manifest_root: Path | None = None) -> Plan:
    """Place every node on a host, give every host an address and an image: the one
    dispatch on the spec's kind (build_environment, build_byof)."""
    if isinstance(spec, ByofSpec):
        return build_byof(spec, manifest_root=manifest_root)
    return build_environment(spec, manifest_root=manifest_root)


def build_environment(spec: EnvSpec, *, manifest_root: Path | None = None) -> Plan:
    """An environment's plan: every Fabric node, worker and the monitor on its host."""
    slots = _slots(spec)
    warnings: list[str] = []
    hosts = _hosts(spec, slots, manifest_root, warnings)

    def carrying(role: Role) -> list[Host]:
        return [h for h in hosts if role in h.roles]

    o = spec.orderers
    orderers = tuple(
        FabricNode(Role.ORDERER, o.org, o.msp_id, o.domain, i, h.name, h.address)
        for i, h in enumerate(carrying(Role.ORDERER))
    )
    peer_hosts = iter(carrying(Role.PEER))
    peers: list[FabricNode] = []
    for org in spec.organisations:
        for i in range(org.peers):
            h = next(peer_hosts)
            peers.append(FabricNode(Role.PEER, org.name, org.msp_id, org.domain, i, h.name,
                                    h.address))
    # Gateways round robin across organisations first (peer0 of every org, then peer1...),
    # so a small number of worker VMs still spreads over all organisations.
    # (a sort, not a scan of every peer per slot: planning stays linear at the bounds)
    org_order = {org.name: k for k, org in enumerate(spec.organisations)}
    rotation = sorted(peers, key=lambda p: (p.index, org_order[p.org]))
    workers = []
    for i, h in enumerate(carrying(Role.CALIPER)):
        gateway = rotation[i % len(rotation)]
        users = spec.org(gateway.org).users
        turn = i // len(rotation)
        workers.append(CaliperWorker(
            index=i, host=h.name, address=h.address, processes=spec.caliper.boot_processes,
            gateway=gateway, user=f"User{turn % users + 1}" if users else "Admin",
            auto=spec.caliper.processes is None))
    return Plan(
        spec=spec,
        hosts=tuple(hosts),
        peers=tuple(peers),
        orderers=orderers,
        workers=tuple(workers),
        monitor=carrying(Role.MONITOR)[0],
        bootstrap=next(h for h in hosts if h.name == peers[0].host),
        warnings=tuple(warnings),
    )


def _hosts(spec: Spec, slots: list[tuple[str, tuple[Role, ...], str | None,
                                                        str | None]],
           manifest_root: Path | None, warnings: list[str]) -> list[Host]:
    """The hosts of the slots: an address each (explicit, else from the CIDR), an image."""
    addresses = _addresses(spec, [s[2] for s in slots])
    manifest = spec.manifest if manifest_root is None or spec.manifest.is_absolute() \
        else manifest_root / spec.manifest
    ids = manifest_ids(manifest, spec.provider)
    hosts: list[Host] = []
    for i, ((name, roles, _, image), address) in enumerate(zip(slots, addresses, strict=True)):
        if image is None and spec.provider.bakes_with() is not None:
            needed = sorted({r.image() for r in roles})
            if len(needed) > 1:
                raise InputError.field(
                    spec.source, f"placement.hosts[{i}].image",
                    f"one image that carries all of {[r.value for r in roles]} "
                    f"(they live in {needed})", None)
            image = needed[0]
        if Role.CALIPER in roles and ({Role.PEER, Role.ORDERER} & set(roles)):
            warnings.append(f"host {name}: Caliper shares the host with a Fabric node, so the "
                            "load generator competes with the system under test")
        image_id = spec.images.get(image) or ids.get(image) if image else None
        hosts.append(Host(name=name, fqdn=f"{name}.{spec.name}.{HOST_DOMAIN}", address=address,
                          roles=roles, image=image, image_id=image_id))
    return hosts


def build_byof(spec: ByofSpec, *, manifest_root: Path | None = None) -> Plan:
    """A BYOF plan: caliper-worker VMs and the monitor only. Worker VM i uses gateway
    i mod len(gateways) (each VM a different one while there are enough) and an identity of
    that gateway's MSP, round robin over its identities."""
    slots: list[tuple[str, tuple[Role, ...], str | None, str | None]] = [
        (f"caliper{i}", (Role.CALIPER,), None, None) for i in range(spec.caliper.vms)]
    slots.append(("monitor", (Role.MONITOR,), None, None))
    warnings: list[str] = []
    hosts = _hosts(spec, slots, manifest_root, warnings)
    workers = []
    gateways = spec.gateways
    for i, h in enumerate(hosts[:-1]):
        gateway = gateways[i % len(gateways)]
        identities = spec.msp(gateway.msp_id).identities
        turn = i // len(gateways)
        workers.append(CaliperWorker(
            index=i, host=h.name, address=h.address, processes=spec.caliper.boot_processes,
            gateway=gateway, user=identities[turn % len(identities)].name,
            auto=spec.caliper.processes is None))
    if spec.caliper.vms < len(gateways):
        warnings.append(f"{len(gateways)} gateway peers but {spec.caliper.vms} worker VM(s): "
                        f"only the first {spec.caliper.vms} gateway(s) get load")
    return Plan(spec=spec, hosts=tuple(hosts), peers=(), orderers=(), workers=tuple(workers),
                monitor=hosts[-1], bootstrap=None, warnings=tuple(warnings))
