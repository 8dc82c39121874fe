"""Crypto material of an environment: a cryptogen-compatible MSP/TLS tree.

Per organisation a signing CA (``ca.<domain>``) and a TLS CA (``tlsca.<domain>``), and for
every node, the Admin and each user an MSP identity (enrollment key + certificate carrying
the NodeOU) and a TLS key pair. Names, directories, subjects and extensions are the ones
Fabric v3.0.0 ``cryptogen`` produces (internal/cryptogen/{ca,msp}, cmd/cryptogen), so
configtxgen, peer, orderer and osnadmin accept the tree as they accept cryptogen's:

    <out>/peerOrganizations/<domain>/
        ca/{ca.<domain>-cert.pem,priv_sk}   tlsca/{tlsca.<domain>-cert.pem,priv_sk}
        msp/{admincerts/,cacerts/,tlscacerts/,config.yaml}
        peers/<host>/{msp/{admincerts/,cacerts/,keystore/priv_sk,signcerts/<host>-cert.pem,
                          tlscacerts/,config.yaml},tls/{ca.crt,server.crt,server.key}}
        users/<User>@<domain>/{msp/...,tls/{ca.crt,client.crt,client.key}}
    <out>/ordererOrganizations/<domain>/... (orderers/ instead of peers/)

Re-generating into an existing tree keeps what is still right (a CA whose key and cert
exist; an identity whose cert is signed by the current CA, names the same subject and SANs
and has its key beside it) and issues only what is missing or changed, so a re-render does
not rotate every key. ``rotate=True`` issues every key and certificate anew.
"""

from __future__ import annotations

import base64
import datetime as dt
import errno
import hashlib
import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
import signal
import stat
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509.name import _ASN1Type  # no public way to choose a string type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fabkit import sigmask
from fabkit.errors import InputError

log = logging.getLogger("fabperf.crypto")
_PIPE_BUF = 4096


class OrgKind(StrEnum):
    """Which tree an organisation lives in (peerOrganizations or ordererOrganizations)."""

    PEER = "peer"
    ORDERER = "orderer"

    def root(self) -> str:
        """The top-level directory cryptogen uses for this kind."""
        return f"{self.value}Organizations"

    def nodes_dir(self) -> str:
        """The per-organisation directory holding the nodes: peers/ or orderers/."""
        return f"{self.value}s"


class NodeOU(StrEnum):
    """The NodeOU an identity certificate carries (cryptogen's msp.{PEER,ORDERER,...}OU)."""

    PEER = "peer"
    ORDERER = "orderer"
    ADMIN = "admin"
    CLIENT = "client"


@dataclass(frozen=True)
class NodeIdentity:
    """A peer or orderer: FQDN (the CN and directory name), short name, SANs, role."""

    hostname: str
    short: str
    sans: tuple[str, ...]
    ou: NodeOU

    def __post_init__(self) -> None:
        object.__setattr__(self, "sans", tuple(self.sans))
        object.__setattr__(self, "ou", NodeOU(self.ou))


@dataclass(frozen=True)
class OrgCrypto:
    """One organisation's crypto: its nodes and users (Admin@<domain> is always added)."""

    name: str
    domain: str
    msp_id: str
    kind: OrgKind
    nodes: tuple[NodeIdentity, ...]
    users: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", OrgKind(self.kind))
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "users", tuple(self.users))


ADMIN = "Admin"

# --- paths -----------------------------------------------------------------------------


def org_dir(out: Path, org: OrgCrypto) -> Path:
    """out/peerOrganizations/<domain> or out/ordererOrganizations/<domain>."""
    return Path(out) / OrgKind(org.kind).root() / org.domain


def node_dir(out: Path, org: OrgCrypto, hostname: str) -> Path:
    """out/.../<domain>/peers/<hostname> or .../orderers/<hostname>."""
    return org_dir(out, org) / OrgKind(org.kind).nodes_dir() / hostname


def user_dir(out: Path, org: OrgCrypto, user: str) -> Path:
    """out/.../<domain>/users/<user>@<domain> (user is "Admin" or e.g. "User1")."""
    return org_dir(out, org) / "users" / f"{user}@{org.domain}"


def ca_cert_name(org: OrgCrypto) -> str:
    """File name of the signing CA certificate: ca.<domain>-cert.pem."""
    return f"ca.{org.domain}-cert.pem"


def tlsca_cert_name(org: OrgCrypto) -> str:
    """File name of the TLS CA certificate: tlsca.<domain>-cert.pem."""
    return f"tlsca.{org.domain}-cert.pem"


