"""launch.render.crypto: cryptogen layout, key modes, certificate profile, reuse and rotation."""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import hashlib
import ipaddress
import os
import stat
import threading
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fabkit.errors import InputError
from launch.render import crypto
from launch.render.crypto import NodeIdentity, OrgCrypto

P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

PEER0 = NodeIdentity("peer0.org1.example.com", "peer0", ("10.0.1.10", "peer0.lab"), "peer")
PEER1 = NodeIdentity("peer1.org1.example.com", "peer1", ("10.0.1.11",), "peer")
ORG1 = OrgCrypto("Org1", "org1.example.com", "Org1MSP", "peer", (PEER0, PEER1), ("User1",))
ORDERER0 = NodeIdentity("orderer0.example.com", "orderer0", ("10.0.0.10", "::1"), "orderer")
ORDERERS = OrgCrypto("Orderer", "example.com", "OrdererMSP", "orderer", (ORDERER0,), ())
TOPOLOGY = (ORG1, ORDERERS)


def local_msp_files(prefix: str, cn: str, domain: str, tls: str) -> set[str]:
    """What cryptogen writes for one identity (msp/admincerts stays empty with NodeOUs)."""
    return {
        f"{prefix}/msp/cacerts/ca.{domain}-cert.pem",
        f"{prefix}/msp/keystore/priv_sk",
        f"{prefix}/msp/signcerts/{cn}-cert.pem",
        f"{prefix}/msp/tlscacerts/tlsca.{domain}-cert.pem",
        f"{prefix}/msp/config.yaml",
        f"{prefix}/tls/ca.crt",
        f"{prefix}/tls/{tls}.crt",
        f"{prefix}/tls/{tls}.key",
    }


def org_files(root: str, domain: str) -> set[str]:
    return {
        f"{root}/ca/ca.{domain}-cert.pem",
        f"{root}/ca/priv_sk",
        f"{root}/tlsca/tlsca.{domain}-cert.pem",
        f"{root}/tlsca/priv_sk",
        f"{root}/msp/cacerts/ca.{domain}-cert.pem",
        f"{root}/msp/tlscacerts/tlsca.{domain}-cert.pem",
        f"{root}/msp/config.yaml",
    }


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def ou_of(cert: x509.Certificate) -> list[str]:
    return [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]


def sans_of(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(g.value) for g in ext]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("crypto")
    crypto.generate(TOPOLOGY, out)
    return out


def identities(out: Path) -> list[tuple[Path, str, str, OrgCrypto]]:
    """(identity dir, CN, expected OU, org) for every node, user and admin."""
    result = []
    for org in TOPOLOGY:
        for node in org.nodes:
            result.append((crypto.node_dir(out, org, node.hostname), node.hostname,
                           str(node.ou), org))
        for user in (*org.users, "Admin"):
            result.append((crypto.user_dir(out, org, user), f"{user}@{org.domain}",
                           "admin" if user == "Admin" else "client", org))
    return result


def tls_cert(directory: Path) -> Path:
    return next(p for p in (directory / "tls").glob("*.crt") if p.name != "ca.crt")


# --- layout ------------------------------------------------------------------------------


def test_paths_follow_cryptogen(tmp_path: Path) -> None:
    assert crypto.org_dir(tmp_path, ORG1) == tmp_path / "peerOrganizations/org1.example.com"
    assert crypto.org_dir(tmp_path, ORDERERS) == tmp_path / "ordererOrganizations/example.com"
    assert (crypto.node_dir(tmp_path, ORG1, "peer0.org1.example.com")
            == tmp_path / "peerOrganizations/org1.example.com/peers/peer0.org1.example.com")
    assert (crypto.node_dir(tmp_path, ORDERERS, "orderer0.example.com")
            == tmp_path / "ordererOrganizations/example.com/orderers/orderer0.example.com")
    assert (crypto.user_dir(tmp_path, ORG1, "Admin")
            == tmp_path / "peerOrganizations/org1.example.com/users/Admin@org1.example.com")


