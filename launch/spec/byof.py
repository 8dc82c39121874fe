"""The BYOF spec: a Fabric network the user already runs, and the VMs fabperf adds to it.

`launch byof BYOF.yaml` starts only caliper-worker VMs and the monitor against that network
(launch.render.byof_bundle renders them, launch.lifecycle.preflight checks the user's files
first). The spec is read through fabkit.inputs into frozen models, with the same error quality
as environment specs (launch.spec.env, whose readers and Caliper/round models it reuses)::

    kind: byof                      # tells a BYOF spec from an environment file
    name: byof                      # the environment fabperf creates (status/down/bench)
    provider: qemu
    settings: {}                    # the provider's, as in an environment file
    network: {cidr: 10.78.0.0/24}   # the VMs fabperf starts
    images: {}                      # optional, as in an environment file
    fabric:
      version: 3.0.0                # optional: what the user runs (recorded, not checked)
      channel: mychannel
      chaincode: fixed-asset        # committed on the channel by the user
      msps:
        - msp_id: Org1MSP
          ca_cert: org1/ca.crt      # the MSP's CA certificate (its msp/cacerts/*.pem)
          identities:               # client identities the workers sign with
            - {name: User1, cert: org1/User1-cert.pem, key: org1/User1-key.pem}
            - {name: User2, wallet: org1/wallet}   # a fabric-network wallet: wallet/User2.id
      gateways:                     # peers the workers use as their gateway, round robin
        - endpoint: peer0.org1.example.com:7051
          msp_id: Org1MSP
          tls_ca: org1/tlsca.crt    # the CA of the peer's TLS certificate
          tls_server_name: peer0.org1.example.com   # when the dialled name is not in it
      operations:                   # /metrics the monitor scrapes (optional)
        - url: https://peer0.org1.example.com:9443
          host: peer0.org1.example.com   # the label (default: the URL's host)
          role: peer                # or orderer (the label; default peer)
          cpus: 4                   # its host's vCPUs: the verdict's Fabric CPU rule (optional)
          tls_ca: org1/ops-ca.crt   # https: the operations service's CA
          client_cert: org1/ops-client.crt   # when it requires mutual TLS
          client_key: org1/ops-client.key
      hosts:                        # written to /etc/hosts of every VM fabperf starts
        peer0.org1.example.com: 192.0.2.10
      launcher_hosts:               # where THIS machine reaches an endpoint, when not as
        peer0.org1.example.com: 127.0.0.1   # the VMs do (preflight dials it; optional)
    caliper: {workers: {vms: 2, processes: 2}, rounds: [...]}   # as in an environment file
    monitor: {grafana_admin_user: admin}
    bench: {thresholds: {}}

Instead of `gateways:`, `connection_profile: FILE` (a common connection profile, JSON or
YAML) gives every peer of its organisations whose mspid is under `msps` as a gateway (url
grpcs://host:port, tlsCACerts pem or path, grpcOptions ssl-target-name-override). Relative
file paths are relative to the spec file's directory (in the profile: to the profile's).
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from fabkit import inputs
from fabkit.errors import InputError
from fabkit.inputs import Fields
from launch.spec import env as env_spec
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
from launch.spec.env import Chaincode, Channel, EnvSpec
from launch.spec.providers import Provider

TOP_KEYS = ("kind", "name", "provider", "settings", "network", "images", "manifest",
            "fabric", "caliper", "monitor", "bench")
FABRIC_KEYS = ("version", "channel", "chaincode", "msps", "gateways", "connection_profile",
               "operations", "hosts", "launcher_hosts")
MAX_PROFILE_BYTES = 4 << 20

MAX_MSPS = env_spec.MAX_ORGS
MAX_IDENTITIES = 1000          # per MSP
MAX_GATEWAYS = 256
MAX_OPERATIONS = 1024
MAX_ALIASES = 1024
WHY_GATEWAYS = "each worker VM's network config names one gateway; 256 is beyond any lab"
WHY_ENDPOINTS = "each endpoint is a scrape target and a TLS check at preflight"

_HOSTNAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
_SERVER_NAME = DOMAIN_RE
_LABEL_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,252}")


@dataclass(frozen=True)
class Identity:
    """A client identity of an MSP: an enrollment certificate and its private key, as two
    PEM files or as one entry of a fabric-network wallet directory (<wallet>/<name>.id)."""

    name: str
    cert: Path | None
    key: Path | None
    wallet: Path | None  # the wallet entry (JSON: credentials.certificate/privateKey, mspId)
    where: str          # its field path in the spec (for preflight messages)

    def pem_files(self) -> tuple[Path, Path]:
        """(certificate, key) of an identity given as two files (not a wallet entry)."""
        if self.cert is None or self.key is None:
            raise InputError(f"{self.where}: expected cert and key files, or a wallet entry")
        return self.cert, self.key


WALLET_MAX_BYTES = 1 << 20


def identity_pems(ident: Identity, msp_id: str) -> tuple[str, str]:
    """(certificate PEM, private key PEM) of an identity: its files, or its wallet entry
    (an X.509 identity of `msp_id`). InputError naming the field when it cannot be read."""
    if ident.wallet is None:
        cert, key = ident.pem_files()
        return (inputs.read_text(cert, what="certificate", max_bytes=WALLET_MAX_BYTES),
                inputs.read_text(key, what="private key", max_bytes=WALLET_MAX_BYTES))
    where = f"{ident.where}.wallet"
    if not ident.wallet.is_file():
        raise InputError(f"{where}: no wallet entry {ident.wallet}")
    doc = inputs.load_json_file(ident.wallet, what="wallet entry")
    rules = (inputs.Rule("type", str, choices=("X.509",)),
             inputs.Rule("mspId", str),
             inputs.Rule("credentials", dict),
             inputs.Rule("version", int, default=1))
    d = inputs.check_fields(doc, rules, source=ident.wallet, path="")
    if d["mspId"] != msp_id:
        raise InputError(f"{where}: {ident.wallet} is an identity of {d['mspId']}, not of "
                         f"{msp_id} (an identity of another MSP)")
    creds = inputs.check_fields(
        d["credentials"], (inputs.Rule("certificate", str), inputs.Rule("privateKey", str)),
        source=ident.wallet, path="credentials")
    return creds["certificate"], creds["privateKey"]


@dataclass(frozen=True)
class Msp:
    """A member organisation of the user's channel, as far as the workers need it."""

    msp_id: str
    ca_cert: Path       # the CA (msp/cacerts) that issued its identities
    identities: tuple[Identity, ...]
    where: str

    def identity(self, name: str) -> Identity:
        return next(i for i in self.identities if i.name == name)


