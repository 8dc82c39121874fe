"""SSH to launched hosts: the per-environment admin key and the ssh command line.

Each environment gets its own ed25519 key (private key 0600 in the environment's state
directory), authorised for the `fabperf` admin user through user-data. Hosts are reached
at an address and port the provider recorded (the qemu provider: 127.0.0.1 and a
forwarded port).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bake import runner
from bake.atomic import write_atomic

ADMIN_USER = "fabperf"
KEY_NAME = "id_ed25519"


@dataclass(frozen=True)
class KeyPair:
    """A private key file and its OpenSSH public key line."""

    private_key: Path
    public_key: str


def ensure_keypair(directory: Path, comment: str) -> KeyPair:
    """Create directory/id_ed25519 (0600) and .pub once; later calls return the same pair."""
    priv = directory / KEY_NAME
    pub = directory / f"{KEY_NAME}.pub"
    if priv.exists() and pub.exists():
        return KeyPair(priv, pub.read_text().strip())
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                            serialization.NoEncryption())
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()
    line = f"{line} {comment}"
    write_atomic(priv, pem, mode=0o600)
    pub.write_text(line + "\n")
    return KeyPair(priv, line)


@dataclass(frozen=True)
class Target:
    """Where one host's sshd answers."""

    host: str
    address: str
    port: int
    user: str
    key: Path
    jump: str = ""          # user@host[:port] of an SSH jump host (ssh -J), when the host
                            # is only reachable from inside its network


def ssh_argv(target: Target, command: str | None = None, *, connect_timeout: int = 5,
             tty: bool = False, extra: Sequence[str] = ()) -> list[str]:
    """The ssh command line for a host (batch mode, no host-key prompts)."""
    argv = [
        "ssh", "-i", str(target.key), "-p", str(target.port),
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
        # Forwarded ports are reused across environments: host keys would clash.
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", "-o", f"ConnectTimeout={connect_timeout}",
        "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=6",
        *(["-J", target.jump] if target.jump else []),
        *(["-t"] if tty else []), *extra,
        f"{target.user}@{target.address}",
    ]
    if command is not None:
        argv += ["--", command]
    return argv


def scp_argv(target: Target, remote: str, local: Path, *, connect_timeout: int = 5) -> list[str]:
    """The scp command line that copies a host's file `remote` to `local` (same options as
    ssh_argv)."""
    return [
        "scp", "-q", "-i", str(target.key), "-P", str(target.port),
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", "-o", f"ConnectTimeout={connect_timeout}",
        f"{target.user}@{target.address}:{remote}", str(local),
    ]


def run(target: Target, command: str, *, timeout: float | None = None,
        log_path: Path | None = None, check: bool = False,
        connect_timeout: int = 5) -> runner.Completed:
    """Run one shell command on a host through the runner."""
    return runner.run(ssh_argv(target, command, connect_timeout=connect_timeout),
                      timeout=timeout, log_path=log_path, check=check,
                      what=f"ssh {target.host}")
