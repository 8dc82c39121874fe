"""The environment spec: environments/<env>.yaml loaded into frozen, validated models.

Raw dicts exist only inside this module; everything it returns is typed. Every error names
the file, the field path, what was expected and what was found (InputError, exit 2).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from fabkit import inputs
from fabkit.errors import InputError
from fabkit.inputs import Fields
from launch.spec.common import (
    CHANNEL_RE,
    DOMAIN_RE,
    NAME_RE,
    FabricVersion,
    SpecBase,
    SpecKind,
    read_bench,
    read_caliper,
    read_images,
    read_monitor,
    read_name,
    read_network,
    read_settings,
)
from launch.spec.contract import BENCHMARK_CHAINCODE, Role
from launch.spec.providers import Provider


class Consensus(StrEnum):
    """The ordering service's consensus type, spelled as configtx.yaml spells it."""

    ETCDRAFT = "etcdraft"
    BFT = "BFT"


# Patterns are matched with fullmatch: `$` would accept a trailing newline ("Org1MSP\n").
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_DURATION = re.compile(r"\d{1,6}(\.\d{1,6})?(ms|s|m|h)")
_SIZE = re.compile(r"(\d{1,9})\s?(KB|MB)")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")  # a chaincode version label

# Upper bounds: what render and the providers handle in seconds, and more than any
# benchmark lab this tool targets. Every bound says why in the error (hint).
MAX_ORGS = 32
MAX_PEERS_PER_ORG = 64
MAX_ORDERERS = 32
MAX_USERS_PER_ORG = 1000
MAX_HOSTS = 1024
MAX_IDENTITIES = 10000
MAX_CHANNELS = 16
MAX_CHAINCODES = 16
WHY_HOSTS = ("every host is a VM with its own user-data; planning, rendering and the "
             "providers' bookkeeping are sized for labs of hundreds, not thousands")
WHY_IDENTITIES = ("each peer, orderer and user is two keys and certificates in eight files; "
                  "10000 of them take about half a minute to render on a 2-core machine")
WHY_CHANNELS = "every channel is joined and its chaincodes committed at bootstrap, one by one"
WHY_ORGS = ("each organisation is an MSP in every channel's configtx.yaml and a CA in "
            "every host's user-data")
WHY_PEERS = "every peer is a VM, a key pair and a gossip member; render time grows with it"
WHY_ORDERERS = ("every orderer is a consenter of every channel; Raft and BFT clusters "
                "beyond a few dozen nodes are not a benchmark anyone runs")
WHY_USERS = "each user is a key and a certificate written and rendered (about 1 ms each)"
TOP_KEYS = ("name", "provider", "settings", "network", "images", "manifest", "fabric",
            "organisations", "orderers", "channels", "caliper", "monitor", "tuning",
            "placement", "bench")


# --- the models ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Organisation:
    """A peer organisation: `peers` peers named peer0..peerN-1.<domain>, Admin + `users` users."""

    name: str
    msp_id: str
    domain: str
    peers: int
    users: int


@dataclass(frozen=True)
class Orderers:
    """The ordering service: one orderer organisation with `count` nodes orderer0..N-1.<domain>."""

    org: str
    msp_id: str
    domain: str
    count: int
    type: Consensus
    batch_timeout: str
    max_message_count: int
    preferred_max_bytes: str
    absolute_max_bytes: str


@dataclass(frozen=True)
class Chaincode:
    """A chaincode-as-a-service contract committed on a channel."""

    name: str
    version: str
    sequence: int
    endorsement_policy: str | None  # None: the channel's default (MAJORITY Endorsement)


@dataclass(frozen=True)
class Channel:
    """An application channel, its member organisations and its chaincodes."""

    name: str
    orgs: tuple[str, ...]
    chaincodes: tuple[Chaincode, ...]


@dataclass(frozen=True)
class Tuning:
    """Performance knobs; the defaults are the performance settings, not Fabric's defaults."""

    gateway_concurrency: int = 20000   # CORE_PEER_LIMITS_CONCURRENCY_GATEWAYSERVICE (Fabric: 500)
    endorser_concurrency: int = 5000   # CORE_PEER_LIMITS_CONCURRENCY_ENDORSERSERVICE (2500)
    deliver_concurrency: int = 5000    # CORE_PEER_LIMITS_CONCURRENCY_DELIVERSERVICE (2500)
    validator_pool_size: int = 0       # CORE_PEER_VALIDATORPOOLSIZE; 0 = number of CPUs
    cluster_send_buffer: int = 1000    # ORDERER_GENERAL_CLUSTER_SENDBUFFERSIZE (100)
    gossip_max_block_count: int = 100  # CORE_PEER_GOSSIP_MAXBLOCKCOUNTTOSTORE (10)