# --- certificate profile (what cryptogen puts in its certificates) ----------------------

VALIDITY = dt.timedelta(days=3650)          # ca.x509Template: 3650 * 24h
BACKDATE = dt.timedelta(minutes=5)          # notBefore = now rounded to the minute - 5 min
RENEW_BEFORE = dt.timedelta(days=30)        # a kept cert must outlive a benchmark campaign
_CURVE = ec.SECP256R1()
_HASH = hashes.SHA256()
_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_P256_HALF_N = _P256_N // 2
_ECDSA_SHA256_ALGID = bytes.fromhex("300a06082a8648ce3d040302")

_KU_CA = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=True,
    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
    encipher_only=False, decipher_only=False,
)
_KU_SIGN = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
    encipher_only=False, decipher_only=False,
)
_KU_TLS = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=True,
    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
    encipher_only=False, decipher_only=False,
)
# Extension order and criticality as Go's x509.CreateCertificate emits them:
# KeyUsage (critical), ExtKeyUsage, BasicConstraints (critical), SKI, AKI, SAN.
_EXT_KU_CA = x509.Extension(_KU_CA.oid, True, _KU_CA)
_EXT_KU_SIGN = x509.Extension(_KU_SIGN.oid, True, _KU_SIGN)
_EXT_KU_TLS = x509.Extension(_KU_TLS.oid, True, _KU_TLS)
_EKU_CA = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH])
_EKU_TLS = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
_EXT_EKU_CA = x509.Extension(_EKU_CA.oid, False, _EKU_CA)
_EXT_EKU_TLS = x509.Extension(_EKU_TLS.oid, False, _EKU_TLS)
_BC_CA = x509.BasicConstraints(ca=True, path_length=None)
_BC_LEAF = x509.BasicConstraints(ca=False, path_length=None)
_EXT_BC_CA = x509.Extension(_BC_CA.oid, True, _BC_CA)
_EXT_BC_LEAF = x509.Extension(_BC_LEAF.oid, True, _BC_LEAF)

_PRINTABLE = re.compile(r"[A-Za-z0-9'()+,\-./:=? ]*")
_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _attr(oid: x509.ObjectIdentifier, value: str) -> x509.NameAttribute:
    # Go's encoding/asn1 writes a PrintableString when every character allows it and a
    # UTF8String otherwise ("User1@org1..." has '@'); matching it keeps subjects
    # byte-identical to cryptogen's.
    kind = _ASN1Type.PrintableString if _PRINTABLE.fullmatch(value) else _ASN1Type.UTF8String
    return x509.NameAttribute(oid, value, _type=kind)


_C_ST_L = (
    _attr(NameOID.COUNTRY_NAME, "US"),
    _attr(NameOID.STATE_OR_PROVINCE_NAME, "California"),
    _attr(NameOID.LOCALITY_NAME, "San Francisco"),
)


def _ca_subject(domain: str, cn: str) -> x509.Name:
    """C, ST, L, O=<domain>, CN (pkix.Name.ToRDNSequence order)."""
    return x509.Name([*_C_ST_L, _attr(NameOID.ORGANIZATION_NAME, domain),
                      _attr(NameOID.COMMON_NAME, cn)])


def _leaf_subject(cn: str, ou: NodeOU | None) -> x509.Name:
    """C, ST, L, [OU], CN: cryptogen leaf certs carry no O."""
    attrs = list(_C_ST_L)
    if ou is not None:
        attrs.append(_attr(NameOID.ORGANIZATIONAL_UNIT_NAME, ou.value))
    attrs.append(_attr(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName | None:
    """DNS names first, then IP addresses, as Go marshals them; duplicates dropped."""
    dns: list[x509.GeneralName] = []
    ips: list[x509.GeneralName] = []
    seen: set[str] = set()
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        try:
            ips.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            dns.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(dns + ips) if dns or ips else None


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(raw),)) + raw


def _low_s_der(cert: x509.Certificate) -> bytes:
    """The certificate's DER with its ECDSA signature in low-S form.

    cryptogen signs with a low-S signer and Fabric normalises signatures to low S; a
    high-S certificate is re-encoded by Fabric's MSP (sanitizeCert), so its serialized
    identity would differ from the PEM on disk. (r, n-s) is the same valid signature.
    """
    der = cert.public_bytes(serialization.Encoding.DER)
    r, s = decode_dss_signature(cert.signature)
    if s <= _P256_HALF_N:
        return der
    sig = encode_dss_signature(r, _P256_N - s)
    bits = b"\x03" + _der_len(len(sig) + 1) + b"\x00" + sig
    body = cert.tbs_certificate_bytes + _ECDSA_SHA256_ALGID + bits
    return b"\x30" + _der_len(len(body)) + body


