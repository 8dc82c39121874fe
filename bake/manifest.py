"""build/manifest.json: what has been baked, per image and provider.

    {"images": {"<image>": {"<provider>": {"name", "fingerprint", "artifact": {...},
                                           "versions", "built_at", "packer_version"}}}}

artifact: qemu {"path", "sha256"}; aws {"ami", "region"}; openstack {"image_id", "cloud"}.
Written atomically (temporary file + os.replace), so a crash never leaves half a manifest.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bake.atomic import write_atomic
from bake.errors import InputError

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
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not valid JSON: {exc}",
                         hint="delete it; the next `bake build` rebuilds what is missing") from exc
    out: dict[str, dict[str, Entry]] = {}
    for image, providers in (doc.get("images") or {}).items():
        for provider, e in providers.items():
            try:
                out.setdefault(image, {})[provider] = Entry(**e)
            except TypeError as exc:
                raise InputError.field(p, f"images.{image}.{provider}", "a manifest entry",
                                       e) from exc
    return out


def save(build_dir: Path, entries: dict[str, dict[str, Entry]]) -> Path:
    """Write the whole manifest atomically; returns its path."""
    p = path(build_dir)
    p.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"images": {
        image: {prov: asdict(e) for prov, e in sorted(provs.items())}
        for image, provs in sorted(entries.items())
    }}
    return write_atomic(p, json.dumps(doc, indent=2, sort_keys=True) + "\n")


def record(build_dir: Path, image: str, provider: str, entry: Entry) -> Path:
    """Add or replace one entry (re-reading the file first: other builds may have written)."""
    entries = load(build_dir)
    entries.setdefault(image, {})[provider] = entry
    return save(build_dir, entries)