def test_tree_has_exactly_cryptogens_files(tree: Path) -> None:
    p = "peerOrganizations/org1.example.com"
    o = "ordererOrganizations/example.com"
    expected = org_files(p, "org1.example.com") | org_files(o, "example.com")
    for host in ("peer0.org1.example.com", "peer1.org1.example.com"):
        expected |= local_msp_files(f"{p}/peers/{host}", host, "org1.example.com", "server")
    for user in ("User1", "Admin"):
        cn = f"{user}@org1.example.com"
        expected |= local_msp_files(f"{p}/users/{cn}", cn, "org1.example.com", "client")
    expected |= local_msp_files(f"{o}/orderers/orderer0.example.com", "orderer0.example.com",
                                "example.com", "server")
    expected |= local_msp_files(f"{o}/users/Admin@example.com", "Admin@example.com",
                                "example.com", "client")
    assert set(all_files(tree)) == expected
    # Empty admincerts/ directories exist as cryptogen leaves them.
    assert (tree / p / "msp/admincerts").is_dir()
    assert (tree / p / "peers/peer0.org1.example.com/msp/admincerts").is_dir()


def test_every_private_key_is_0600_pkcs8_p256(tree: Path) -> None:
    keys = [p for p in tree.rglob("*") if p.name in ("priv_sk", "server.key", "client.key")]
    assert len(keys) == 2 * 2 + 2 * 6   # 2 CAs x 2 orgs, msp+tls for 6 identities
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        pem = key.read_bytes()
        assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n"), key
        loaded = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        assert loaded.curve.name == "secp256r1"
    umask = os.umask(0)
    os.umask(umask)
    others = [p for p in tree.rglob("*") if p.is_file() and p not in keys]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 & ~umask for p in others)


def test_node_ous_config_is_cryptogens(tree: Path) -> None:
    text = (crypto.org_dir(tree, ORG1) / "msp/config.yaml").read_text()
    cfg = yaml.safe_load(text)["NodeOUs"]
    assert cfg["Enable"] is True
    for field, ou in (("ClientOUIdentifier", "client"), ("PeerOUIdentifier", "peer"),
                      ("AdminOUIdentifier", "admin"), ("OrdererOUIdentifier", "orderer")):
        assert cfg[field] == {"Certificate": "cacerts/ca.org1.example.com-cert.pem",
                              "OrganizationalUnitIdentifier": ou}
    assert list(cfg) == ["Enable", "ClientOUIdentifier", "PeerOUIdentifier",
                         "AdminOUIdentifier", "OrdererOUIdentifier"]
    node = crypto.node_dir(tree, ORG1, "peer0.org1.example.com") / "msp/config.yaml"
    assert node.read_text() == text


def test_ca_copies_are_the_org_cas(tree: Path) -> None:
    for directory, _, _, org in identities(tree):
        base = crypto.org_dir(tree, org)
        ca = (base / "ca" / f"ca.{org.domain}-cert.pem").read_bytes()
        tlsca = (base / "tlsca" / f"tlsca.{org.domain}-cert.pem").read_bytes()
        assert (directory / "msp/cacerts" / f"ca.{org.domain}-cert.pem").read_bytes() == ca
        assert (directory / "msp/tlscacerts" / f"tlsca.{org.domain}-cert.pem").read_bytes() == tlsca
        assert (directory / "tls/ca.crt").read_bytes() == tlsca


# --- certificate profile ---------------------------------------------------------------


