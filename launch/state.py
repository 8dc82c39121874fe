"""The state of a launched environment: build/environments/<env>/state.json.

Written atomically (temp file, fsync, os.replace), mode 0600, and updated the moment each
resource exists (the network switch, each VM's process, overlay, seed, forwarded ports), so
an interrupted `launch up` leaves a record `launch down` can act on. Rendered user-data is
never stored here, only its sha256. A lock file (flock) keeps two `up`/`down` of the same
environment from running at once.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from bake.atomic import write_atomic
from bake.errors import ExternalError, InputError

STATE_VERSION = 1
STATE_FILE = "state.json"
ENV_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,38}$")


class Phase(StrEnum):
    """Where a host is in its life."""

    RESERVED = "reserved"      # address chosen, nothing running
    CREATING = "creating"      # files being made / process being started
    RUNNING = "running"        # the VM process runs
    READY = "ready"            # every readiness layer passed
    FAILED = "failed"          # a readiness layer failed
    STOPPED = "stopped"


def now() -> str:
    """An ISO 8601 UTC timestamp for the state file."""
    return _dt.datetime.now(tz=_dt.UTC).isoformat(timespec="seconds")


def check_env_name(name: str, source: str | None = None) -> str:
    """Environment names become directory names, VM tags and hostnames: keep them simple."""
    if not ENV_NAME_RE.match(name):
        raise InputError.field(source, "name", "lower-case letters, digits and '-' "
                               "(at most 39 characters, starting with a letter or digit)", name)
    return name


@dataclass(frozen=True)
class HostState:
    """One host of an environment as the provider created it."""

    name: str
    address: str
    roles: tuple[str, ...] = ()
    image: str = ""
    phase: Phase = Phase.RESERVED
    generation: int = 1
    pid: int | None = None
    files: Mapping[str, str] = field(default_factory=dict)   # overlay, seed, serial_log, qmp...
    ports: Mapping[str, int] = field(default_factory=dict)   # "ssh" / "<guest port>" -> host port
    user_data_sha256: str = ""
    error: str = ""
    updated_at: str = ""
    resources: Mapping[str, str] = field(default_factory=dict)  # cloud ids: instance, eni...

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> HostState:
        """Inverse of asdict()."""
        d = dict(doc)
        d["roles"] = tuple(d.get("roles", ()))
        d["phase"] = Phase(d.get("phase", Phase.RESERVED))
        d["files"] = dict(d.get("files", {}))
        d["ports"] = {str(k): int(v) for k, v in d.get("ports", {}).items()}
        d["resources"] = {str(k): str(v) for k, v in d.get("resources", {}).items()}
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class EnvState:
    """Everything `status`, `ssh`, `validate` and `down` need about one environment."""

    environment: str
    provider: str
    spec_path: str = ""
    spec_sha256: str = ""
    nonce: str = ""
    ssh_user: str = "fabperf"
    ssh_key: str = ""                                          # private key path (0600)
    network: Mapping[str, Any] = field(default_factory=dict)   # provider-specific
    hosts: Mapping[str, HostState] = field(default_factory=dict)
    # The channel bootstrap's done marker, summarised (launch.bootstrap.summary): its nonce
    # equals `nonce` once this launch's network is bootstrapped.
    bootstrap: Mapping[str, Any] = field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""
    version: int = STATE_VERSION

    def to_json(self) -> dict[str, Any]:
        """The state.json document."""
        doc = asdict(self)
        doc["hosts"] = {n: asdict(h) for n, h in self.hosts.items()}
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> EnvState:
        """Parse a state.json document."""
        d = dict(doc)
        d["hosts"] = {n: HostState.from_json(h) for n, h in d.get("hosts", {}).items()}
        d["network"] = dict(d.get("network", {}))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class StateStore:
    """Reads and writes one environment's state.json; thread-safe within a process."""

    def __init__(self, env_dir: Path) -> None:
        self.dir = env_dir
        self.path = env_dir / STATE_FILE
        self._mutex = threading.RLock()

    def exists(self) -> bool:
        """Whether a state file is present."""
        return self.path.exists()

    def load(self) -> EnvState | None:
        """The recorded state, or None when there is none."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            return EnvState.from_json(json.loads(text))
        except (ValueError, TypeError, KeyError) as exc:
            raise ExternalError(f"{self.path}: unreadable state file: {exc}",
                                hint="`launch down` still finds the VMs by their tags") from exc

    def save(self, state: EnvState) -> EnvState:
        """Write the state atomically with mode 0600 and return what was written."""
        with self._mutex:
            state = replace(state, updated_at=now(), created_at=state.created_at or now())
            self.dir.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n",
                         mode=0o600, fsync=True)
            return state

    def update(self, **changes: Any) -> EnvState:
        """Change top-level fields of the stored state (which must exist)."""
        with self._mutex:
            state = self._require()
            return self.save(replace(state, **changes))

    def update_host(self, name: str, **changes: Any) -> HostState:
        """Change one host's fields (creating the host entry when ``address`` is given)."""
        with self._mutex:
            state = self._require()
            host = state.hosts.get(name)
            if host is None:
                host = HostState(name=name, address=changes.pop("address", ""))
            if "files" in changes:
                changes["files"] = {**host.files, **changes["files"]}
            if "ports" in changes:
                changes["ports"] = {**host.ports, **changes["ports"]}
            if "resources" in changes:
                changes["resources"] = {**host.resources, **changes["resources"]}
            host = replace(host, **changes, updated_at=now())
            self.save(replace(state, hosts={**state.hosts, name: host}))
            return host

    def remove(self) -> None:
        """Delete the state file (the environment is gone)."""
        self.path.unlink(missing_ok=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on this environment (fails at once when someone else has it)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise ExternalError(
                    f"environment {self.dir.name!r} is busy: another launch command holds "
                    f"{self.dir / '.lock'}") from exc
            yield
        finally:
            os.close(fd)

    def _require(self) -> EnvState:
        state = self.load()
        if state is None:
            raise ExternalError(f"{self.path}: no state recorded yet")
        return state