@dataclass(frozen=True)
class PlacedHost:
    """An explicitly placed host and the roles it runs."""

    name: str
    roles: tuple[Role, ...]
    address: str | None
    image: str | None


@dataclass(frozen=True, kw_only=True)
class EnvSpec(SpecBase):
    """One environment file, validated: the shared fields (SpecBase) and the Fabric network
    fabperf launches."""

    kind: ClassVar[SpecKind] = SpecKind.ENVIRONMENT
    organisations: tuple[Organisation, ...]
    orderers: Orderers
    channels: tuple[Channel, ...]
    tuning: Tuning
    placement: tuple[PlacedHost, ...] | None = None  # None: one role per VM, names generated

    def org(self, name: str) -> Organisation:
        """The organisation called `name`."""
        return next(o for o in self.organisations if o.name == name)


# --- reading ------------------------------------------------------------------------------


def _size(m: Fields, key: str, default: str) -> str:
    value = m.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return f"{value // 1024} KB" if value % 1024 == 0 else f"{value} B"
    if not isinstance(value, str) or not _SIZE.fullmatch(value):
        raise m.fail(key, "a size such as '2 MB' or '512 KB' (or bytes as an integer)", value)
    return value


def _organisations(top: Fields) -> tuple[Organisation, ...]:
    raw = top.list("organisations", required=True)
    if not raw:
        raise top.fail("organisations", "at least one organisation", raw)
    if len(raw) > MAX_ORGS:
        raise top.fail("organisations", f"at most {MAX_ORGS} organisations",
                       f"{len(raw)} organisations", hint=f"the limit exists because {WHY_ORGS}")
    orgs: list[Organisation] = []
    for i, item in enumerate(raw):
        m = top.item("organisations", i, item)
        name = m.str("name", pattern=NAME_RE, what="a name (letters, digits, _ or -)")
        org = Organisation(
            name=name,
            msp_id=m.str("msp_id", f"{name}MSP", pattern=NAME_RE, what="an MSP id"),
            domain=m.str("domain", f"{name.lower()}.example.com", pattern=DOMAIN_RE,
                         what="a lower-case DNS domain"),
            peers=m.int("peers", 1, minimum=1, maximum=MAX_PEERS_PER_ORG, why=WHY_PEERS),
            users=m.int("users", 1, minimum=0, maximum=MAX_USERS_PER_ORG, why=WHY_USERS),
        )
        m.done()
        for other in orgs:
            for attr in ("name", "msp_id", "domain"):
                if getattr(other, attr) == getattr(org, attr):
                    raise m.fail(attr, f"a {attr} no other organisation uses",
                                 getattr(org, attr))
        orgs.append(org)
    return tuple(orgs)


def _orderers(top: Fields, fabric: FabricVersion, orgs: tuple[Organisation, ...]) -> Orderers:
    m = top.map("orderers")
    o = Orderers(
        org=m.str("org", "OrdererOrg", pattern=NAME_RE, what="a name"),
        msp_id=m.str("msp_id", "OrdererMSP", pattern=NAME_RE, what="an MSP id"),
        domain=m.str("domain", "example.com", pattern=DOMAIN_RE, what="a lower-case DNS domain"),
        count=m.int("count", 1, minimum=1, maximum=MAX_ORDERERS, why=WHY_ORDERERS),
        type=m.enum("type", Consensus, "etcdraft"),
        batch_timeout=m.str("batch_timeout", "2s", pattern=_DURATION,
                            what="a duration such as 2s or 500ms"),
        max_message_count=m.int("max_message_count", 500, minimum=1),
        preferred_max_bytes=_size(m, "preferred_max_bytes", "2 MB"),
        absolute_max_bytes=_size(m, "absolute_max_bytes", "10 MB"),
    )
    m.done()
    if o.type is Consensus.BFT:
        if o.count < 4:
            raise m.fail("count", "at least 4 orderers for BFT (3f+1, f >= 1)", o.count)
        if fabric.major_minor < (3, 0):
            raise top.fail("fabric.version", "Fabric 3.0 or later for BFT", fabric.version)
    for org in orgs:
        if org.msp_id == o.msp_id or org.domain == o.domain:
            raise m.fail("msp_id" if org.msp_id == o.msp_id else "domain",
                         f"a value organisation {org.name} does not use",
                         o.msp_id if org.msp_id == o.msp_id else o.domain)
    return o


