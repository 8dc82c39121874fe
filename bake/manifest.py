"""build/manifest.json: what has been baked, per image and provider.

    {"images": {"<image>": {"<provider>": {"name", "fingerprint", "artifact": {...},
                                           "versions", "built_at", "packer_version"}}},
     "history": {"<image>": {"<provider>": [entry, ...]}}}

`images` holds the current artifact of each image (what `launch` uses by default);
`history` the earlier ones a newer bake replaced (newest first, at most HISTORY_LIMIT), so
that baking a fingerprint again whose artifact still exists is a cache hit: how `launch
compare` switches between Fabric refs without re-baking either.

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

from fabkit import inputs
from fabkit.atomic import write_atomic
from fabkit.errors import InputError
from fabkit.inputs import Rule

FILE_NAME = "manifest.json"
HISTORY_LIMIT = 16     # earlier artifacts kept per image and provider


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


Entries = dict[str, dict[str, Entry]]
History = dict[str, dict[str, list[Entry]]]


def load(build_dir: Path) -> Entries:
    """The manifest's current artifacts as image -> provider -> Entry (empty when there
    is none yet)."""
    return _load_all(build_dir)[0]


def load_history(build_dir: Path) -> History:
    """Earlier artifacts as image -> provider -> [Entry], newest first."""
    return _load_all(build_dir)[1]


def earlier(build_dir: Path, image: str, provider: str, fingerprint: str) -> Entry | None:
    """The newest earlier entry of this fingerprint, if the history has one."""
    for e in load_history(build_dir).get(image, {}).get(provider, []):
        if e.fingerprint == fingerprint:
            return e
    return None


def _entry(p: Path, where: str, e: Any) -> Entry:
    fields = inputs.check_fields(e, _ENTRY_RULES, source=p, path=where)
    for key in ("artifact", "versions"):
        for k, v in fields[key].items():
            inputs.check_value(v, Rule(k, str), source=p, path=f"{where}.{key}.{k}")
    return Entry(**fields)


def _load_all(build_dir: Path) -> tuple[Entries, History]:
    p = path(build_dir)
    if not p.exists():
        return {}, {}
    hint = "delete it; the next `bake build` rebuilds what is missing"
    try:
        doc = inputs.check_fields(inputs.load_json_file(p, what="bake manifest"),
                                  [Rule("images", dict, default={}),
                                   Rule("history", dict, default={})], source=p, path="")
        out: Entries = {}
        for image, providers in doc["images"].items():
            where = f"images.{image}"
            if not isinstance(providers, dict):
                raise InputError.field(p, where, "a mapping provider -> entry", providers)
            for provider, e in providers.items():
                out.setdefault(image, {})[provider] = _entry(p, f"{where}.{provider}", e)
        hist: History = {}
        for image, providers in doc["history"].items():
            where = f"history.{image}"
            if not isinstance(providers, dict):
                raise InputError.field(p, where, "a mapping provider -> entries", providers)
            for provider, lst in providers.items():
                if not isinstance(lst, list):
                    raise InputError.field(p, f"{where}.{provider}", "a list of entries", lst)
                hist.setdefault(image, {})[provider] = [
                    _entry(p, f"{where}.{provider}[{i}]", e) for i, e in enumerate(lst)]
    except InputError as exc:
        raise InputError(f"corrupt bake manifest: {exc.message}", hint=hint) from None
    return out, hist


_ENTRY_RULES = (
    Rule("name", str), Rule("fingerprint", str), Rule("artifact", dict),
    Rule("versions", dict, default={}), Rule("built_at", str, default=""),
    Rule("packer_version", str, default=""),
)


def save(build_dir: Path, entries: Entries, history: History | None = None) -> Path:
    """Write the whole manifest atomically; returns its path."""
    p = path(build_dir)
    p.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"images": {
        image: {prov: asdict(e) for prov, e in sorted(provs.items())}
        for image, provs in sorted(entries.items())
    }}
    if history:
        doc["history"] = {image: {prov: [asdict(e) for e in lst]
                                  for prov, lst in sorted(provs.items()) if lst}
                          for image, provs in sorted(history.items())}
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
    """Make `entry` the current artifact of image/provider: re-read, change, write, all under
    the manifest lock. The entry it replaces goes to the history (another fingerprint), and
    `entry` leaves the history (it is current again)."""
    with _locked(build_dir):
        entries, history = _load_all(build_dir)
        old = entries.get(image, {}).get(provider)
        lst = [e for e in history.get(image, {}).get(provider, [])
               if e.fingerprint not in (entry.fingerprint,
                                        old.fingerprint if old else None)]
        if old is not None and old.fingerprint != entry.fingerprint:
            lst.insert(0, old)
        history.setdefault(image, {})[provider] = lst[:HISTORY_LIMIT]
        entries.setdefault(image, {})[provider] = entry
        return save(build_dir, entries, history)