def test_ca_certificates_match_cryptogens_profile(tree: Path) -> None:
    for org in TOPOLOGY:
        for sub, cn in (("ca", f"ca.{org.domain}"), ("tlsca", f"tlsca.{org.domain}")):
            cert = load_cert(crypto.org_dir(tree, org) / sub / f"{cn}-cert.pem")
            assert cert.subject.rfc4514_string() == (
                f"CN={cn},O={org.domain},L=San Francisco,ST=California,C=US")
            assert cert.issuer == cert.subject
            ext = cert.extensions
            ku = ext.get_extension_for_class(x509.KeyUsage)
            assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
            assert ku.value.digital_signature and ku.value.key_encipherment
            assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
                ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            bc = ext.get_extension_for_class(x509.BasicConstraints)
            assert bc.critical and bc.value.ca and bc.value.path_length is None
            point = cert.public_key().public_bytes(serialization.Encoding.X962,
                                                   serialization.PublicFormat.UncompressedPoint)
            ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
            assert ski == hashlib.sha256(point).digest()
            with pytest.raises(x509.ExtensionNotFound):
                ext.get_extension_for_class(x509.AuthorityKeyIdentifier)
            assert [e.oid for e in ext] == [x509.OID_KEY_USAGE, x509.OID_EXTENDED_KEY_USAGE,
                                            x509.OID_BASIC_CONSTRAINTS,
                                            x509.OID_SUBJECT_KEY_IDENTIFIER]


def test_identity_certs_carry_ou_and_no_eku(tree: Path) -> None:
    for directory, cn, ou, _ in identities(tree):
        cert = load_cert(directory / "msp/signcerts" / f"{cn}-cert.pem")
        assert cert.subject.rfc4514_string() == (
            f"CN={cn},OU={ou},L=San Francisco,ST=California,C=US")
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical and ku.value.digital_signature and not ku.value.key_encipherment
        with pytest.raises(x509.ExtensionNotFound):
            cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        assert sans_of(cert) == []
        key = serialization.load_pem_private_key(
            (directory / "msp/keystore/priv_sk").read_bytes(), password=None)
        assert key.public_key() == cert.public_key()


def test_tls_certs_have_both_ekus_and_every_san(tree: Path) -> None:
    for org in TOPOLOGY:
        for node in org.nodes:
            directory = crypto.node_dir(tree, org, node.hostname)
            cert = load_cert(directory / "tls/server.crt")
            assert ou_of(cert) == []
            assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
                node.hostname)
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
            assert ku.digital_signature and ku.key_encipherment
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = san.get_values_for_type(x509.DNSName)
            ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
            expected = [node.hostname, node.short, *node.sans]
            assert dns == [n for n in expected if not _is_ip(n)]
            assert ips == [str(ipaddress.ip_address(n)) for n in expected if _is_ip(n)]
            key = serialization.load_pem_private_key(
                (directory / "tls/server.key").read_bytes(), password=None)
            assert key.public_key() == cert.public_key()
    assert sans_of(load_cert(crypto.user_dir(tree, ORG1, "User1") / "tls/client.crt")) == []


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def test_every_cert_chains_to_its_ca_with_low_s_and_ten_years(tree: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    for directory, cn, _, org in identities(tree):
        base = crypto.org_dir(tree, org)
        ca = load_cert(base / "ca" / f"ca.{org.domain}-cert.pem")
        tlsca = load_cert(base / "tlsca" / f"tlsca.{org.domain}-cert.pem")
        for cert_path, issuer in ((directory / "msp/signcerts" / f"{cn}-cert.pem", ca),
                                  (tls_cert(directory), tlsca)):
            cert = load_cert(cert_path)
            cert.verify_directly_issued_by(issuer)
            # Go compares RawIssuer with the CA's RawSubject byte for byte.
            assert cert.issuer.public_bytes() == issuer.subject.public_bytes()
            aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
            ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            assert aki.key_identifier == ski.digest
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
            assert bc.critical and not bc.value.ca
            _, s = decode_dss_signature(cert.signature)
            assert s <= P256_N // 2, f"{cert_path}: high-S signature"
            lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
            assert lifetime == dt.timedelta(days=3650)
            assert cert.not_valid_before_utc <= now
            assert 0 < cert.serial_number < 2**128


def test_high_s_signature_is_normalised_to_low_s() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(1)
               .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)))
    for _ in range(200):   # ECDSA signatures are random: about every other one is high-S
        cert = builder.sign(key, crypto._HASH)
        if decode_dss_signature(cert.signature)[1] > P256_N // 2:
            break
    else:
        pytest.fail("no high-S signature in 200 tries")
    fixed = x509.load_der_x509_certificate(crypto._low_s_der(cert))
    r, s = decode_dss_signature(fixed.signature)
    assert (r, s) == (decode_dss_signature(cert.signature)[0],
                      P256_N - decode_dss_signature(cert.signature)[1])
    assert fixed.tbs_certificate_bytes == cert.tbs_certificate_bytes
    fixed.verify_directly_issued_by(fixed)


