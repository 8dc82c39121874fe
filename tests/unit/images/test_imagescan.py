"""bake.imagescan on fixture root filesystems: a planted key (or host key, machine-id,
cloud-init state) fails the scan, a clean tree passes, allowlisted fixtures are accepted."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from bake import imagescan
from bake.imagescan import Kind


def _pem_key() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


def _openssh_key() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption())


def _write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    path.chmod(mode)


@pytest.fixture
def clean_root(tmp_path: Path) -> Path:
    """A sealed-looking tree with the things a clean image legitimately has."""
    root = tmp_path / "root"
    _write(root / "etc/machine-id", "")
    _write(root / "etc/ssh/sshd_config", "PermitRootLogin no\n")
    _write(root / "etc/fabperf/image.json", "{}\n")
    (root / "var/lib/cloud/instances").mkdir(parents=True)
    # docs and parsers that merely mention the armour header are not key files
    _write(root / "usr/share/doc/x/README.md", "    -----BEGIN RSA PRIVATE KEY-----\n    MIIE\n")
    _write(root / "usr/lib/node/parser.js", 'const re = /^-----BEGIN OPENSSH PRIVATE KEY-----/;\n')
    # public test fixtures inside npm packages are allowlisted
    _write(root / "opt/fabperf/caliper/node_modules/mqtt/test/helpers/private-key.pem", _pem_key())
    # a certificate is not a key
    _write(root / "etc/ssl/certs/ca.pem",
           "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    return root


def test_clean_root_passes(clean_root: Path) -> None:
    assert imagescan.scan_root(clean_root) == []


@pytest.mark.parametrize("where", ["etc/fabperf/peer-leftover/priv_sk", "root/key.pem",
                                   "opt/fabperf/chaincode/server.key", "var/tmp/x"])
def test_planted_pem_key_fails(clean_root: Path, where: str) -> None:
    _write(clean_root / where, _pem_key(), 0o600)
    findings = imagescan.scan_root(clean_root)
    assert [(f.kind, f.path) for f in findings] == [(Kind.PRIVATE_KEY, "/" + where)]


def test_planted_openssh_key_fails(clean_root: Path) -> None:
    _write(clean_root / "home/builder/.ssh/id_ed25519", _openssh_key(), 0o600)
    findings = imagescan.scan_root(clean_root)
    assert [f.kind for f in findings] == [Kind.PRIVATE_KEY]


def test_key_outside_the_allowlisted_test_dirs_fails(clean_root: Path) -> None:
    _write(clean_root / "opt/fabperf/caliper/node_modules/mqtt/lib/real.pem", _pem_key())
    assert [f.path for f in imagescan.scan_root(clean_root)] == [
        "/opt/fabperf/caliper/node_modules/mqtt/lib/real.pem"]


def test_unsealed_state_fails(clean_root: Path) -> None:
    _write(clean_root / "etc/ssh/ssh_host_ed25519_key", _openssh_key(), 0o600)
    _write(clean_root / "etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAA\n")
    _write(clean_root / "etc/machine-id", "0123456789abcdef0123456789abcdef\n")
    (clean_root / "var/lib/cloud/instances/i-123").mkdir(parents=True)
    (clean_root / "var/lib/cloud/instance").symlink_to("/var/lib/cloud/instances/i-123")
    _write(clean_root / "root/.ssh/authorized_keys", "ssh-ed25519 AAAA build\n")
    _write(clean_root / "etc/fabperf/peer.env", "CORE_PEER_ID=x\n")
    kinds = sorted(str(f.kind) for f in imagescan.scan_root(clean_root))
    assert kinds == sorted([
        Kind.SSH_HOST_KEY, Kind.SSH_HOST_KEY, Kind.MACHINE_ID, Kind.CLOUD_INIT_STATE,
        Kind.CLOUD_INIT_STATE, Kind.AUTHORIZED_KEYS, Kind.PER_ENVIRONMENT])


def test_uninitialized_machine_id_is_accepted(clean_root: Path) -> None:
    _write(clean_root / "etc/machine-id", "uninitialized\n")
    assert imagescan.scan_root(clean_root) == []


def test_symlinks_are_not_followed(clean_root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _write(outside / "key.pem", _pem_key())
    (clean_root / "opt/link").symlink_to(outside)
    assert imagescan.scan_root(clean_root) == []


def test_allowlist_file_is_the_one_the_image_gets() -> None:
    patterns = imagescan.load_allowlist()
    assert patterns, "the allowlist must not be empty by accident"
    assert all(p.pattern.startswith("^") and p.pattern.endswith("$") for p in patterns)