def _channels(top: Fields, orgs: tuple[Organisation, ...]) -> tuple[Channel, ...]:
    raw = top.list("channels")
    if not raw:
        raw = [{"name": "mychannel"}]
    if len(raw) > MAX_CHANNELS:
        raise top.fail("channels", f"at most {MAX_CHANNELS} channels", f"{len(raw)} channels",
                       hint=f"the limit exists because {WHY_CHANNELS}")
    names = [o.name for o in orgs]
    channels: list[Channel] = []
    for i, item in enumerate(raw):
        m = top.item("channels", i, item)
        name = m.str("name", pattern=CHANNEL_RE, what="a channel name ([a-z][a-z0-9.-]*)")
        members = m.get("orgs", names)
        if not isinstance(members, list) or not members:
            raise m.fail("orgs", "a non-empty list of organisation names", members)
        for j, member in enumerate(members):
            if member not in names:
                raise InputError.field(m.file, f"{m.where('orgs')}[{j}]",
                                       f"one of the organisations {names}", member)
        if len(set(members)) != len(members):
            raise m.fail("orgs", "each organisation once", members)
        ccs: list[Chaincode] = []
        cc_list = m.list("chaincodes") or [{"name": BENCHMARK_CHAINCODE}]
        if len(cc_list) > MAX_CHAINCODES:
            raise m.fail("chaincodes", f"at most {MAX_CHAINCODES} chaincodes per channel",
                         f"{len(cc_list)} chaincodes",
                         hint=f"the limit exists because {WHY_CHANNELS}")
        for k, cc_raw in enumerate(cc_list):
            c = m.item("chaincodes", k, cc_raw)
            cc = Chaincode(
                name=c.str("name", BENCHMARK_CHAINCODE, pattern=NAME_RE, what="a chaincode name"),
                version=c.str("version", "1.0", pattern=_VERSION,
                              what="a chaincode version label (letters, digits, . _ + -)"),
                sequence=c.int("sequence", 1, minimum=1, maximum=10**6),
                endorsement_policy=c.str("endorsement_policy", None),
            )
            c.done()
            if cc.endorsement_policy is not None:
                msp_ids = [o.msp_id for o in orgs if o.name in members]
                problem = policy_problem(cc.endorsement_policy, msp_ids)
                if problem:
                    raise c.fail("endorsement_policy", "a signature policy such as "
                                 "AND('Org1MSP.peer','Org2MSP.peer'), OR(...), OutOf(n, ...) "
                                 "or a channel policy reference such as "
                                 "/Channel/Application/Endorsement", cc.endorsement_policy,
                                 hint=problem)
            if any(x.name == cc.name for x in ccs):
                raise c.fail("name", "a chaincode name unique on the channel", cc.name)
            ccs.append(cc)
        m.done()
        if any(c.name == name for c in channels):
            raise m.fail("name", "a channel name no other channel uses", name)
        channels.append(Channel(name=name, orgs=tuple(members), chaincodes=tuple(ccs)))
    return tuple(channels)


_POLICY_ROLES = ("member", "admin", "client", "peer", "orderer")
_POLICY_REF = re.compile(r"/Channel/Application(/[A-Za-z0-9_.-]{1,64}){1,2}")
_POLICY_TOKEN = re.compile(r"\s*(?:(AND|OR|OutOf)\s*\(|('[^']*'|\"[^\"]*\")|(\d{1,4})|([,)]))")