# --- reuse, change, rotation -------------------------------------------------------------


def test_rerender_keeps_every_key_and_cert(tmp_path: Path) -> None:
    crypto.generate(TOPOLOGY, tmp_path)
    before = all_files(tmp_path)
    crypto.generate(TOPOLOGY, tmp_path)
    assert all_files(tmp_path) == before


def test_new_host_and_changed_sans_reissue_only_those(tmp_path: Path) -> None:
    crypto.generate(TOPOLOGY, tmp_path)
    before = all_files(tmp_path)
    peer2 = NodeIdentity("peer2.org1.example.com", "peer2", ("10.0.1.12",), "peer")
    moved = dataclasses.replace(PEER0, sans=("10.0.1.99",))
    org1 = dataclasses.replace(ORG1, nodes=(moved, PEER1, peer2))
    crypto.generate((org1, ORDERERS), tmp_path)
    after = all_files(tmp_path)

    changed = {k for k in before if before[k] != after.get(k)}
    p0 = "peerOrganizations/org1.example.com/peers/peer0.org1.example.com"
    # Only peer0's TLS pair changed; its enrollment identity stays.
    assert changed == {f"{p0}/tls/server.crt", f"{p0}/tls/server.key"}
    new = set(after) - set(before)
    assert new and all("/peers/peer2.org1.example.com/" in k for k in new)
    assert "10.0.1.99" in sans_of(load_cert(tmp_path / p0 / "tls/server.crt"))
    assert stat.S_IMODE((tmp_path / p0 / "tls/server.key").stat().st_mode) == 0o600


def test_removed_host_and_user_are_pruned(tmp_path: Path) -> None:
    crypto.generate(TOPOLOGY, tmp_path)
    org1 = dataclasses.replace(ORG1, nodes=(PEER0,), users=())
    crypto.generate((org1,), tmp_path)
    assert not crypto.node_dir(tmp_path, ORG1, "peer1.org1.example.com").exists()
    assert not crypto.user_dir(tmp_path, ORG1, "User1").exists()
    assert crypto.user_dir(tmp_path, ORG1, "Admin").is_dir()
    assert not crypto.org_dir(tmp_path, ORDERERS).exists()


def test_rotate_replaces_every_key(tmp_path: Path) -> None:
    crypto.generate(TOPOLOGY, tmp_path)
    before = all_files(tmp_path)
    crypto.generate(TOPOLOGY, tmp_path, rotate=True)
    after = all_files(tmp_path)
    assert set(after) == set(before)
    secrets = [k for k in before if k.endswith(("priv_sk", ".key"))]
    assert secrets and all(before[k] != after[k] for k in secrets)
    assert all(before[k] != after[k] for k in before if k.endswith((".pem", ".crt")))


