"""Preflight of a BYOF spec: the user's files and endpoints, checked before anything exists.

`launch byof BYOF.yaml --check` runs it alone; `launch byof` (and `launch up` of a BYOF
spec) always runs it first and creates nothing when it fails. What is checked:

- every file the spec names exists and parses (PEM certificates, PEM private keys);
- each identity's certificate is issued by its MSP's CA (`ca_cert`), is within its validity
  period, and matches its private key (so an identity of another MSP, or a key of another
  certificate, is found here and not as failed transactions in round 1);
- each gateway's and each https operations endpoint's TLS CA verifies the certificate the
  endpoint presents, under the name the workers check (tls_server_name, else the dialled
  host), when the endpoint is reachable from the launcher within CONNECT_TIMEOUT_S; a host
  name the spec aliases is dialled at its alias address, as the workers will. An endpoint
  the launcher cannot reach is a warning (it may be reachable only from the VMs' network),
  never an error and never a hang.

Every check runs on this machine (the launcher); each line says so. The TLS checks dial an
endpoint from here only where here reaches it as the VMs will: an address that means
something else from this machine (QEMU's 10.0.2.2 is this machine as a guest sees it; a
cloud's private addresses; the environment's own network, `network.cidr`) is not dialled,
and the check is skipped with the reason, unless `fabric.launcher_hosts` gives the address
this machine reaches the endpoint at (then that one is dialled, with the name the workers
check).

Failures name the spec field and what was found; all of them are reported at once.
"""

from __future__ import annotations

import datetime as _dt
import functools
import ipaddress
import socket
import ssl
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from fabkit import inputs
from fabkit.errors import InputError
from launch.machines.providers.base import provider_class
from launch.spec.byof import ByofSpec, Identity, identity_pems

CONNECT_TIMEOUT_S = 3.0      # TCP connect and TLS handshake, each endpoint
MAX_PEM_BYTES = 1 << 20
PARALLEL = 16                # endpoints checked at once (unreachable ones wait the timeout)