def policy_problem(text: str, msp_ids: Iterable[str]) -> str | None:
    """What is wrong with an endorsement policy (None: fine). Fabric's signature policy
    grammar (AND/OR/OutOf over 'MSPID.role' principals) or a channel policy reference."""
    if len(text) > 4096:
        return "longer than 4096 characters"
    if text.startswith("/"):
        return None if _POLICY_REF.fullmatch(text) else \
            "a reference names a policy under /Channel/Application/"
    known = set(msp_ids)
    pos = 0
    tokens: list[tuple[str, str]] = []
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _POLICY_TOKEN.match(text, pos)
        if m is None:
            return f"unexpected text at character {pos + 1}: {text[pos:pos + 20]!r}"
        kind = next(k for k, v in zip(("op", "principal", "number", "punct"), m.groups(),
                                      strict=True) if v is not None)
        tokens.append((kind, next(v for v in m.groups() if v is not None)))
        pos = m.end()
    it = iter([*tokens, ("end", "")])
    current = [next(it)]

    def take() -> tuple[str, str]:
        tok = current[0]
        current[0] = next(it)
        return tok

    def expr(depth: int) -> int:
        """Parse one expression; returns how many principals it may count as (1)."""
        if depth > 32:
            raise ValueError("nested deeper than 32 levels")
        kind, value = take()
        if kind == "principal":
            msp, dot, role = value[1:-1].rpartition(".")
            if not dot or role not in _POLICY_ROLES:
                raise ValueError(f"principal {value} is not 'MSPID.role' with role one of "
                                 f"{', '.join(_POLICY_ROLES)}")
            if msp not in known:
                raise ValueError(f"principal {value} names {msp!r}, not an MSP of the "
                                 f"channel's organisations {sorted(known)}")
            return 1
        if kind != "op":
            raise ValueError(f"expected AND(, OR(, OutOf( or a 'MSPID.role' principal, "
                             f"found {value!r}")
        need = None
        if value == "OutOf":
            k, n = take()
            if k != "number":
                raise ValueError("OutOf( needs a number first")
            need = int(n)
            if take() != ("punct", ","):
                raise ValueError("OutOf(n, ...) needs a comma after n")
        count = 0
        while True:
            expr(depth + 1)
            count += 1
            k, v = take()
            if v == ")":
                break
            if v != ",":
                raise ValueError(f"expected , or ) in {value}(...), found {v!r}")
        if need is not None and not 1 <= need <= count:
            raise ValueError(f"OutOf({need}, ...) with {count} sub-policies")
        return 1

    try:
        expr(0)
        if current[0][0] != "end":
            raise ValueError(f"unexpected {current[0][1]!r} after the policy")
    except ValueError as exc:
        return str(exc)
    except StopIteration:
        return "the policy ends too early (a missing ')'?)"
    return None


def _tuning(top: Fields) -> Tuning:
    m = top.map("tuning")
    defaults = Tuning()
    values = {name: m.int(name, getattr(defaults, name), minimum=0)
              for name in Tuning.__dataclass_fields__}
    m.done()
    return Tuning(**values)


def _placement(top: Fields) -> tuple[PlacedHost, ...] | None:
    m = top.map("placement")
    raw = m.list("hosts")
    m.done()
    if not raw:
        return None
    if len(raw) > MAX_HOSTS:
        raise m.fail("hosts", f"at most {MAX_HOSTS} hosts", f"{len(raw)} hosts",
                     hint=f"the limit exists because {WHY_HOSTS}")
    hosts: list[PlacedHost] = []
    for i, item in enumerate(raw):
        h = m.item("hosts", i, item)
        name = h.str("name", pattern=_LABEL, what="a host name (a DNS label: a-z, 0-9, -)")
        roles_raw = h.get("roles", required=True)
        if not isinstance(roles_raw, list) or not roles_raw:
            raise h.fail("roles", f"a non-empty list of {[r.value for r in Role]}", roles_raw)
        roles: list[Role] = []
        for j, value in enumerate(roles_raw):
            try:
                role = Role(value)
            except ValueError:
                raise InputError.field(h.file, f"{h.where('roles')}[{j}]",
                                       f"one of {[r.value for r in Role]}", value) from None
            if role in roles:
                raise InputError.field(h.file, f"{h.where('roles')}[{j}]",
                                       "each role once per host", value)
            roles.append(role)
        address = h.str("address", None)
        if address is not None:
            try:
                ipaddress.IPv4Address(address)
            except ValueError:
                raise h.fail("address", "an IPv4 address", address) from None
        host = PlacedHost(name=name, roles=tuple(roles), address=address,
                          image=h.str("image", None, pattern=_LABEL,
                                      what="an image name such as fabric-node (a-z, 0-9, -)"))
        h.done()
        if any(x.name == name for x in hosts):
            raise h.fail("name", "a host name no other host uses (duplicate hostname)", name)
        if address is not None and any(x.address == address for x in hosts):
            raise h.fail("address", "an address no other host uses", address)
        hosts.append(host)
    return tuple(hosts)


