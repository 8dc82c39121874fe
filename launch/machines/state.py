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
import shutil
import stat
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from fabkit import inputs
from fabkit.atomic import make_dirs, write_atomic
from fabkit.errors import ExternalError, InputError
from fabkit.inputs import Rule
from launch.spec.common import ENV_NAME_RE, SpecKind

STATE_VERSION = 1
STATE_FILE = "state.json"
REMOVED = "removed.json"      # where a removed environment ran (StateStore.mark_removed)


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
    if not isinstance(name, str) or not ENV_NAME_RE.fullmatch(name):
        raise InputError.field(source, "name", "lower-case letters, digits and '-' (at most "
                               "39 characters, starting and ending with a letter or digit)",
                               name)
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
    def from_json(cls, doc: Mapping[str, Any], *, source: str | Path | None = None,
                  path: str = "host") -> HostState:
        """Inverse of asdict(); every field checked (InputError naming it otherwise). Keys
        this version does not know are ignored (a later field of the same state version)."""
        if isinstance(doc, Mapping):
            doc = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
            if isinstance(doc.get("ports"), Mapping):  # ports written as "2222" by hand
                doc["ports"] = {k: int(v) if isinstance(v, str) and v.isdigit() else v
                                for k, v in doc["ports"].items()}
        d = inputs.check_fields(doc, _HOST_RULES, source=source, path=path)
        for i, role in enumerate(d["roles"]):
            inputs.check_value(role, Rule("role", str, pattern=r"[a-z][a-z-]{0,30}"),
                               source=source, path=f"{path}.roles[{i}]")
        for k, v in d["files"].items():
            inputs.check_value(v, Rule("file", str), source=source, path=f"{path}.files.{k}")
        for k, v in d["ports"].items():
            inputs.check_value(v, _PORT, source=source, path=f"{path}.ports.{k}")
        d["roles"] = tuple(d["roles"])
        d["phase"] = Phase(d["phase"])
        d["ports"] = {str(k): v for k, v in d["ports"].items()}
        for k, v in d["resources"].items():
            inputs.check_value(v, Rule("resource", str), source=source,
                               path=f"{path}.resources.{k}")
        return cls(**d)


_PORT = Rule("port", int, minimum=1, maximum=65535, why="a TCP port")
_HOST_RULES = (
    Rule("name", str, pattern=r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"),
    Rule("address", str, default=""),
    Rule("roles", list, default=[]),
    Rule("image", str, default=""),
    Rule("phase", str, default=Phase.RESERVED.value, choices=tuple(p.value for p in Phase)),
    Rule("generation", int, default=1, minimum=0),
    Rule("pid", int, default=None, minimum=1, maximum=2**22, why="Linux pid_max"),
    Rule("files", dict, default={}),
    Rule("ports", dict, default={}),
    Rule("resources", dict, default={}),   # provider resource ids (ENI, instance, volume...)
    Rule("user_data_sha256", str, default=""),
    Rule("error", str, default=""),
    Rule("updated_at", str, default=""),
)


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
    # The channel bootstrap's done marker, summarised (launch.lifecycle.bootstrap.summary): its
    # nonce equals `nonce` once this launch's network is bootstrapped.
    bootstrap: Mapping[str, Any] = field(default_factory=dict)
    # the spec's kind (launch.spec.common.SpecKind): fabperf launched the Fabric network, or
    # the network is the user's and fabperf runs only Caliper workers and the monitor
    kind: str = SpecKind.ENVIRONMENT.value
    created_at: str = ""
    updated_at: str = ""
    version: int = STATE_VERSION

    def to_json(self) -> dict[str, Any]:
        """The state.json document: what `down` needs to find the resources (provider,
        version, the settings in `network`, spec_path) first and the hosts last, so a
        truncated file still names where the environment runs (salvage)."""
        doc = asdict(self)
        hosts = {n: asdict(h) for n, h in self.hosts.items()}
        first = ("environment", "provider", "version", "kind", "spec_path", "network")
        out = {k: doc[k] for k in first}
        out.update({k: v for k, v in doc.items() if k not in out and k != "hosts"})
        out["hosts"] = hosts
        return out

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], source: str | Path | None = None) -> EnvState:
        """Parse a state.json document, checking every field and the version."""
        if isinstance(doc, Mapping) and doc.get("version", STATE_VERSION) != STATE_VERSION:
            raise InputError.field(source, "version", f"state version {STATE_VERSION}",
                                   doc.get("version"),
                                   hint="written by another fabperf version")
        if isinstance(doc, Mapping):
            doc = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        d = inputs.check_fields(doc, _ENV_RULES, source=source, path="")
        d["hosts"] = {n: HostState.from_json(h, source=source, path=f"hosts.{n}")
                      for n, h in d["hosts"].items()}
        return cls(**d)


_ENV_RULES = (
    Rule("environment", str, pattern=ENV_NAME_RE.pattern),
    Rule("provider", str, pattern=r"[a-z][a-z0-9_-]{0,31}"),
    Rule("spec_path", str, default=""),
    Rule("spec_sha256", str, default=""),
    Rule("nonce", str, default=""),
    Rule("ssh_user", str, default="fabperf"),
    Rule("ssh_key", str, default=""),
    Rule("network", dict, default={}),
    Rule("hosts", dict, default={}),
    Rule("bootstrap", dict, default={}),
    Rule("kind", str, default=SpecKind.ENVIRONMENT.value, choices=tuple(k.value for k in SpecKind)),
    Rule("created_at", str, default=""),
    Rule("updated_at", str, default=""),
    Rule("version", int, default=STATE_VERSION),
)


class CorruptState(InputError):
    """state.json exists but cannot be used: `status` explains, `down` scans instead."""