@dataclass(frozen=True)
class Finding:
    """One failed check or warning: the spec field and what was found."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


HERE = "[this machine]"      # where a check ran: every preflight check runs on the launcher


@dataclass(frozen=True)
class Report:
    """What preflight found. `ok` lines say what passed (shown with -v and in JSON);
    `skipped`: endpoints this machine does not dial, with the reason."""

    source: Path
    failures: tuple[Finding, ...] = ()
    warnings: tuple[Finding, ...] = ()
    ok: tuple[str, ...] = ()
    skipped: tuple[Finding, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"spec": str(self.source), "failures": [str(f) for f in self.failures],
                "warnings": [str(w) for w in self.warnings], "ok": list(self.ok),
                "skipped": [str(k) for k in self.skipped]}

    def raise_for_failures(self) -> None:
        """InputError (exit 2) listing every failure first, then the warnings (a warning
        printed before the error would hide what is wrong)."""
        if self.failures:
            also = "".join(f"\n  warning: {w}" for w in self.warnings)
            raise InputError(f"{self.source}: preflight failed ({len(self.failures)} "
                             "problem(s)); nothing was created:\n  "
                             + "\n  ".join(str(f) for f in self.failures) + also,
                             hint="fix the files the fields name, then `launch byof "
                                  f"{self.source} --check` again")


class _Problem(Exception):
    """A check failed (message: what was found)."""


def _read(path: Path, what: str) -> str:
    if not path.exists():
        raise _Problem(f"file {path} does not exist")
    try:
        return inputs.read_text(path, what=what, max_bytes=MAX_PEM_BYTES)
    except InputError as exc:
        raise _Problem(exc.message) from None


def load_certs(path: Path, text: str | None = None) -> list[x509.Certificate]:
    """Every PEM certificate in a file (at least one); `text`: its content, already read
    (a wallet entry's)."""
    text = _read(path, "PEM certificate file") if text is None else text
    try:
        certs = x509.load_pem_x509_certificates(text.encode())
    except ValueError as exc:
        raise _Problem(f"{path} is not a PEM certificate ({exc})") from None
    return certs


def load_key(path: Path, text: str | None = None) -> PrivateKeyTypes:
    """An unencrypted PEM private key (`text`: its content, already read)."""
    text = _read(path, "PEM private key file") if text is None else text
    try:
        return serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise _Problem(f"{path} is not an unencrypted PEM private key ({exc})") from None


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def check_identity(cert_path: Path, key_path: Path, cas: Sequence[x509.Certificate],
                   ca_field: str, *, now: _dt.datetime | None = None,
                   pems: tuple[str, str] | None = None) -> str:
    """The identity's subject when its certificate is issued by one of `cas`, valid now and
    matching its key; _Problem naming what is wrong otherwise. `pems`: (certificate, key)
    already read (a wallet entry, named by both paths)."""
    cert = load_certs(cert_path, pems[0] if pems else None)[0]
    key = load_key(key_path, pems[1] if pems else None)
    now = now or _dt.datetime.now(tz=_dt.UTC)
    issuer = None
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
            issuer = ca
            break
        except (ValueError, TypeError, InvalidSignature):
            continue
    if issuer is None:
        raise _Problem(f"{cert_path} ({_name(cert)}) is not issued by {ca_field} "
                       f"({', '.join(_name(c) for c in cas)}): its issuer is "
                       f"{cert.issuer.rfc4514_string()} (an identity of another MSP?)")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise _Problem(f"{cert_path} ({_name(cert)}) is valid from "
                       f"{cert.not_valid_before_utc:%Y-%m-%d} to "
                       f"{cert.not_valid_after_utc:%Y-%m-%d}, not now")
    if _spki(cert.public_key()) != _spki(key.public_key()):
        raise _Problem(f"the key {key_path} does not match the certificate {cert_path} "
                       f"({_name(cert)}): their public keys differ")
    return _name(cert)


Dial = Callable[[str, int, float], socket.socket]


def _dial(host: str, port: int, timeout: float) -> socket.socket:
    return socket.create_connection((host, port), timeout=timeout)


@dataclass(frozen=True)
class Endpoint:
    """A TLS (or plain TCP) endpoint to try from the launcher."""

    field: str
    host: str            # as in the spec
    port: int
    server_name: str | None   # None: plain TCP (http operations)
    ca_file: Path | None = None   # None with a server name: the system's trust store
    client_cert: Path | None = None
    client_key: Path | None = None
    alpn: tuple[str, ...] = ()
    ca_pem: str | None = None     # the CA inline (a connection profile's), named by ca_file


@dataclass(frozen=True)
class Probe:
    """The outcome of one endpoint: ok, a failure or a warning (one of them)."""

    ok: str = ""
    failure: Finding | None = None
    warning: Finding | None = None


def probe(ep: Endpoint, aliases: dict[str, str] | None = None, *, dial: Dial = _dial,
          timeout: float = CONNECT_TIMEOUT_S, via: str = "alias") -> Probe:
    """Connect to an endpoint from this machine and, for TLS, verify its certificate with
    its CA. ``aliases``: host -> the address to dial (``via`` says where it came from)."""
    address = (aliases or {}).get(ep.host, ep.host)
    shown = f"{ep.host}:{ep.port}" + (f" ({via} {address})" if address != ep.host else "")
    try:
        sock = dial(address, ep.port, timeout)
    except OSError as exc:
        return Probe(warning=Finding(ep.field, f"{shown} is not reachable from the launcher "
                                     f"({exc.strerror or exc}): its TLS certificate is not "
                                     "checked here (the VMs may still reach it)"))
    try:
        if ep.server_name is None:
            return Probe(ok=f"{HERE} {ep.field}: {shown} answers")
        if ep.ca_pem is not None:
            ctx = ssl.create_default_context(cadata=ep.ca_pem)
        else:
            ctx = ssl.create_default_context(cafile=str(ep.ca_file) if ep.ca_file else None)
        if ep.client_cert and ep.client_key:
            ctx.load_cert_chain(str(ep.client_cert), str(ep.client_key))
        if ep.alpn:
            ctx.set_alpn_protocols(list(ep.alpn))
        sock.settimeout(timeout)
        try:
            with ctx.wrap_socket(sock, server_hostname=ep.server_name) as tls:
                der = tls.getpeercert(binary_form=True)
                if der is None:     # a verified handshake always has one
                    raise ssl.SSLError("the server presented no certificate")
                cert = x509.load_der_x509_certificate(der)
                return Probe(ok=f"{HERE} {ep.field}: {shown} presents {_name(cert)}, "
                                f"verified by "
                                f"{ep.ca_file or 'the system trust store'} for "
                                f"{ep.server_name}")
        except ssl.SSLCertVerificationError as exc:
            trust = ep.ca_file or "the system trust store"
            return Probe(failure=Finding(ep.field, f"{shown}: its TLS certificate does not "
                                         f"verify against {trust} for the name "
                                         f"{ep.server_name}: "
                                         f"{exc.verify_message or exc.reason}"))
        except (ssl.SSLError, OSError) as exc:
            return Probe(warning=Finding(ep.field, f"{shown}: the TLS handshake did not "
                                         f"complete ({exc}): certificate not checked"))
    finally:
        sock.close()


def endpoints(spec: ByofSpec) -> list[Endpoint]:
    """Every gateway and operations endpoint, as the VMs will dial it."""
    out = [Endpoint(f"{g.where}.endpoint", g.host, g.port, g.fqdn, g.tls_ca, alpn=("h2",),
                    ca_pem=g.tls_ca_pem)
           for g in spec.gateways]
    for o in spec.operations:
        host, _, port = o.target.rpartition(":")
        host = host.strip("[]")
        if o.scheme == "https":
            out.append(Endpoint(f"{o.where}.url", host, int(port), o.tls_server_name or host,
                                o.tls_ca, o.client_cert, o.client_key))
        else:
            out.append(Endpoint(f"{o.where}.url", host, int(port), None))
    return out


def vm_side_networks(spec: ByofSpec) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network,
                                                    str]]:
    """Networks whose addresses this machine does not reach as the VMs do: the
    environment's own network and what its provider declares (VM_SIDE_NETWORKS)."""
    nets = [(ipaddress.ip_network(spec.cidr), "the environment's own network (network.cidr)")]
    declared = getattr(provider_class(spec.provider.value), "VM_SIDE_NETWORKS", ())
    return nets + [(ipaddress.ip_network(net), why) for net, why in declared]