@dataclass(frozen=True)
class Gateway:
    """A peer of the user's network that Caliper workers use as their Fabric Gateway.

    The same attributes launch.render.plan.FabricNode offers for a worker's gateway (endpoint,
    fqdn, msp_id, org), so the plan, the bench bundle and plan.json treat both alike."""

    endpoint: str               # host:port as the workers dial it
    msp_id: str
    tls_ca: Path                # the CA file (a connection profile: the profile itself ...)
    tls_server_name: str | None  # None: the dialled host name is in the certificate
    where: str
    tls_ca_pem: str | None = None  # (... when the profile carries the CA inline, here)

    @property
    def host(self) -> str:
        return self.endpoint.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.endpoint.rpartition(":")[2])

    @property
    def fqdn(self) -> str:
        """The name the peer's TLS certificate is checked against."""
        return self.tls_server_name or self.host

    @property
    def org(self) -> str:
        return self.msp_id


@dataclass(frozen=True)
class Operations:
    """An operations endpoint (/metrics) of the user's network the monitor scrapes."""

    url: str
    host: str                   # the `host` label of its series (the user's name for it)
    role: str                   # peer | orderer (the `role` label)
    cpus: int | None            # vCPUs of its host: its process CPU as a share (verdict)
    tls_ca: Path | None
    client_cert: Path | None
    client_key: Path | None
    tls_server_name: str | None
    where: str

    @property
    def scheme(self) -> str:
        return urllib.parse.urlsplit(self.url).scheme

    @property
    def target(self) -> str:
        """host:port (the port defaulted from the scheme)."""
        u = urllib.parse.urlsplit(self.url)
        port = u.port or (443 if u.scheme == "https" else 80)
        host = f"[{u.hostname}]" if u.hostname and ":" in u.hostname else u.hostname
        return f"{host}:{port}"

    @property
    def metrics_path(self) -> str:
        return urllib.parse.urlsplit(self.url).path or "/metrics"


