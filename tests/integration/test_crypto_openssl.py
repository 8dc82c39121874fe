"""launch.render.crypto output checked by the real OpenSSL: chains, purposes, SANs, subjects."""

from __future__ import annotations

import ipaddress
import re
import shutil
from pathlib import Path

import pytest

from fabkit import runner
from launch.render import crypto
from launch.render.crypto import NodeIdentity, OrgCrypto

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
]

ORG1 = OrgCrypto(
    "Org1", "org1.example.com", "Org1MSP", "peer",
    (NodeIdentity("peer0.org1.example.com", "peer0", ("192.168.122.10", "peer0.lab"), "peer"),
     NodeIdentity("peer1.org1.example.com", "peer1", ("192.168.122.11", "fd00::11"), "peer")),
    ("User1", "User2"),
)
ORDERERS = OrgCrypto(
    "Orderer", "example.com", "OrdererMSP", "orderer",
    tuple(NodeIdentity(f"orderer{i}.example.com", f"orderer{i}", (f"192.168.122.{20 + i}",),
                       "orderer") for i in range(3)),
    (),
)


def openssl(*args: str | Path) -> str:
    return runner.run(["openssl", *args], what="openssl").stdout


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runner.allow_subprocesses(True)
    out = tmp_path_factory.mktemp("crypto")
    crypto.generate((ORG1, ORDERERS), out)
    return out


def members(out: Path, org: OrgCrypto) -> list[tuple[Path, str, str, str]]:
    """(dir, CN, OU, tls file prefix) of every identity of ``org``."""
    result = [(crypto.node_dir(out, org, n.hostname), n.hostname, str(n.ou), "server")
              for n in org.nodes]
    result += [(crypto.user_dir(out, org, u), f"{u}@{org.domain}",
                "admin" if u == "Admin" else "client", "client") for u in (*org.users, "Admin")]
    return result


@pytest.mark.parametrize("org", [ORG1, ORDERERS], ids=lambda o: o.domain)
def test_openssl_verifies_every_certificate_against_its_ca(tree: Path, org: OrgCrypto) -> None:
    base = crypto.org_dir(tree, org)
    ca = base / "ca" / f"ca.{org.domain}-cert.pem"
    tlsca = base / "tlsca" / f"tlsca.{org.domain}-cert.pem"
    signcerts = [d / "msp/signcerts" / f"{cn}-cert.pem" for d, cn, _, _ in members(tree, org)]
    tls = [d / "tls" / f"{prefix}.crt" for d, _, _, prefix in members(tree, org)]

    out = openssl("verify", "-x509_strict", "-CAfile", ca, *signcerts)
    assert out.splitlines() == [f"{p}: OK" for p in signcerts]
    for purpose in ("sslserver", "sslclient"):
        out = openssl("verify", "-x509_strict", "-purpose", purpose, "-CAfile", tlsca, *tls)
        assert out.splitlines() == [f"{p}: OK" for p in tls]

    # A certificate from the other CA must not verify: the check has teeth.
    wrong = runner.run(["openssl", "verify", "-CAfile", tlsca, signcerts[0]], check=False)
    assert not wrong.ok


@pytest.mark.parametrize("org", [ORG1, ORDERERS], ids=lambda o: o.domain)
def test_openssl_sees_the_ou_and_every_san(tree: Path, org: OrgCrypto) -> None:
    for directory, cn, ou, prefix in members(tree, org):
        subject = openssl("x509", "-in", directory / "msp/signcerts" / f"{cn}-cert.pem",
                          "-noout", "-subject", "-nameopt", "RFC2253")
        assert subject.strip() == f"subject=CN={cn},OU={ou},L=San Francisco,ST=California,C=US"
        if prefix == "client":
            continue
        node = next(n for n in org.nodes if n.hostname == cn)
        text = openssl("x509", "-in", directory / "tls/server.crt", "-noout",
                       "-ext", "subjectAltName")
        found = {(kind, ipaddress.ip_address(v) if kind == "IP Address" else v)
                 for kind, v in re.findall(r"(DNS|IP Address):([^,\s]+)", text)}
        expected = {("DNS", cn), ("DNS", node.short)}
        for name in node.sans:
            try:
                expected.add(("IP Address", ipaddress.ip_address(name)))
            except ValueError:
                expected.add(("DNS", name))
        assert found == expected


def test_openssl_reads_every_key_as_p256_pkcs8(tree: Path) -> None:
    keys = sorted(p for p in tree.rglob("*") if p.name in ("priv_sk", "server.key", "client.key"))
    assert keys
    for key in keys:
        text = openssl("pkey", "-in", key, "-noout", "-text")
        assert "NIST CURVE: P-256" in text, key
        openssl("pkey", "-in", key, "-check", "-noout")