def launcher_route(ep: Endpoint, spec: ByofSpec,
                   vm_side: Sequence[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]
                   ) -> tuple[str | None, str]:
    """Where this machine dials an endpoint: (address, how it was chosen), or (None, why it
    is not dialled from here)."""
    if ep.host in spec.launcher_hosts:
        return spec.launcher_hosts[ep.host], "fabric.launcher_hosts:"
    address = spec.aliases.get(ep.host, ep.host)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address, "alias"        # a DNS name: resolved here as on the VMs
    for net, why in vm_side:
        if ip.version == net.version and ip in net:
            return None, (f"{ep.host}:{ep.port} is {address}, which the VMs reach but this "
                          f"machine may not ({net}: {why}); not dialled from here, its TLS "
                          f"certificate is checked by the workers when they connect. Give "
                          f"fabric.launcher_hosts.{ep.host}: ADDRESS (where this machine "
                          "reaches it) to check it here")
    return address, "alias"


def run(spec: ByofSpec, *, dial: Dial = _dial, timeout: float = CONNECT_TIMEOUT_S,
        now: _dt.datetime | None = None) -> Report:
    """Every check of the module docstring; never raises for what it finds."""
    failures: list[Finding] = []
    warnings: list[Finding] = []
    ok: list[str] = []
    parsed: set[Path] = set()

    def attempt(where: str, fn: Callable[[], str | None]) -> bool:
        try:
            msg = fn()
        except _Problem as exc:
            failures.append(Finding(where, str(exc)))
            return False
        if msg:
            ok.append(f"{HERE} {where}: {msg}")
        return True

    for m in spec.msps:
        ca_field = f"{m.where}.ca_cert"
        cas: list[x509.Certificate] = []

        def ca_ok(m=m, cas=cas) -> str:
            cas.extend(load_certs(m.ca_cert))
            return f"{m.msp_id} CA {', '.join(_name(c) for c in cas)}"

        if not attempt(ca_field, ca_ok):
            continue
        parsed.add(m.ca_cert)
        for ident in m.identities:
            attempt(f"{ident.where}",
                    functools.partial(_identity_of, ident, m.msp_id, cas, ca_field, now))
    # TLS CAs and client certificates parse (the connection checks below need them)
    reachable: list[Endpoint] = []
    for ep in endpoints(spec):
        files = [(k, p) for k, p in (("tls_ca", ep.ca_file), ("client_cert", ep.client_cert))
                 if p is not None]
        base = ep.field.rpartition(".")[0]
        good = all(attempt(f"{base}.{k}", functools.partial(
            _parses, p, ep.ca_pem if k == "tls_ca" else None)) for k, p in files)
        if ep.client_cert and ep.client_key and good:
            good = attempt(f"{base}.client_key",
                           functools.partial(_key_matches, ep.client_cert, ep.client_key))
        if good:
            reachable.append(ep)
    vm_side = vm_side_networks(spec)
    skipped: list[Finding] = []
    routes: list[tuple[Endpoint, str, str]] = []
    for ep in reachable:
        address, how = launcher_route(ep, spec, vm_side)
        if address is None:
            skipped.append(Finding(ep.field, how))
        else:
            routes.append((ep, address, how))
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        probes = list(pool.map(lambda r: probe(r[0], {r[0].host: r[1]}, dial=dial,
                                               timeout=timeout, via=r[2]), routes))
    for p in probes:
        if p.failure:
            failures.append(p.failure)
        if p.warning:
            warnings.append(p.warning)
        if p.ok:
            ok.append(p.ok)
    return Report(spec.source, tuple(failures), tuple(warnings), tuple(ok), tuple(skipped))