@dataclass(frozen=True, kw_only=True)
class ByofSpec(SpecBase):
    """A BYOF spec, validated: the shared fields (SpecBase; `fabric` as declared, "unknown"
    when the spec does not say) and the user's network as fabperf reaches it."""

    kind: ClassVar[SpecKind] = SpecKind.BYOF
    channel: str
    chaincode: str
    msps: tuple[Msp, ...]
    gateways: tuple[Gateway, ...]
    operations: tuple[Operations, ...]
    aliases: Mapping[str, str]   # host name -> address, for /etc/hosts on fabperf's VMs
    launcher_hosts: Mapping[str, str] = field(default_factory=dict)
    """endpoint host (a name or the address the VMs dial) -> the address the operator's
    machine reaches it at: the preflight dials this instead (`fabric.launcher_hosts`)"""

    @property
    def channels(self) -> tuple[Channel, ...]:
        """The user's channel and chaincode in launch.spec.env's model (what Caliper's
        benchmark config is rendered from). Version and sequence are the user's: unknown."""
        return (Channel(self.channel, tuple(m.msp_id for m in self.msps),
                        (Chaincode(self.chaincode, "unknown", 1, None),)),)

    def msp(self, msp_id: str) -> Msp:
        return next(m for m in self.msps if m.msp_id == msp_id)


# --- reading ------------------------------------------------------------------------------


def _file(m: Fields, key: str, base: Path) -> Path:
    """A required file named by the spec (relative to the spec's directory)."""
    found = _optional_file(m, key, base, required=True)
    assert found is not None   # (required: absent is an InputError)
    return found


def _optional_file(m: Fields, key: str, base: Path, *, required: bool = False) -> Path | None:
    value = m.get(key, None if not required else ..., required=required)
    if value is None:
        return None
    text = inputs.check_path_text(value, source=m.file, path=m.where(key))
    p = Path(text).expanduser()
    return p if p.is_absolute() else base / p


def _bounded(m: Fields, key: str, limit: int, why: str, *, required: bool = False) -> list[Any]:
    raw = m.list(key, required=required)
    if len(raw) > limit:
        raise m.fail(key, f"at most {limit} entries", f"{len(raw)} entries",
                     hint=f"the limit exists because {why}")
    return raw


def _msps(f: Fields, base: Path) -> tuple[Msp, ...]:
    raw = _bounded(f, "msps", MAX_MSPS, env_spec.WHY_ORGS, required=True)
    if not raw:
        raise f.fail("msps", "at least one MSP with a client identity", raw)
    out: list[Msp] = []
    for i, item in enumerate(raw):
        m = f.item("msps", i, item)
        msp_id = m.str("msp_id", pattern=NAME_RE, what="an MSP id")
        ca = _file(m, "ca_cert", base)
        ids_raw = _bounded(m, "identities", MAX_IDENTITIES, env_spec.WHY_USERS, required=True)
        if not ids_raw:
            raise m.fail("identities", "at least one identity (cert + key)", ids_raw)
        identities: list[Identity] = []
        for j, id_raw in enumerate(ids_raw):
            d = m.item("identities", j, id_raw)
            name = d.str("name", pattern=NAME_RE, what="an identity name")
            wallet = _optional_file(d, "wallet", base)
            if wallet is not None:
                if "cert" in d.raw or "key" in d.raw:
                    raise d.fail("wallet", "a wallet directory or cert + key files, not both",
                                 {k: d.raw[k] for k in ("cert", "key") if k in d.raw})
                ident = Identity(name, None, None, wallet / f"{name}.id", d.path)
            else:
                ident = Identity(name, _file(d, "cert", base), _file(d, "key", base), None,
                                 d.path)
            d.done()
            if any(x.name == ident.name for x in identities):
                raise d.fail("name", "a name no other identity of the MSP uses", ident.name)
            identities.append(ident)
        m.done()
        if any(x.msp_id == msp_id for x in out):
            raise m.fail("msp_id", "an MSP id no other entry uses", msp_id)
        out.append(Msp(msp_id, ca, tuple(identities), m.path))
    return tuple(out)