def _pem(der: bytes, label: str = "CERTIFICATE") -> bytes:
    b64 = base64.b64encode(der)
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return b"".join((f"-----BEGIN {label}-----\n".encode(), b"\n".join(lines),
                     f"\n-----END {label}-----\n".encode()))


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _ski(pub: ec.EllipticCurvePublicKey) -> bytes:
    # ca.computeSKI: SHA-256 of the uncompressed point (RFC 7093 method 4), not SHA-1.
    point = pub.public_bytes(serialization.Encoding.X962,
                             serialization.PublicFormat.UncompressedPoint)
    return hashlib.sha256(point).digest()


def _not_before() -> dt.datetime:
    now = dt.datetime.now(dt.UTC)
    rounded = (now + dt.timedelta(seconds=30)).replace(second=0, microsecond=0)
    return rounded - BACKDATE


def _serial() -> int:
    # cryptogen: uniform in [0, 2^128); a serial must be positive.
    return secrets.randbits(128) or 1


# --- files -----------------------------------------------------------------------------


def _write(path: str | Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` into a new file created with ``mode``; an identical file stays.

    Always a new inode, never O_TRUNC: an old file's looser mode cannot survive (keys stay
    0600 without a chmod), and ext4 does not start writeback on close as it does for a file
    truncated and rewritten (auto_da_alloc). No fsync: the bundle can be re-rendered.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        if _same(path, data, mode):
            return
        os.unlink(path)
        fd = os.open(path, flags, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


# Where a hard link cannot be made (a filesystem without them, a full link count): copy.
_NO_LINK = frozenset({errno.EPERM, errno.EMLINK, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP})


def _link(src: str, path: str, data: bytes) -> None:
    """Make ``path`` a hard link of ``src`` (a public file holding ``data``, written first).

    The CA certificates and NodeOU config every identity carries are one inode per
    organisation: a link costs no inode and no data block (creating an inode is what an
    ext4 render spends its time on), and a reader sees the same bytes. crypto writes every
    changed file as a new inode, so replacing ``src`` later never changes a kept link; an
    existing ``path`` that already holds ``data`` stays, as in ``_write``.
    """
    try:
        os.link(src, path)
        return
    except FileExistsError:
        try:
            if os.path.samestat(os.stat(src), os.lstat(path)) or _same(path, data, 0o644):
                return
        except OSError:
            pass
        os.unlink(path)
        try:
            os.link(src, path)
            return
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
    _write(path, data)


def _write_secret(path: str | Path, data: bytes) -> None:
    """Write a private key: PEM in a file created 0600."""
    _write(path, data, 0o600)


def _same(path: str | Path, data: bytes, mode: int) -> bool:
    """Whether ``path`` holds ``data`` already, with no permission beyond ``mode``."""
    try:
        with open(path, "rb") as f:
            if stat.S_IMODE(os.fstat(f.fileno()).st_mode) & ~mode:
                return False
            return f.read() == data
    except OSError:
        return False


def _read(path: str | Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _node_ous_config(ca_file: str) -> bytes:
    """msp/config.yaml exactly as cryptogen's exportConfig marshals it."""
    lines = ["NodeOUs:", "  Enable: true"]
    for field, ou in (("ClientOUIdentifier", NodeOU.CLIENT), ("PeerOUIdentifier", NodeOU.PEER),
                      ("AdminOUIdentifier", NodeOU.ADMIN),
                      ("OrdererOUIdentifier", NodeOU.ORDERER)):
        lines += [f"  {field}:", f"    Certificate: cacerts/{ca_file}",
                  f"    OrganizationalUnitIdentifier: {ou.value}"]
    return ("\n".join(lines) + "\n").encode()


# --- CAs and issuing ---------------------------------------------------------------------


@dataclass(frozen=True)
class _CA:
    """A loaded or fresh CA, with what every issued cert reuses precomputed."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    subject: x509.Name
    pem: bytes
    aki: x509.Extension[x509.AuthorityKeyIdentifier]
    subject_der: bytes  # the issuer of every certificate it signs


def _ca_from(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate, subject: x509.Name,
             pem: bytes) -> _CA:
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    aki = x509.AuthorityKeyIdentifier(ski, None, None)
    return _CA(key, cert, subject, pem, x509.Extension(aki.oid, False, aki),
               subject.public_bytes())


def _ca(directory: Path, cn: str, domain: str, not_before: dt.datetime, rotate: bool) -> _CA:
    """Load the CA in ``directory`` if its key and cert exist and agree, else make one."""
    subject = _ca_subject(domain, cn)
    cert_path = directory / f"{cn}-cert.pem"
    key_path = directory / "priv_sk"
    if not rotate:
        loaded = _load_ca(cert_path, key_path, subject)
        if loaded is not None:
            return loaded
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(_CURVE)
    pub = key.public_key()
    ski = x509.SubjectKeyIdentifier(_ski(pub))
    builder = x509.CertificateBuilder(
        issuer_name=subject, subject_name=subject, public_key=pub, serial_number=_serial(),
        not_valid_before=not_before, not_valid_after=not_before + VALIDITY,
        extensions=[_EXT_KU_CA, _EXT_EKU_CA, _EXT_BC_CA, x509.Extension(ski.oid, False, ski)],
    )
    cert = x509.load_der_x509_certificate(_low_s_der(builder.sign(key, _HASH)))
    pem = _pem(cert.public_bytes(serialization.Encoding.DER))
    _write_secret(key_path, _key_pem(key))
    _write(cert_path, pem)
    log.debug("issued CA %s", cn)
    return _ca_from(key, cert, subject, pem)


def _load_ca(cert_path: Path, key_path: Path, subject: x509.Name) -> _CA | None:
    pem, key_pem = _read(cert_path), _read(key_path)
    if pem is None or key_pem is None:
        return None
    try:
        cert = x509.load_pem_x509_certificate(pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != _CURVE.name:
            return None
        if key.public_key() != cert.public_key():
            return None
        if cert.subject.public_bytes() != subject.public_bytes():
            return None
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return None
        if cert.not_valid_after_utc < dt.datetime.now(dt.UTC) + RENEW_BEFORE:
            return None
        return _ca_from(key, cert, subject, pem)
    except (ValueError, TypeError, x509.ExtensionNotFound):
        return None


def _issue(ca: _CA, subject: x509.Name, extensions: list[x509.Extension],
           not_before: dt.datetime) -> tuple[bytes, bytes]:
    """A fresh key and a cert for it signed by ``ca``: (cert PEM, key PEM).

    The TBSCertificate is assembled from DER pieces (``_tbs``, byte-identical to what
    x509.CertificateBuilder encodes: a test holds them equal) and signed with the CA key:
    a builder costs three times the signature, and a render issues 1,100 of these.
    """
    key = ec.generate_private_key(_CURVE)
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    tbs = _tbs(ca, subject, extensions, not_before, _serial(), spki)
    r, s = decode_dss_signature(ca.key.sign(tbs, ec.ECDSA(_HASH)))
    if s > _P256_HALF_N:
        s = _P256_N - s  # low S, as cryptogen signs (see _low_s_der)
    sig = encode_dss_signature(r, s)
    der = _tlv(0x30, tbs + _ECDSA_SHA256_ALGID + _tlv(0x03, b"\x00" + sig))
    return _pem(der), _key_pem(key)


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes((tag,)) + _der_len(len(value)) + value


_V3 = bytes.fromhex("a003020102")  # [0] EXPLICIT INTEGER 2
_OID_DER = {
    x509.oid.ExtensionOID.KEY_USAGE: bytes.fromhex("0603551d0f"),
    x509.oid.ExtensionOID.EXTENDED_KEY_USAGE: bytes.fromhex("0603551d25"),
    x509.oid.ExtensionOID.BASIC_CONSTRAINTS: bytes.fromhex("0603551d13"),
    x509.oid.ExtensionOID.AUTHORITY_KEY_IDENTIFIER: bytes.fromhex("0603551d23"),
    x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME: bytes.fromhex("0603551d11"),
}
_TRUE = bytes.fromhex("0101ff")


def _der_int(n: int) -> bytes:
    """A non-negative INTEGER (a leading zero byte when the top bit is set)."""
    return _tlv(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def _der_time(t: dt.datetime) -> bytes:
    """RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050."""
    t = t.astimezone(dt.UTC)
    if t.year < 2050:
        return _tlv(0x17, t.strftime("%y%m%d%H%M%SZ").encode())
    return _tlv(0x18, t.strftime("%Y%m%d%H%M%SZ").encode())


def _ext_der(ext: x509.Extension) -> bytes:
    """Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue }."""
    return _tlv(0x30, _OID_DER[ext.oid] + (_TRUE if ext.critical else b"")
                + _tlv(0x04, ext.value.public_bytes()))


def _tbs(ca: _CA, subject: x509.Name, extensions: list[x509.Extension],
         not_before: dt.datetime, serial: int, spki: bytes) -> bytes:
    """TBSCertificate DER of a leaf certificate issued by ``ca`` (ECDSA-SHA256, v3)."""
    validity = _tlv(0x30, _der_time(not_before) + _der_time(not_before + VALIDITY))
    exts = _tlv(0xA3, _tlv(0x30, b"".join(_ext_der(e) for e in extensions)))
    return _tlv(0x30, b"".join((_V3, _der_int(serial), _ECDSA_SHA256_ALGID, ca.subject_der,
                                validity, subject.public_bytes(), spki, exts)))


def _keep(cert_path: str, key_path: str, ca: _CA, subject: x509.Name,
          san: x509.SubjectAlternativeName | None) -> bool:
    """Whether an existing cert + key may stay: same CA, subject, SANs, key, still valid."""
    pem, key_pem = _read(cert_path), _read(key_path)
    if pem is None or key_pem is None:
        return False
    try:
        cert = x509.load_pem_x509_certificate(pem)
        if cert.subject != subject or cert.issuer != ca.subject:
            return False
        cert.verify_directly_issued_by(ca.cert)
        if cert.not_valid_after_utc < dt.datetime.now(dt.UTC) + RENEW_BEFORE:
            return False
        try:
            have = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            have = None
        if _san_set(have) != _san_set(san):
            return False
        key = serialization.load_pem_private_key(key_pem, password=None)
        return key.public_key() == cert.public_key()
    except (ValueError, TypeError, InvalidSignature):
        return False


def _san_set(san: x509.SubjectAlternativeName | None) -> frozenset[tuple[str, str]]:
    if san is None:
        return frozenset()
    return frozenset((type(g).__name__, str(g.value)) for g in san)


@dataclass(frozen=True)
class _OrgCAs:
    sign: _CA
    tls: _CA
    ca_file: str
    tlsca_file: str
    config: bytes
    msp: str  # the organisation's verifying MSP, whose files every identity links

    @classmethod
    def of(cls, org: OrgCrypto, sign: _CA, tls: _CA, base: Path) -> _OrgCAs:
        return cls(sign, tls, ca_cert_name(org), tlsca_cert_name(org),
                   _node_ous_config(ca_cert_name(org)), os.fspath(base / "msp"))

    def shared(self) -> tuple[tuple[str, str, bytes], ...]:
        """(path under an identity's base, org MSP file it links, content)."""
        ca = os.path.join(self.msp, "cacerts", self.ca_file)
        tlsca = os.path.join(self.msp, "tlscacerts", self.tlsca_file)
        return ((os.path.join("msp", "cacerts", self.ca_file), ca, self.sign.pem),
                (os.path.join("msp", "tlscacerts", self.tlsca_file), tlsca, self.tls.pem),
                (os.path.join("msp", "config.yaml"), os.path.join(self.msp, "config.yaml"),
                 self.config),
                (os.path.join("tls", "ca.crt"), tlsca, self.tls.pem))


# One identity to issue: (its directory, CN, NodeOU, SANs, its organisation's CAs,
# "server" or "client" for its TLS file names).
_Job = tuple[str, str, NodeOU, tuple[str, ...], _OrgCAs, str]
_MSP_DIRS = ("admincerts", "cacerts", "keystore", "signcerts", "tlscacerts")


def _local_msp(base: str, cn: str, ou: NodeOU, sans: Sequence[str], cas: _OrgCAs,
               tls_prefix: str, not_before: dt.datetime, rotate: bool,
               counts: dict[str, int]) -> list[tuple[str, bytes, bool | str]]:
    """One identity's msp/ and tls/ (cryptogen's GenerateLocalMSP) as files to write.

    Returns (path, content, how) for ``_write_identity``, ``how`` being True for a private
    key, False for a public file, or the org MSP file to hard-link; kept files are not listed.
    """
    msp = os.path.join(base, "msp")
    tls = os.path.join(base, "tls")
    files: list[tuple[str, bytes, bool | str]] = [
        (os.path.join(base, rel), data, src) for rel, src, data in cas.shared()]
    subject = _leaf_subject(cn, ou)
    cert_path = os.path.join(msp, "signcerts", f"{cn}-cert.pem")
    key_path = os.path.join(msp, "keystore", "priv_sk")
    if not rotate and _keep(cert_path, key_path, cas.sign, subject, None):
        counts["kept"] += 1
    else:
        cert, key = _issue(cas.sign, subject, [_EXT_KU_SIGN, _EXT_BC_LEAF, cas.sign.aki],
                           not_before)
        files += [(key_path, key, True), (cert_path, cert, False)]
        counts["issued"] += 1

    tls_subject = _leaf_subject(cn, None)
    san = _san(sans)
    exts = [_EXT_KU_TLS, _EXT_EKU_TLS, _EXT_BC_LEAF, cas.tls.aki]
    if san is not None:
        exts.append(x509.Extension(san.oid, False, san))
    cert_path = os.path.join(tls, f"{tls_prefix}.crt")
    key_path = os.path.join(tls, f"{tls_prefix}.key")
    if not rotate and _keep(cert_path, key_path, cas.tls, tls_subject, san):
        counts["kept"] += 1
    else:
        cert, key = _issue(cas.tls, tls_subject, exts, not_before)
        files += [(key_path, key, True), (cert_path, cert, False)]
        counts["issued"] += 1
    return files


def _write_identity(base: str, files: list[tuple[str, bytes, bool | str]]) -> None:
    """Create an identity's directories and write its files (keys 0600, shared CA
    certificates and config as hard links of the organisation's MSP files)."""
    msp = os.path.join(base, "msp")
    os.makedirs(msp, exist_ok=True)
    for sub in (*(os.path.join(msp, d) for d in _MSP_DIRS), os.path.join(base, "tls")):
        try:
            os.mkdir(sub)
        except FileExistsError:
            pass
    for path, data, how in files:
        if how is True:
            _write_secret(path, data)
        elif how is False:
            _write(path, data)
        else:
            _link(how, path, data)


def _verifying_msp(msp: Path, cas: _OrgCAs) -> None:
    """The organisation's MSP (configtx.yaml MSPDir): CA certs and NodeOUs, no keys."""
    for sub in ("admincerts", "cacerts", "tlscacerts"):
        os.makedirs(msp / sub, exist_ok=True)
    _write(msp / "cacerts" / cas.ca_file, cas.sign.pem)
    _write(msp / "tlscacerts" / cas.tlsca_file, cas.tls.pem)
    _write(msp / "config.yaml", cas.config)


def _prune(directory: Path, keep: set[str]) -> None:
    """Remove entries of ``directory`` the spec no longer names, so the tree mirrors it."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name not in keep:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)


def _validate(orgs: Sequence[OrgCrypto]) -> None:
    seen_orgs: set[tuple[str, str]] = set()
    for i, org in enumerate(orgs):
        where = f"organizations[{i}]"
        if not _DNS_NAME.fullmatch(org.domain):
            raise InputError.field(None, f"{where}.domain", "a DNS domain", org.domain)
        key = (OrgKind(org.kind).value, org.domain)
        if key in seen_orgs:
            raise InputError.field(None, f"{where}.domain", "a domain used once per kind",
                                   org.domain)
        seen_orgs.add(key)
        hosts: set[str] = set()
        for j, node in enumerate(org.nodes):
            nwhere = f"{where}.nodes[{j}]"
            if not _DNS_NAME.fullmatch(node.hostname):
                raise InputError.field(None, f"{nwhere}.hostname", "a DNS name", node.hostname)
            if node.hostname in hosts:
                raise InputError.field(None, f"{nwhere}.hostname", "a hostname used once",
                                       node.hostname)
            hosts.add(node.hostname)
            if not _DNS_NAME.fullmatch(node.short):
                raise InputError.field(None, f"{nwhere}.short", "a DNS label", node.short)
            if node.ou.value != OrgKind(org.kind).value:
                raise InputError.field(None, f"{nwhere}.ou",
                                       f"{OrgKind(org.kind).value!r} (the organisation's kind)",
                                       node.ou.value)
            for k, name in enumerate(node.sans):
                try:
                    ipaddress.ip_address(name)
                except ValueError:
                    if not _DNS_NAME.fullmatch(name):
                        raise InputError.field(None, f"{nwhere}.sans[{k}]",
                                               "a DNS name or an IP address", name) from None
        for k, user in enumerate(org.users):
            if not _USER_NAME.fullmatch(user):
                raise InputError.field(None, f"{where}.users[{k}]",
                                       "a user name of letters, digits, '.', '_', '-'", user)


def generate(orgs: Sequence[OrgCrypto], out: Path, *, rotate: bool = False) -> None:
    """Write (or bring up to date) the cryptogen-layout tree for ``orgs`` under ``out``.

    Without ``rotate`` existing CAs and still-matching identities are kept and only new or
    changed ones (new host, changed SANs, another CA) are issued; organisations, nodes and
    users no longer in ``orgs`` are removed. With ``rotate`` everything is issued anew.
    Private keys are PKCS#8 PEM files created with mode 0600.
    """
    _validate(orgs)
    out = Path(out)
    # Nothing to keep in a new tree (the first render): no existing file is looked for.
    rotate = rotate or not out.exists()
    not_before = _not_before()
    counts = {"issued": 0, "kept": 0}
    wanted: dict[str, set[str]] = {kind.root(): set() for kind in OrgKind}
    for org in orgs:
        wanted[OrgKind(org.kind).root()].add(org.domain)
    for root, domains in wanted.items():
        _prune(out / root, domains)

    jobs: list[_Job] = []
    for org in orgs:
        base = org_dir(out, org)
        sign = _ca(base / "ca", f"ca.{org.domain}", org.domain, not_before, rotate)
        tls = _ca(base / "tlsca", f"tlsca.{org.domain}", org.domain, not_before, rotate)
        cas = _OrgCAs.of(org, sign, tls, base)
        _verifying_msp(base / "msp", cas)

        nodes_root = base / OrgKind(org.kind).nodes_dir()
        _prune(nodes_root, {n.hostname for n in org.nodes})
        for node in org.nodes:
            # cryptogen's implicit SANs: the CN (FQDN) and the short hostname first.
            sans = (node.hostname, node.short, *node.sans)
            jobs.append((os.path.join(nodes_root, node.hostname), node.hostname, node.ou,
                         sans, cas, "server"))

        users = [u for u in org.users if u != ADMIN] + [ADMIN]
        _prune(base / "users", {f"{u}@{org.domain}" for u in users})
        for user in users:
            ou = NodeOU.ADMIN if user == ADMIN else NodeOU.CLIENT
            jobs.append((os.fspath(user_dir(out, org, user)), f"{user}@{org.domain}", ou, (),
                         cas, "client"))

    def identity(job: _Job) -> dict[str, int]:
        where, cn, ou, sans, cas, prefix = job
        mine = {"issued": 0, "kept": 0}
        _write_identity(where, _local_msp(where, cn, ou, sans, cas, prefix, not_before, rotate,
                                          mine))
        return mine

    results = _in_two_processes(jobs, identity)
    for r in results:
        counts["issued"] += r["issued"]
        counts["kept"] += r["kept"]
    log.debug("crypto under %s: %d certificates issued, %d kept", out, counts["issued"],
              counts["kept"])


_FORK_MIN = 64          # identities: below this a second process costs more than it saves


def _half(jobs: Sequence[_Job], second: bool) -> Sequence[_Job]:
    """The parent's first half of the jobs or the child's second: contiguous, so the two
    processes mostly create entries in different directories (an organisation's users/
    is locked for every entry made in it)."""
    n = len(jobs) // 2
    return jobs[n:] if second else jobs[:n]


def _in_two_processes(jobs: Sequence[_Job], identity: Callable[[_Job], dict[str, int]]
                      ) -> list[dict[str, int]]:
    """Run ``identity`` on every job, half of them in a forked child process.

    Identities are independent once their CAs exist, and issuing one is CPU work in Python
    and OpenSSL (which hold the GIL) plus mkdir/open/link in the kernel: a second process
    is the only way to use the second core. The child inherits the CAs and the job list
    (no pickling: private keys never leave memory), writes its half of the tree, reports
    its counts (or its error) on a pipe and leaves with os._exit, so it never runs the
    caller's cleanup. Ctrl-C/SIGTERM/SIGHUP kill the child (default action) as well as the
    parent, and the parent, whatever ends its half, kills and reaps the child before it
    returns: nothing writes into a staging directory after the caller removes it.
    In-process where fork is unsafe (other threads alive) or not worth it.
    """
    if len(jobs) < _FORK_MIN or not hasattr(os, "fork") or threading.active_count() > 1:
        return [identity(j) for j in jobs]
    rfd, wfd = os.pipe()
    old = sigmask.current()
    try:
        # held until each side has its own handlers (fabkit.sigmask: the blocking call
        # itself may raise, with the signals blocked)
        sigmask.block(sigmask.INTERRUPTS)
        pid = os.fork()
    except BaseException as exc:
        sigmask.restore(old)
        os.close(rfd)
        os.close(wfd)
        if isinstance(exc, OSError):
            return [identity(j) for j in jobs]
        raise
    if pid == 0:  # the child: its half, then _exit whatever happens
        code = 1
        report: dict[str, Any] = {"error": "interrupted", "type": "BaseException"}
        try:
            os.close(rfd)
            for sig in sigmask.INTERRUPTS:
                signal.signal(sig, signal.SIG_DFL)
            sigmask.restore(old)
            total = {"issued": 0, "kept": 0}
            for job in _half(jobs, True):
                for k, v in identity(job).items():
                    total[k] += v
            report = dict(total)
            code = 0
        except BaseException as exc:  # reported to the parent, which raises it
            report = {"error": str(exc), "type": type(exc).__name__,
                      "errno": getattr(exc, "errno", None),
                      "filename": getattr(exc, "filename", None)}
        finally:
            try:
                os.write(wfd, json.dumps(report).encode()[:_PIPE_BUF])
            finally:
                os._exit(code)
    sigmask.restore(old)
    os.close(wfd)
    try:
        results = [identity(j) for j in _half(jobs, False)]
        raw = b""
        while chunk := os.read(rfd, _PIPE_BUF):
            raw += chunk
        _, status = os.waitpid(pid, 0)
        pid = 0
    finally:
        os.close(rfd)
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    try:
        report = json.loads(raw)
    except ValueError:
        report = {}
    if status != 0 or "error" in report:
        if report.get("errno"):
            raise OSError(report["errno"], os.strerror(report["errno"]), report["filename"])
        raise RuntimeError(f"crypto: the second issuing process failed "
                           f"({report.get('type', 'no report')}: {report.get('error', '')}, "
                           f"wait status {status})")
    results.append({"issued": report["issued"], "kept": report["kept"]})
    return results


def up_to_date(orgs: Sequence[OrgCrypto], out: Path) -> bool:
    """Whether ``generate(orgs, out)`` (without rotate) would change nothing under ``out``:
    the same organisations, nodes and users, every CA loadable, every identity kept and
    every shared file identical. Reads and verifies; writes nothing."""
    _validate(orgs)
    out = Path(out)
    wanted: dict[str, set[str]] = {kind.root(): set() for kind in OrgKind}
    for org in orgs:
        wanted[OrgKind(org.kind).root()].add(org.domain)
    if any(_entries(out / root) != domains for root, domains in wanted.items()):
        return False
    not_before = _not_before()
    for org in orgs:
        base = org_dir(out, org)
        cas = []
        for sub, cn in (("ca", f"ca.{org.domain}"), ("tlsca", f"tlsca.{org.domain}")):
            ca = _load_ca(base / sub / f"{cn}-cert.pem", base / sub / "priv_sk",
                          _ca_subject(org.domain, cn))
            if ca is None:
                return False
            cas.append(ca)
        org_cas = _OrgCAs.of(org, cas[0], cas[1], base)
        msp = base / "msp"
        if not all(_same(p, data, 0o644) for p, data in (
                (msp / "cacerts" / org_cas.ca_file, org_cas.sign.pem),
                (msp / "tlscacerts" / org_cas.tlsca_file, org_cas.tls.pem),
                (msp / "config.yaml", org_cas.config))) or not (msp / "admincerts").is_dir():
            return False
        nodes_root = base / OrgKind(org.kind).nodes_dir()
        users = [u for u in org.users if u != ADMIN] + [ADMIN]
        if _entries(nodes_root) != {n.hostname for n in org.nodes} or \
                _entries(base / "users") != {f"{u}@{org.domain}" for u in users}:
            return False
        identities = [(os.path.join(nodes_root, n.hostname), n.hostname, n.ou,
                       (n.hostname, n.short, *n.sans), "server") for n in org.nodes]
        identities += [(os.fspath(user_dir(out, org, u)), f"{u}@{org.domain}",
                        NodeOU.ADMIN if u == ADMIN else NodeOU.CLIENT, (), "client")
                       for u in users]
        for where, cn, ou, sans, prefix in identities:
            if not all(os.path.isdir(os.path.join(where, "msp", d)) for d in _MSP_DIRS):
                return False
            counts = {"issued": 0, "kept": 0}
            files = _local_msp(where, cn, ou, sans, org_cas, prefix, not_before, False,
                               counts)
            if counts["issued"] or not all(_same(p, data, 0o600 if how is True else 0o644)
                                           for p, data, how in files):
                return False
    return True


def _entries(directory: Path) -> set[str]:
    try:
        return {e.name for e in os.scandir(directory)}
    except FileNotFoundError:
        return set()