def _check_placement(top: Fields, spec: EnvSpec) -> None:
    """Placed hosts must carry exactly as many of each role as the topology has nodes."""
    hosts = spec.placement
    if hosts is None:
        if not spec.provider.facts.starts_hosts:
            raise top.fail("placement.hosts", "hosts with explicit addresses (provider "
                           f"{spec.provider})", None)
        return
    wanted = {
        Role.PEER: sum(o.peers for o in spec.organisations),
        Role.ORDERER: spec.orderers.count,
        Role.CALIPER: spec.caliper.vms,
        Role.MONITOR: 1,
    }
    for role, count in wanted.items():
        have = sum(role in h.roles for h in hosts)
        if have != count:
            raise top.fail("placement.hosts", f"{count} host(s) with role {role.value} "
                           "(one per node the topology defines)", f"{have} host(s)")
    net = ipaddress.IPv4Network(spec.cidr)
    reserved = {net.network_address: "the network address",
                net.broadcast_address: "the broadcast address",
                net.network_address + 1: "the gateway"}
    for i, h in enumerate(hosts):
        if not spec.provider.facts.starts_hosts and h.address is None:
            raise top.fail(f"placement.hosts[{i}].address",
                           f"an address (provider {spec.provider} hosts already exist)", None)
        if spec.provider.facts.starts_hosts and h.address is not None:
            address = ipaddress.IPv4Address(h.address)
            if address not in net:
                raise top.fail(f"placement.hosts[{i}].address",
                               f"an address inside network.cidr {spec.cidr}", h.address)
            if address in reserved:
                raise top.fail(f"placement.hosts[{i}].address",
                               f"a host address of {spec.cidr}, not {reserved[address]}",
                               h.address)
        if h.image is not None:
            _check_host_image(top, spec, i, h)


def _check_host_image(top: Fields, spec: EnvSpec, i: int, h: PlacedHost) -> None:
    """A host naming one of the catalog's images must carry its roles with it (fabric-node
    carries peer and orderer, not caliper); another name is an image of the operator's own
    (in `images:` or the manifest) that is trusted to carry what the host runs."""
    baked = {r.image() for r in Role}
    if h.image in baked:
        missing = [r.value for r in h.roles if r.image() != h.image]
        if missing:
            raise top.fail(f"placement.hosts[{i}].image",
                           f"an image that carries the roles {[r.value for r in h.roles]} "
                           f"({h.image} does not carry {missing})", h.image)


def load(path: str | Path) -> EnvSpec:
    """Read and validate an environment file. Raises InputError naming file and field."""
    path = Path(path)
    return parse(inputs.load_yaml_file(path, what="environment file"), path)


def parse(raw: object, source: Path) -> EnvSpec:
    """Validate an already-parsed environment document (`source` names it in errors)."""
    if SpecKind.of(raw) is not SpecKind.ENVIRONMENT:
        raise InputError(f"{source}: a BYOF spec (kind: {SpecKind.of(raw)}), not an "
                         "environment file", hint=f"`launch byof {source}` launches it")
    top = Fields(source, "", raw)
    top.done(TOP_KEYS)  # a misspelt section is reported before the sections it hides
    name = read_name(top)
    provider = top.enum("provider", Provider)
    settings = read_settings(top)
    cidr, first = read_network(top, provider)
    images_raw, manifest = read_images(top)
    f = top.map("fabric")
    version = f.str("version", "3.0.0", pattern=re.compile(r"\d{1,3}\.\d{1,3}(\.\d{1,3})?"),
                    what="a Fabric version such as 3.0.0 or 2.5.10")
    f.done()
    fabric = FabricVersion(version)
    if fabric.major_minor < (2, 5) or fabric.major_minor >= (4, 0):
        raise top.fail("fabric.version", "Fabric 2.5.x or 3.x", version)
    orgs = _organisations(top)
    orderers = _orderers(top, fabric, orgs)
    channels = _channels(top, orgs)
    caliper = read_caliper(top)
    monitor = read_monitor(top)
    tuning = _tuning(top)
    placement = _placement(top)
    bench_thresholds = read_bench(top)
    top.done()
    spec = EnvSpec(
        source=source, name=name, provider=provider, settings=settings, cidr=cidr,
        first_host=first, images=dict(images_raw), manifest=manifest, fabric=fabric,
        organisations=orgs, orderers=orderers, channels=channels, caliper=caliper,
        monitor=monitor, tuning=tuning, placement=placement,
        bench_thresholds=bench_thresholds,
    )
    _check_size(top, spec)
    _check_placement(top, spec)
    return spec


def _check_size(top: Fields, spec: EnvSpec) -> None:
    """Bounds on the whole topology (each part may be within its own bound)."""
    peers = sum(o.peers for o in spec.organisations)
    hosts = peers + spec.orderers.count + spec.caliper.vms + 1
    if hosts > MAX_HOSTS:
        raise top.fail("organisations", f"a topology of at most {MAX_HOSTS} hosts "
                       "(peers + orderers + caliper VMs + monitor)", f"{hosts} hosts",
                       hint=f"the limit exists because {WHY_HOSTS}")
    identities = peers + spec.orderers.count + sum(o.users + 1 for o in spec.organisations)
    if identities > MAX_IDENTITIES:
        raise top.fail("organisations", f"at most {MAX_IDENTITIES} identities (peers, "
                       "orderers, users and admins)", f"{identities} identities",
                       hint=f"the limit exists because {WHY_IDENTITIES}")
