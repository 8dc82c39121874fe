"""cloud-init user-data: one #cloud-config per host, and the provider's size budget.

The cloud-config is built as a dict and dumped with PyYAML's safe dumper (never templated
as YAML text); jinja2 renders only the files inside it (templates under cloud-init/).
Rendered user-data holds private keys: it is never logged.
"""

from __future__ import annotations

import base64
import functools
import gzip
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from fabkit.errors import InputError
from launch.render import fabric
from launch.render.plan import Host, Plan
from launch.spec.contract import (
    BOOTSTRAP_UNIT,
    CHAINCODE_UNIT,
    OPTIONAL_UNITS,
    READY_PROGRAM,
    UNITS,
    Role,
)
from launch.spec.providers import Provider

TEMPLATES = Path(__file__).resolve().parents[2] / "cloud-init"
HEADER = b"#cloud-config\n"


@dataclass(frozen=True)
class File:
    """One write_files entry."""

    path: str
    content: str | bytes   # bytes go base64-encoded (cloud-init's `encoding: b64`)
    owner: str = "root:root"
    permissions: str = "0644"


@dataclass(frozen=True)
class UserData:
    """What a host's instance receives: `data` is exactly the bytes handed to the provider."""

    host: str
    data: bytes
    raw_size: int    # the cloud-config before compression
    gzipped: bool

    @property
    def size(self) -> int:
        return len(self.data)


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def template(name: str, **values: object) -> str:
    """Render cloud-init/<name> (StrictUndefined: a missing value is an error)."""
    return _templates().get_template(name).render(**values)


_ENV_VALUE = re.compile(r'^[^\n"\'\\]*$')


def env_text(env: Mapping[str, str], *, title: str, environment: str, host: str) -> str:
    """A systemd EnvironmentFile; values are plain (no quotes, backslashes, newlines)."""
    for key, value in env.items():
        if not _ENV_VALUE.match(value):
            raise ValueError(f"env value of {key} cannot be written plainly: {value!r}")
    return template("env.j2", env=env, title=title, environment=environment, host=host)


def hosts_text(plan: Plan, aliases: Mapping[str, str] | None = None) -> str:
    """/etc/hosts for every host: its own names, then the Fabric node FQDNs it runs; then
    `aliases` (name -> address: a BYOF network's names, grouped by address)."""
    entries = [{"address": h.address,
                "names": [h.fqdn, h.name, *(n.fqdn for n in plan.nodes_on(h.name))]}
               for h in plan.hosts]
    by_address: dict[str, list[str]] = {}
    for name, address in (aliases or {}).items():
        by_address.setdefault(address, []).append(name)
    entries += [{"address": a, "names": names} for a, names in by_address.items()]
    return template("hosts.j2", environment=plan.spec.name, entries=entries)


def units(plan: Plan, host: Host) -> list[str]:
    """The systemd units a host's roles run (caliper-worker@1..N for Caliper; on a peer host
    one chaincode server per chaincode its organisation runs)."""
    out: list[str] = []
    for role in host.roles:
        if role is Role.CALIPER:
            worker = plan.worker_on(host.name)
            processes = worker.processes if worker is not None else 0
            out += [f"caliper-worker@{i}.service" for i in range(1, processes + 1)]
        else:
            out += UNITS[role]
        if role is Role.PEER:
            for node in plan.nodes_on(host.name):
                if node.role is Role.PEER:
                    out += [CHAINCODE_UNIT.format(name=i)
                            for i in fabric.chaincode_envs(plan, node)]
    return list(dict.fromkeys(out))


def cloud_config(plan: Plan, host: Host, files: Iterable[File], nonce: str, *,
                 before: Sequence[Sequence[str]] = ()) -> dict:
    """The #cloud-config document of one host. `before`: commands run before its units
    start (such as handing files to an account write_files cannot name)."""
    write_files = []
    for f in sorted(files, key=lambda f: f.path):
        entry = {"path": f.path, "content": f.content, "owner": f.owner,
                 "permissions": f.permissions}
        if isinstance(f.content, bytes):
            entry["content"] = base64.b64encode(f.content).decode()
            entry["encoding"] = "b64"
        write_files.append(entry)
    roles = [r.value for r in host.roles]
    runcmd: list[list[str]] = [list(c) for c in before]
    enable = units(plan, host)
    required = [u for u in enable if u not in OPTIONAL_UNITS]
    if required:
        runcmd.append(["systemctl", "enable", "--now", *required])
    for unit in (u for u in enable if u in OPTIONAL_UNITS):
        runcmd.append(["sh", "-c", f"if systemctl cat {unit} >/dev/null 2>&1; "
                                   f"then systemctl enable --now {unit}; fi"])
    if host is plan.bootstrap:
        # The channel bootstrap runs in the background (a oneshot unit): the ready marker
        # must not wait for it, since it waits for every other node to be up.
        runcmd.append(["systemctl", "enable", BOOTSTRAP_UNIT])
        runcmd.append(["systemctl", "start", "--no-block", BOOTSTRAP_UNIT])
    # The readiness sentinel: launch waits for this nonce in the ready file.
    runcmd.append([READY_PROGRAM, "--nonce", nonce, *roles])
    return {
        "hostname": host.name,
        "fqdn": host.fqdn,
        "prefer_fqdn_over_hostname": False,
        # We write /etc/hosts ourselves: every Fabric name must resolve on every host.
        "manage_etc_hosts": False,
        "write_files": write_files,
        "runcmd": runcmd,
    }


