"""build/manifest.json: what has been baked, per image and provider.

    {"images": {"<image>": {"<provider>": {"name", "fingerprint", "artifact": {...},
                                           "versions", "built_at", "packer_version"}}}}

artifact: qemu {"path", "sha256"}; aws {"ami", "region"}; openstack {"image_id", "cloud"}.
Written atomically (temporary file + os.replace), so a crash never leaves half a manifest,
and ``record`` read-modify-writes under an exclusive lock (build/.manifest.lock), so two
bakes finishing at once both keep their entries.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bake import inputs
from bake.atomic import write_atomic
from bake.errors import InputError
from bake.inputs import Rule

FILE_NAME = "manifest.json"


@dataclass(frozen=True)
class Entry:
    """One baked artifact."""

    name: str
    fingerprint: str
    artifact: dict[str, str]
    versions: dict[str, str] = field(default_factory=dict)
    built_at: str = ""
    packer_version: str = ""


def path(build_dir: Path) -> Path:
    """<build>/manifest.json."""
    return build_dir / FILE_NAME


def load(build_dir: Path) -> dict[str, dict[str, Entry]]:
    """The manifest as image -> provider -> Entry (empty when there is none yet)."""
    p = path(build_dir)
    if not p.exists():
        return {}
    hint = "delete it; the next `bake build` rebuilds what is missing"
    try:
        doc = inputs.check_fields(inputs.load_json_file(p, what="bake manifest"),
                                  [Rule("images", dict, default={})], source=p, path="")
        out: dict[str, dict[str, Entry]] = {}
        for image, providers in doc["images"].items():
            where = f"images.{image}"
            if not isinstance(providers, dict):
                raise InputError.field(p, where, "a mapping provider -> entry", providers)
            for provider, e in providers.items():
                fields = inputs.check_fields(e, _ENTRY_RULES, source=p,
                                             path=f"{where}.{provider}")
                for key in ("artifact", "versions"):
                    for k, v in fields[key].items():
                        inputs.check_value(v, Rule(k, str), source=p,
                                           path=f"{where}.{provider}.{key}.{k}")
                out.setdefault(image, {})[provider] = Entry(**fields)
    except InputError as exc:
        raise InputError(f"corrupt bake manifest: {exc.message}", hint=hint) from None
    return out


_ENTRY_RULES = (
    Rule("name", str), Rule("fingerprint", str), Rule("artifact", dict),
    Rule("versions", dict, default={}), Rule("built_at", str, default=""),
    Rule("packer_version", str, default=""),
)


def save(build_dir: Path, entries: dict[str, dict[str, Entry]]) -> Path:
    """Write the whole manifest atomically; returns its path."""
    p = path(build_dir)
    p.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"images": {
        image: {prov: asdict(e) for prov, e in sorted(provs.items())}
        for image, provs in sorted(entries.items())
    }}
    return write_atomic(p, json.dumps(doc, indent=2, sort_keys=True) + "\n")


@contextmanager
def _locked(build_dir: Path) -> Iterator[None]:
    """Exclusive lock for a read-modify-write of the manifest (waits for the other bake)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(build_dir / ".manifest.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def record(build_dir: Path, image: str, provider: str, entry: Entry) -> Path:
    """Add or replace one entry: re-read, change, write, all under the manifest lock."""
    with _locked(build_dir):
        entries = load(build_dir)
        entries.setdefault(image, {})[provider] = entry
        return save(build_dir, entries)