# A state of 100 hosts is about 150 KB; a file far beyond that is not one of ours.
MAX_STATE_BYTES = 16 * 2**20


def regular_file(path: Path) -> os.stat_result | None:
    """stat of ``path`` when it is a regular file (following a link), None when it does not
    exist; CorruptState for anything else (a FIFO would block a reader for ever, a device
    such as /dev/zero never ends, a directory cannot be read)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CorruptState(f"damaged state file: {path}: cannot stat it ({exc.strerror})",
                           hint=_DOWN_HINT.format(env=path.parent.name)) from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO"
                if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                or stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "not a regular file")
        raise CorruptState(f"damaged state file: {path} is {kind}, not a regular file",
                           hint=_DOWN_HINT.format(env=path.parent.name))
    return st


_DOWN_HINT = ("`launch down {env}` still removes the environment (it finds the machines by "
              "their tags; `--from ENV.yaml` or `--region` tell it where to look)")


@dataclass(frozen=True)
class Salvage:
    """What a damaged state file still tells: enough for `down` to find the resources."""

    provider: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    spec_path: str = ""


SALVAGE_BYTES = 256 * 1024


def salvage(path: Path) -> Salvage:
    """Read at most SALVAGE_BYTES of a damaged state file (only a regular file: never a
    FIFO or a device) and take what still parses: the whole document when it does, else
    the provider, spec_path and the cloud settings as the file spells them (provider,
    version and network are written before the hosts)."""
    try:
        if regular_file(path) is None:
            return Salvage()
        with open(path, "rb") as f:
            text = f.read(SALVAGE_BYTES).decode("utf-8", errors="replace")
    except (CorruptState, OSError):
        return Salvage()
    try:
        doc = inputs.load_json(text, source=path)
    except InputError:
        doc = None
    if isinstance(doc, Mapping):
        net = doc.get("network")
        settings = net.get("settings") if isinstance(net, Mapping) else None
        return Salvage(_text(doc.get("provider")),
                       dict(settings) if isinstance(settings, Mapping) else {},
                       _text(doc.get("spec_path")))

    def field_of(key: str) -> str:
        m = re.search(rf'"{key}"\s*:\s*"((?:[^"\\]|\\.){{0,1024}})"', text)
        return m.group(1) if m else ""

    settings = {k: v for k in ("region", "endpoint_url", "cloud", "user_data_bucket")
                if (v := field_of(k))}
    return Salvage(field_of("provider"), settings, field_of("spec_path"))


def _text(value: Any) -> str:
    return value if isinstance(value, str) and len(value) <= 4096 else ""


class StateStore:
    """Reads and writes one environment's state.json; thread-safe within a process."""

    def __init__(self, env_dir: Path, *, tolerate_damage: bool = False) -> None:
        self.dir = env_dir
        self.path = env_dir / STATE_FILE
        self._mutex = threading.RLock()
        # `down` of a damaged state: load() answers None (nothing recorded) and the
        # provider finds the resources by their tags.
        self.tolerate_damage = tolerate_damage

    def exists(self) -> bool:
        """Whether a state file is present (a damaged one too)."""
        return os.path.lexists(self.path)

    def load(self) -> EnvState | None:
        """The recorded state, or None when there is none (CorruptState when damaged).

        Anything but a regular file is refused before it is opened (a FIFO would block,
        /dev/zero never ends) and at most MAX_STATE_BYTES are read."""
        try:
            if regular_file(self.path) is None:
                return None
            return EnvState.from_json(
                inputs.load_json(inputs.read_text(self.path, what="state file",
                                                  max_bytes=MAX_STATE_BYTES),
                                 source=self.path), self.path)
        except InputError as exc:
            if self.tolerate_damage:
                return None
            if isinstance(exc, CorruptState):
                raise
            raise CorruptState(f"damaged state file: {exc.message}",
                               hint=_DOWN_HINT.format(env=self.dir.name)) from None

    def save(self, state: EnvState) -> EnvState:
        """Write the state atomically with mode 0600 and return what was written."""
        with self._mutex:
            state = replace(state, updated_at=now(), created_at=state.created_at or now())
            make_dirs(self.dir, leaf_mode=0o700)  # not writable by others, any umask
            write_atomic(self.path, json.dumps(state.to_json(), indent=2) + "\n",
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
        """Delete the state file (the environment is gone); a damaged one that is not a
        file (a directory, a FIFO, a link to a device) goes too, never what it points to.
        A readable one leaves its provider and settings in REMOVED (mark_removed)."""
        try:
            state = self.load()
        except CorruptState:
            state = None
        if os.path.isdir(self.path) and not os.path.islink(self.path):
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            self.path.unlink(missing_ok=True)
        if state is not None:
            self.mark_removed(state.provider, state.network.get("settings") or {})

    @property
    def removed_path(self) -> Path:
        return self.dir / REMOVED

    def mark_removed(self, provider: str, settings: Mapping[str, Any]) -> None:
        """Where the environment ran, kept after `down` removed it (no secret: the spec's
        settings), so a second `down` asks the same place and answers "nothing to remove"
        instead of asking every provider. `up` forgets it (forget_removed)."""
        doc = {"environment": self.dir.name, "provider": provider,
               "network": {"settings": dict(settings)}, "removed_at": now()}
        write_atomic(self.removed_path, json.dumps(doc, indent=2, default=str) + "\n",
                     mode=0o600)

    def forget_removed(self) -> None:
        """The environment exists again."""
        self.removed_path.unlink(missing_ok=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on this environment (fails at once when someone else has it)."""
        make_dirs(self.dir, leaf_mode=0o700)  # not writable by others, any umask
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