def _identity(ident: Identity, msp_id: str, cas: Sequence[x509.Certificate], ca_field: str,
              now: _dt.datetime | None) -> str:
    if ident.wallet is None:
        cert, key = ident.pem_files()
        return check_identity(cert, key, cas, ca_field, now=now)
    try:
        pems = identity_pems(ident, msp_id)
    except InputError as exc:
        raise _Problem(exc.message) from None
    return check_identity(ident.wallet, ident.wallet, cas, ca_field, now=now, pems=pems)


def _identity_of(ident: Identity, msp_id: str, cas: Sequence[x509.Certificate],
                 ca_field: str, now: _dt.datetime | None) -> str:
    return f"{_identity(ident, msp_id, cas, ca_field, now)} of {msp_id}"


def _parses(path: Path, text: str | None) -> None:
    """The certificates of a file parse (load_certs raises a _Problem otherwise)."""
    load_certs(path, text)


def _key_matches(cert_file: Path, key_file: Path) -> None:
    cert = load_certs(cert_file)[0]
    key = load_key(key_file)
    if _spki(cert.public_key()) != _spki(key.public_key()):
        raise _Problem(f"the key {key_file} does not match the certificate "
                       f"{cert_file} ({_name(cert)})")
    return None


def check(spec: ByofSpec, *, dial: Dial = _dial, timeout: float = CONNECT_TIMEOUT_S,
          now: _dt.datetime | None = None) -> Report:
    """run(), raising InputError (exit 2) when anything failed; the warnings are returned."""
    report = run(spec, dial=dial, timeout=timeout, now=now)
    report.raise_for_failures()
    return report