def test_lost_ca_key_reissues_everything_under_it(tmp_path: Path) -> None:
    crypto.generate(TOPOLOGY, tmp_path)
    base = crypto.org_dir(tmp_path, ORG1)
    old_tlsca = (base / "tlsca/tlsca.org1.example.com-cert.pem").read_bytes()
    old_signcert = (crypto.user_dir(tmp_path, ORG1, "User1")
                    / "msp/signcerts/User1@org1.example.com-cert.pem").read_bytes()
    (base / "tlsca/priv_sk").unlink()
    crypto.generate(TOPOLOGY, tmp_path)
    tlsca = load_cert(base / "tlsca/tlsca.org1.example.com-cert.pem")
    assert tlsca.public_bytes(serialization.Encoding.PEM) != old_tlsca
    for directory, _, _, org in identities(tmp_path):
        if org is ORG1:
            load_cert(tls_cert(directory)).verify_directly_issued_by(tlsca)
            assert (directory / "tls/ca.crt").read_bytes() == tlsca.public_bytes(
                serialization.Encoding.PEM)
    # The signing CA was intact, so enrollment certs were kept.
    assert (crypto.user_dir(tmp_path, ORG1, "User1")
            / "msp/signcerts/User1@org1.example.com-cert.pem").read_bytes() == old_signcert


