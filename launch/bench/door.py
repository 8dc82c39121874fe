"""How bench reaches a host: a Door runs a shell command there and copies a file back.
SshDoor is the real one (ssh/scp through fabkit.runner, logged to one file); unit tests
give a fake one."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from fabkit import runner
from launch.machines import ssh


class Door(Protocol):
    """How bench reaches a host: run a shell command, copy a file back."""

    def run(self, host: str, command: str, *, input: str | None = None,
            timeout: float | None = 120, check: bool = True) -> runner.Completed: ...

    def fetch(self, host: str, remote: str, local: Path) -> None: ...


class SshDoor:
    """The real Door: ssh/scp through fabkit.runner, logged to one file."""

    def __init__(self, targets: Mapping[str, ssh.Target], log_path: Path) -> None:
        self.targets = dict(targets)
        self.log_path = log_path

    def run(self, host: str, command: str, *, input: str | None = None,
            timeout: float | None = 120, check: bool = True) -> runner.Completed:
        return ssh.run(self.targets[host], command, input=input, timeout=timeout,
                       check=check, log_path=self.log_path, connect_timeout=15,
                       attempts=ssh.CONNECT_ATTEMPTS)

    def fetch(self, host: str, remote: str, local: Path) -> None:
        runner.run(ssh.scp_argv(self.targets[host], remote, local), timeout=600,
                   log_path=self.log_path, what=f"scp from {host}")
