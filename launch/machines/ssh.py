"""SSH to launched hosts: the per-environment admin key and the ssh command line.

Each environment gets its own ed25519 key (private key 0600 in the environment's state
directory), authorised for the `fabperf` admin user through user-data. Hosts are reached
at an address and port the provider recorded (the qemu provider: 127.0.0.1 and a
forwarded port).
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fabkit import runner
from fabkit.atomic import write_atomic
from fabkit.errors import ExternalError, InputError

ADMIN_USER = "fabperf"
KEY_NAME = "id_ed25519"


@dataclass(frozen=True)
class KeyPair:
    """A private key file and its OpenSSH public key line."""

    private_key: Path
    public_key: str


def ensure_keypair(directory: Path, comment: str) -> KeyPair:
    """Create directory/id_ed25519 (0600) and .pub (0644) once; later calls return the same
    pair. The public key line (it goes into every host's user-data) is always derived from
    the private key, never read back from the .pub file, which another user might swap."""
    priv = directory / KEY_NAME
    pub = directory / f"{KEY_NAME}.pub"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    key = _load_private(priv)
    if key is None:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
        write_atomic(priv, pem, mode=0o600)
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()
    line = f"{line} {comment}"
    try:
        current = pub.read_text(encoding="utf-8") if pub.is_file() else None
    except (OSError, UnicodeDecodeError):
        current = None
    if current != line + "\n" or stat.S_IMODE(pub.stat().st_mode) != 0o644:
        write_atomic(pub, line + "\n", mode=0o644)
    return KeyPair(priv, line)


def _load_private(priv: Path) -> Ed25519PrivateKey | None:
    """The environment's private key, or None when there is none yet."""
    try:
        data = priv.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ExternalError(f"{priv}: cannot read the environment's SSH key ({exc.strerror})"
                            ) from None
    if stat.S_IMODE(priv.stat().st_mode) & 0o077:
        os.chmod(priv, 0o600)
    try:
        key = serialization.load_ssh_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{priv}: not an OpenSSH private key ({exc})",
                         hint="`launch down` the environment, then `launch up` makes a new key"
                         ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"{priv}: expected an ed25519 key")
    return key


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


# ssh's own messages when no session was made (the command never ran on the host): a
# loaded host (a TCG guest on a busy machine) answers its banner late now and then
_NO_SESSION = re.compile(r"Connection timed out during banner exchange|"
                         r"kex_exchange_identification|"
                         r"connect to host .* (?:Connection refused|Connection timed out|"
                         r"No route to host)")
CONNECT_ATTEMPTS = 4      # one try and three more, a few seconds apart


def no_session(result: runner.Completed) -> bool:
    """The ssh client failed before a session existed (exit 255 with one of ssh's connect
    messages): retrying cannot run the command twice."""
    return result.returncode == 255 and bool(_NO_SESSION.search(result.stderr))


def run(target: Target, command: str, *, timeout: float | None = None,
        log_path: Path | None = None, check: bool = False, input: str | None = None,
        connect_timeout: int = 5, attempts: int = 1,
        sleep: Callable[[float], None] = time.sleep) -> runner.Completed:
    """Run one shell command on a host through the runner; with `attempts` > 1, a connection
    that was never made (no_session) is tried again, 3 s apart; any other outcome is final."""
    what = f"ssh {target.host}"
    for attempt in range(1, attempts + 1):
        res = runner.run(ssh_argv(target, command, connect_timeout=connect_timeout),
                         input=input, timeout=timeout, log_path=log_path, check=False,
                         what=what)
        if attempt == attempts or not no_session(res):
            break
        sleep(3)
    if check and not res.ok:
        raise runner.command_failed(res, what)
    return res