def _endpoint(m: Fields, key: str) -> str:
    value = m.str(key, what="host:port")
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    ok = bool(sep) and port.isdigit() and 1 <= int(port) <= 65535 and _is_host(host)
    if not ok:
        raise m.fail(key, "host:port (a DNS name or an IP address, a port 1-65535)", value)
    return value


def _is_host(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return bool(_HOSTNAME.fullmatch(text))


_GRPCS = re.compile(r"grpcs://(\[[0-9A-Fa-f:]+\]|[^/:\s]+):(\d{1,5})")


def _profile_gateways(f: Fields, base: Path, msps: tuple[Msp, ...]) -> tuple[Gateway, ...]:
    """The gateways of a common connection profile (JSON or YAML): every peer of its
    organisations whose mspid is under fabric.msps. Its other sections are not read."""
    path = _file(f, "connection_profile", base)
    doc = inputs.load_yaml_file(path, what="connection profile")
    top = Fields(path, "", doc)
    orgs, peers = top.map("organizations", required=True), top.map("peers", required=True)
    ids = [m.msp_id for m in msps]
    out: list[Gateway] = []
    for org_name, org_raw in orgs.raw.items():
        o = Fields(path, f"organizations.{org_name}", org_raw)
        mspid = o.get("mspid", None)
        if mspid not in ids:
            continue
        names = o.get("peers", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise o.fail("peers", "a list of peer names (keys under peers:)", names)
        for name in names:
            if name not in peers.raw:
                raise o.fail("peers", "names of peers under peers:", name)
            pm = Fields(path, f"peers.{name}", peers.raw[name])
            url = pm.str("url", what="grpcs://host:port (fabperf's workers use TLS)")
            m = _GRPCS.fullmatch(url)
            if m is None or not 1 <= int(m.group(2)) <= 65535 or not _is_host(
                    m.group(1).strip("[]")):
                raise pm.fail("url", "grpcs://host:port (fabperf's workers use TLS)", url)
            tls = pm.map("tlsCACerts", required=True)
            pem, ca_path = tls.get("pem", None), tls.get("path", None)
            if (pem is None) == (ca_path is None) or not isinstance(pem or ca_path, str):
                raise tls.fail("pem", "a PEM text or a path (one of them)", dict(tls.raw))
            if ca_path is not None:
                ca = Path(inputs.check_path_text(ca_path, source=path, path=tls.where("path")))
                ca = ca if ca.is_absolute() else path.resolve().parent / ca
            grpc = pm.get("grpcOptions", {})
            if not isinstance(grpc, Mapping):
                raise pm.fail("grpcOptions", "a mapping", grpc)
            override = grpc.get("ssl-target-name-override") or grpc.get("hostnameOverride")
            if override is not None and (not isinstance(override, str)
                                         or not _SERVER_NAME.fullmatch(override)):
                raise InputError.field(path, f"peers.{name}.grpcOptions",
                                       "a DNS name as ssl-target-name-override", override)
            out.append(Gateway(
                endpoint=f"{m.group(1)}:{m.group(2)}", msp_id=mspid,
                tls_ca=path if pem is not None else ca, tls_server_name=override,
                where=f"fabric.connection_profile ({path.name}: peers.{name})",
                tls_ca_pem=pem))
    if not out:
        raise InputError.field(path, "organizations", f"an organisation whose mspid is one of "
                               f"fabric.msps {ids}, with peers", sorted(orgs.raw))
    if len(out) > MAX_GATEWAYS:
        raise InputError.field(path, "peers", f"at most {MAX_GATEWAYS} gateway peers",
                               f"{len(out)} peers", hint=f"the limit exists because {WHY_GATEWAYS}")
    return tuple(out)


def _gateways(f: Fields, base: Path, msps: tuple[Msp, ...]) -> tuple[Gateway, ...]:
    has_profile = f.raw.get("connection_profile") is not None
    if has_profile == bool(f.raw.get("gateways")):
        raise f.fail("gateways", "either gateways or connection_profile (exactly one)",
                     {k: f.raw.get(k) for k in ("gateways", "connection_profile")})
    if has_profile:
        return _profile_gateways(f, base, msps)
    raw = _bounded(f, "gateways", MAX_GATEWAYS, WHY_GATEWAYS, required=True)
    if not raw:
        raise f.fail("gateways", "at least one gateway peer", raw)
    ids = [m.msp_id for m in msps]
    out: list[Gateway] = []
    for i, item in enumerate(raw):
        m = f.item("gateways", i, item)
        gw = Gateway(
            endpoint=_endpoint(m, "endpoint"),
            msp_id=m.str("msp_id", pattern=NAME_RE, what="an MSP id"),
            tls_ca=_file(m, "tls_ca", base),
            tls_server_name=m.str("tls_server_name", None, pattern=_SERVER_NAME,
                                  what="a DNS name in the peer's TLS certificate"),
            where=m.path)
        m.done()
        if gw.msp_id not in ids:
            raise m.fail("msp_id", f"one of the MSPs listed under fabric.msps {ids} (the "
                         "workers need an identity of the gateway's organisation)", gw.msp_id)
        if any(x.endpoint == gw.endpoint for x in out):
            raise m.fail("endpoint", "an endpoint no other gateway uses", gw.endpoint)
        out.append(gw)
    return tuple(out)


def _operations(f: Fields, base: Path) -> tuple[Operations, ...]:
    raw = _bounded(f, "operations", MAX_OPERATIONS, WHY_ENDPOINTS)
    out: list[Operations] = []
    for i, item in enumerate(raw):
        m = f.item("operations", i, item)
        url = m.str("url", what="an http:// or https:// URL")
        u = urllib.parse.urlsplit(url)
        try:
            port = u.port
        except ValueError:
            port = -1
        if u.scheme not in ("http", "https") or not u.hostname or not _is_host(u.hostname) \
                or port == -1 or u.query or u.fragment or u.username:
            raise m.fail("url", "an http:// or https:// URL of an operations endpoint "
                         "(such as https://peer0.org1.example.com:9443)", url)
        op = Operations(
            url=url,
            host=m.str("host", u.hostname, pattern=_LABEL_VALUE,
                       what="a host label (letters, digits, . _ : -)"),
            role=m.str("role", "peer", pattern=re.compile("peer|orderer"),
                       what="peer or orderer"),
            cpus=m.int("cpus", None, minimum=1, maximum=1024,
                       why="the vCPUs of one host running the node"),
            tls_ca=_optional_file(m, "tls_ca", base),
            client_cert=_optional_file(m, "client_cert", base),
            client_key=_optional_file(m, "client_key", base),
            tls_server_name=m.str("tls_server_name", None, pattern=_SERVER_NAME,
                                  what="a DNS name in the endpoint's TLS certificate"),
            where=m.path)
        m.done()
        if (op.client_cert is None) != (op.client_key is None):
            raise m.fail("client_key" if op.client_key is None else "client_cert",
                         "client_cert and client_key together (mutual TLS) or neither",
                         None)
        if op.scheme == "http" and (op.tls_ca or op.client_cert or op.tls_server_name):
            raise m.fail("url", "https:// when tls_ca, client_cert or tls_server_name is "
                         "given", url)
        if any(x.target == op.target and x.metrics_path == op.metrics_path for x in out):
            raise m.fail("url", "an endpoint no other entry scrapes", url)
        out.append(op)
    return tuple(out)


def _aliases(f: Fields, key: str = "hosts",
             why: str = "each is a line of /etc/hosts on every VM fabperf starts"
             ) -> dict[str, str]:
    raw = f.get(key, {})
    if not isinstance(raw, Mapping):
        raise f.fail(key, "a mapping host name -> IP address", raw)
    if len(raw) > MAX_ALIASES:
        raise f.fail(key, f"at most {MAX_ALIASES} names", f"{len(raw)} names", hint=why)
    out: dict[str, str] = {}
    for name, address in raw.items():
        where = f"{f.where(key)}.{name}"
        if not isinstance(name, str) or not _HOSTNAME.fullmatch(name):
            raise InputError.field(f.file, f.where(key), "host names as keys", name)
        try:
            out[name] = str(ipaddress.ip_address(str(address)))
        except ValueError:
            raise InputError.field(f.file, where, "an IP address", address) from None
    return out


Spec = EnvSpec | ByofSpec
"""A spec of either kind (SpecKind)."""


def load(path: str | Path) -> ByofSpec:
    """Read and validate a BYOF spec. Raises InputError naming file and field."""
    path = Path(path)
    return parse(inputs.load_yaml_file(path, what="BYOF spec"), path)


def load_any(path: str | Path) -> Spec:
    """An environment file or a BYOF spec, told apart by their `kind:` (SpecKind)."""
    path = Path(path)
    raw = inputs.load_yaml_file(path, what="environment file")
    if SpecKind.of(raw) is SpecKind.BYOF:
        return parse(raw, path)
    return env_spec.parse(raw, path)


def parse(raw: object, source: Path) -> ByofSpec:
    """Validate an already-parsed BYOF document (`source` names it in errors)."""
    top = Fields(source, "", raw)
    kind = top.get("kind", None)
    if kind != SpecKind.BYOF:
        raise top.fail("kind", f"{SpecKind.BYOF.value!r} (a BYOF spec)", kind,
                       hint="an environment file (fabperf launches its Fabric) goes to "
                            "`launch up`")
    top.done(TOP_KEYS)
    name = read_name(top)
    provider = top.enum("provider", Provider)
    if not provider.facts.starts_hosts:
        starting = ", ".join(p.value for p in Provider if p.facts.starts_hosts)
        raise top.fail("provider", f"a provider that starts VMs ({starting})",
                       provider.value)
    settings = read_settings(top)
    cidr, first = read_network(top, provider)
    images, manifest = read_images(top)
    base = source.resolve().parent
    f = top.map("fabric", required=True)
    f.done(FABRIC_KEYS)
    version = f.str("version", "unknown", pattern=re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}"),
                    what="a version label such as 3.0.0")
    channel = f.str("channel", pattern=CHANNEL_RE, what="a channel name ([a-z][a-z0-9.-]*)")
    chaincode = f.str("chaincode", pattern=NAME_RE, what="a chaincode name")
    msps = _msps(f, base)
    gateways = _gateways(f, base, msps)
    operations = _operations(f, base)
    aliases = _aliases(f)
    # the operator's own address of an endpoint, for the preflight (an address in `hosts`
    # is what the VMs reach, which the operator's machine may not: QEMU's 10.0.2.2)
    launcher_hosts = _aliases(f, "launcher_hosts",
                              "each names an endpoint the preflight dials from this machine")
    caliper = read_caliper(top)
    monitor = read_monitor(top)
    bench = read_bench(top)
    top.done()
    return ByofSpec(
        source=source, name=name, provider=provider, settings=settings, cidr=cidr,
        first_host=first, images=images, manifest=manifest, fabric=FabricVersion(version),
        channel=channel, chaincode=chaincode, msps=msps, gateways=gateways,
        operations=operations, aliases=aliases, caliper=caliper, monitor=monitor,
        bench_thresholds=bench, launcher_hosts=launcher_hosts)


def files(spec: ByofSpec) -> list[tuple[str, Path]]:
    """(field path, file) of every file the spec names, in spec order."""
    out: list[tuple[str, Path]] = []
    for m in spec.msps:
        out.append((f"{m.where}.ca_cert", m.ca_cert))
        for i in m.identities:
            if i.wallet is not None:
                out.append((f"{i.where}.wallet", i.wallet))
            else:
                cert, key = i.pem_files()
                out += [(f"{i.where}.cert", cert), (f"{i.where}.key", key)]
    out += [(f"{g.where}.tls_ca", g.tls_ca) for g in spec.gateways if g.tls_ca_pem is None]
    for o in spec.operations:
        out += [(f"{o.where}.{k}", p) for k, p in (("tls_ca", o.tls_ca),
                                                   ("client_cert", o.client_cert),
                                                   ("client_key", o.client_key)) if p]
    return out