def test_key_with_loose_mode_is_replaced_0600(tmp_path: Path) -> None:
    crypto.generate(TOPOLOGY, tmp_path)
    key = crypto.node_dir(tmp_path, ORG1, "peer1.org1.example.com") / "msp/keystore/priv_sk"
    key.write_bytes(b"not a key")
    os.chmod(key, 0o644)
    crypto.generate(TOPOLOGY, tmp_path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


# --- input checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("org", "field"),
    [
        (dataclasses.replace(ORG1, domain="../etc"), "organizations[0].domain"),
        (dataclasses.replace(ORG1, nodes=(dataclasses.replace(PEER0, hostname="a/b"),)),
         "organizations[0].nodes[0].hostname"),
        (dataclasses.replace(ORG1, nodes=(PEER0, PEER0)), "organizations[0].nodes[1].hostname"),
        (dataclasses.replace(ORG1, nodes=(dataclasses.replace(PEER0, ou="orderer"),)),
         "organizations[0].nodes[0].ou"),
        (dataclasses.replace(ORG1, nodes=(dataclasses.replace(PEER0, sans=("a b",)),)),
         "organizations[0].nodes[0].sans[0]"),
        (dataclasses.replace(ORG1, users=("../x",)), "organizations[0].users[0]"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(tmp_path: Path, org: OrgCrypto,
                                                      field: str) -> None:
    with pytest.raises(InputError) as err:
        crypto.generate((org,), tmp_path / "out")
    assert field in str(err.value)
    assert not (tmp_path / "out").exists()


def test_string_values_become_enums() -> None:
    node = NodeIdentity("p.example.com", "p", ["10.0.0.1"], "peer")  # type: ignore[arg-type]
    assert node.ou is crypto.NodeOU.PEER and node.sans == ("10.0.0.1",)
    org = OrgCrypto("O", "example.com", "OMSP", "orderer", [], ["U"])  # type: ignore[arg-type]
    assert org.kind is crypto.OrgKind.ORDERER and org.users == ("U",)
    with pytest.raises(ValueError):
        NodeIdentity("p.example.com", "p", (), "admin-ish")  # type: ignore[arg-type]


# --- how the tree is written (speed without changing what is written) ----------------------


def big_org(users: int) -> OrgCrypto:
    nodes = tuple(NodeIdentity(f"peer{i}.big.example.com", f"peer{i}", (f"10.0.2.{10 + i}",),
                               "peer") for i in range(4))
    return OrgCrypto("Big", "big.example.com", "BigMSP", "peer", nodes,
                     tuple(f"User{i}" for i in range(1, users + 1)))


@pytest.mark.parametrize("serial", [1, 127, 128, 255, 2**127 + 5, 2**128 - 1])
@pytest.mark.parametrize("year", [2026, 2045])   # 2045 + 10 years: a GeneralizedTime
def test_leaf_tbs_is_byte_for_byte_what_the_builder_encodes(tmp_path: Path, serial: int,
                                                            year: int) -> None:
    not_before = dt.datetime(year, 3, 4, 5, 6, tzinfo=dt.UTC)
    ca = crypto._ca(tmp_path / "ca", "ca.org1.example.com", "org1.example.com", not_before,
                    False)
    key = ec.generate_private_key(ec.SECP256R1())
    long_name = "n" * 40 + ".example.com"   # a CN near its 64-character bound
    # SANs over 127 bytes: multi-byte DER lengths inside the extension too
    san = crypto._san([long_name, "peer0", "10.0.0.1", "fe80::1", "a" * 60 + ".lab",
                       "b" * 60 + ".lab"])
    cases = [
        (crypto._leaf_subject(f"User1@{long_name}", crypto.NodeOU.CLIENT),
         [crypto._EXT_KU_SIGN, crypto._EXT_BC_LEAF, ca.aki]),
        (crypto._leaf_subject(long_name, None),
         [crypto._EXT_KU_TLS, crypto._EXT_EKU_TLS, crypto._EXT_BC_LEAF, ca.aki,
          x509.Extension(san.oid, False, san)]),
    ]
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    for subject, extensions in cases:
        built = x509.CertificateBuilder(
            issuer_name=ca.subject, subject_name=subject, public_key=key.public_key(),
            serial_number=serial, not_valid_before=not_before,
            not_valid_after=not_before + crypto.VALIDITY, extensions=extensions,
        ).sign(ca.key, crypto._HASH)
        assert crypto._tbs(ca, subject, extensions, not_before, serial, spki) == \
            built.tbs_certificate_bytes


def test_shared_files_are_hard_links_of_the_org_msp(tree: Path) -> None:
    for directory, _cn, _ou, org in identities(tree):
        msp = crypto.org_dir(tree, org) / "msp"
        ca = msp / "cacerts" / crypto.ca_cert_name(org)
        tlsca = msp / "tlscacerts" / crypto.tlsca_cert_name(org)
        assert (directory / "msp/cacerts" / ca.name).samefile(ca)
        assert (directory / "msp/tlscacerts" / tlsca.name).samefile(tlsca)
        assert (directory / "tls/ca.crt").samefile(tlsca)
        assert (directory / "msp/config.yaml").samefile(msp / "config.yaml")
        for key in (directory / "msp/keystore/priv_sk", *(directory / "tls").glob("*.key")):
            assert key.stat().st_nlink == 1   # a private key is never shared


def test_without_hard_links_shared_files_are_copies(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    crypto.generate(TOPOLOGY, tmp_path / "copies")
    monkeypatch.undo()
    crypto.generate(TOPOLOGY, tmp_path / "links")
    copies, links = all_files(tmp_path / "copies"), all_files(tmp_path / "links")
    assert set(copies) == set(links)
    assert all(p.stat().st_nlink == 1 for p in (tmp_path / "copies").rglob("*") if p.is_file())
    org1 = tmp_path / "copies/peerOrganizations/org1.example.com"
    ca = org1 / "msp/cacerts/ca.org1.example.com-cert.pem"
    peer = org1 / "peers/peer0.org1.example.com"
    assert (peer / "msp/cacerts" / ca.name).read_bytes() == ca.read_bytes()
    # a re-render over copies keeps them (same bytes): nothing is reissued
    before = all_files(tmp_path / "copies")
    crypto.generate(TOPOLOGY, tmp_path / "copies")
    assert all_files(tmp_path / "copies") == before


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids crypto forks. The whole suite runs in one process, where session fixtures of
    other modules (servers in threads) may be alive and crypto rightly would not fork: these
    tests are about the fork path, so crypto sees only one thread."""
    pids: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            pids.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    monkeypatch.setattr(crypto.threading, "active_count", lambda: 1)
    return pids


def test_a_big_tree_is_issued_in_two_processes(tmp_path: Path, forks: list[int]) -> None:
    org = big_org(crypto._FORK_MIN)
    crypto.generate((org,), tmp_path)
    assert len(forks) == 1
    with pytest.raises(ChildProcessError):
        os.waitpid(forks[0], os.WNOHANG)   # the child was reaped
    base = crypto.org_dir(tmp_path, org)
    ca = load_cert(base / "ca" / f"ca.{org.domain}-cert.pem")
    tlsca = load_cert(base / "tlsca" / f"tlsca.{org.domain}-cert.pem")
    dirs = [crypto.node_dir(tmp_path, org, n.hostname) for n in org.nodes]
    dirs += [crypto.user_dir(tmp_path, org, u) for u in (*org.users, "Admin")]
    publics = set()
    for d in dirs:
        for cert_path, key_path, issuer in (
                (next((d / "msp/signcerts").iterdir()), d / "msp/keystore/priv_sk", ca),
                (tls_cert(d), next(p for p in (d / "tls").glob("*.key")), tlsca)):
            cert = load_cert(cert_path)
            cert.verify_directly_issued_by(issuer)
            assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
            key = serialization.load_pem_private_key(key_path.read_bytes(), None)
            assert key.public_key() == cert.public_key()
            publics.add(cert.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert len(publics) == 2 * len(dirs)   # both processes drew their own keys


def test_a_big_tree_is_issued_in_one_process_while_another_thread_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forks: list[int] = []

    def fork() -> int:                       # recorded, then refused: the caller issues all
        forks.append(1)
        raise OSError(errno.EAGAIN, "fork refused by the test")

    monkeypatch.setattr(os, "fork", fork)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        org = big_org(crypto._FORK_MIN)
        crypto.generate((org,), tmp_path)
    finally:
        stop.set()
        other.join()
    assert forks == []                       # fork with a second thread alive is unsafe
    last = crypto.node_dir(tmp_path, org, org.nodes[-1].hostname)
    assert (last / "msp/keystore/priv_sk").is_file()


def test_an_error_in_the_second_process_is_raised_and_it_is_reaped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forks: list[int]) -> None:
    real = crypto._write_secret

    def full_disk(path: str | Path, data: bytes) -> None:
        if os.fspath(path).endswith("User7@big.example.com/msp/keystore/priv_sk"):
            raise OSError(errno.ENOSPC, "No space left on device", os.fspath(path))
        real(path, data)

    monkeypatch.setattr(crypto, "_write_secret", full_disk)
    org = big_org(crypto._FORK_MIN)
    # 4 peers, User1..User64, Admin: 69 jobs, the child takes the second half from job 34
    # (User31): User7 is the parent's, User60 the child's; each fails in turn.
    with pytest.raises(OSError) as err:
        crypto.generate((org,), tmp_path / "a")
    assert err.value.errno == errno.ENOSPC
    assert len(forks) == 1
    with pytest.raises(ChildProcessError):
        os.waitpid(forks[0], os.WNOHANG)

    def full_disk_child(path: str | Path, data: bytes) -> None:
        if os.fspath(path).endswith("User60@big.example.com/msp/keystore/priv_sk"):
            raise OSError(errno.ENOSPC, "No space left on device", os.fspath(path))
        real(path, data)

    monkeypatch.setattr(crypto, "_write_secret", full_disk_child)
    with pytest.raises(OSError) as err:
        crypto.generate((org,), tmp_path / "b")
    assert err.value.errno == errno.ENOSPC
    assert "User60@big.example.com" in str(err.value.filename)
    assert len(forks) == 2
    with pytest.raises(ChildProcessError):
        os.waitpid(forks[1], os.WNOHANG)


def test_a_small_tree_is_issued_in_process(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork() -> int:
        raise AssertionError("forked for a small tree")

    monkeypatch.setattr(os, "fork", no_fork)
    crypto.generate(TOPOLOGY, tmp_path)
    assert len(all_files(tmp_path)) > 0