# the C dumper when PyYAML has libyaml: a base chosen at import time, which mypy cannot see
class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """The safe dumper, writing multi-line strings (PEM, env files) as literal blocks."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


_TAG = "tag:yaml.org,2002:"


class _Unusual(Exception):
    """A value ``_node`` leaves to the representer (it raises or anchors as it always did)."""


def _node(data: Any, seen: set[int]) -> yaml.Node:
    """The node the safe representer (with ``_str``) makes of plain data, built directly.

    The representer's generic dispatch is most of the time of dumping a render's 150
    cloud-configs; this is the same tree for the types they hold (str, bool, int, None,
    dict, list; a container seen twice would be an alias): the emitter then writes the
    same bytes (a test compares every document of a big render).
    """
    kind = type(data)
    if kind is str:
        return yaml.ScalarNode(_TAG + "str", data, style="|" if "\n" in data else None)
    if kind is bool:
        return yaml.ScalarNode(_TAG + "bool", "true" if data else "false")
    if kind is int:
        return yaml.ScalarNode(_TAG + "int", str(data))
    if data is None:
        return yaml.ScalarNode(_TAG + "null", "null")
    if kind is dict or kind is list:
        if id(data) in seen:
            raise _Unusual
        seen.add(id(data))
        if kind is dict:
            return yaml.MappingNode(_TAG + "map", [(_node(k, seen), _node(v, seen))
                                                   for k, v in data.items()], flow_style=False)
        return yaml.SequenceNode(_TAG + "seq", [_node(v, seen) for v in data], flow_style=False)
    raise _Unusual


def yaml_text(doc: object, *, allow_unicode: bool | None = None) -> str:
    """YAML of a document: keys in insertion order, block style, multi-line strings as
    literal blocks, lines up to 4096 characters."""
    try:
        node = _node(doc, set())
    except _Unusual:
        return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=4096,
                         default_flow_style=False, allow_unicode=allow_unicode)
    return yaml.serialize(node, Dumper=_Dumper, width=4096, allow_unicode=allow_unicode)


def dump(doc: Mapping) -> bytes:
    """#cloud-config text of a document (keys kept in insertion order)."""
    return HEADER + yaml_text(dict(doc), allow_unicode=False).encode()


def fit(host: str, text: bytes, provider: Provider) -> UserData:
    """Apply the provider's user-data budget (its facts): as is when it fits, else gzip
    (deterministic, mtime 0; cloud-init detects and inflates it); an InputError naming the
    host and sizes if even the compressed form is too big."""
    budget = provider.facts.user_data
    if budget.fits(text):
        return UserData(host, text, len(text), gzipped=False)
    packed = gzip.compress(text, compresslevel=9, mtime=0)
    if budget.fits(packed) or budget.overflow:
        # EC2: what still exceeds 16 KB travels through a private S3 object
        # (launch.machines.providers.aws); the instance's user-data becomes a small boot script.
        return UserData(host, packed, len(text), gzipped=True)
    b64 = f", {budget.size(packed)} bytes as base64" if budget.base64 else ""
    raise InputError(
        f"user-data of host {host} does not fit {provider.value}'s limit of "
        f"{budget.describe()}: {len(text)} bytes raw, {len(packed)} bytes gzipped{b64}",
        hint="put fewer roles on the host, or give the bootstrap job fewer organisations "
             "per host (the bootstrap node carries every organisation's admin identity)")


def decode(data: bytes) -> bytes:
    """The cloud-config text of user-data bytes (inflating gzip as cloud-init does)."""
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def b64(data: bytes) -> str:
    """Base64 of user-data (what the OpenStack API carries)."""
    return base64.b64encode(data).decode()


def dedupe(files: Sequence[File]) -> list[File]:
    """One entry per path; two different contents for one path is a bug, not input."""
    seen: dict[str, File] = {}
    for f in files:
        if f.path in seen and seen[f.path] != f:
            raise RuntimeError(f"two different files for {f.path}")
        seen[f.path] = f
    return list(seen.values())
