"""The image catalog: images/<image>/image.yaml loaded into frozen, validated ImageSpecs.

Every problem (an unknown key, a wrong type, a script or file that does not exist) is an
InputError naming the file and the field path, raised before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

from fabkit import inputs
from fabkit.errors import InputError

SCRIPTS_DIR = "packer/scripts"
IMAGES_DIR = "images"
_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,62}")     # fullmatch everywhere: no trailing "\n"
_ENV_RE = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
_OUTPUT_RE = re.compile(r"/[A-Za-z0-9._/-]+")


class Base(StrEnum):
    """The operating systems an image may start from (the same on every provider)."""

    DEBIAN_12 = "debian-12"
    UBUNTU_2204 = "ubuntu-22.04"
    UBUNTU_2404 = "ubuntu-24.04"


@dataclass(frozen=True)
class ImageSpec:
    """One image as declared in images/<name>/image.yaml (paths kept repo-relative)."""

    name: str
    description: str
    base: Base
    disk_size_gb: int
    build_memory_mb: int
    build_cpus: int
    versions: tuple[tuple[str, str], ...]   # in file order: env vars for every script
    files: tuple[str, ...]                  # repo-relative files or directories
    scripts: tuple[str, ...]                # relative to packer/scripts/
    goss: tuple[str, ...]                   # relative to images/
    source: Path                            # the image.yaml it came from
    raw: dict[str, Any]                     # the parsed YAML, for the fingerprint
    # Compile once, bake many: scripts (under packer/scripts/) run first in the native
    # build root (bake.prebuild); the absolute paths `outputs` they leave there are packed
    # and unpacked in the build VM before `scripts` run, which then find the work done.
    prebuild_scripts: tuple[str, ...] = ()
    prebuild_outputs: tuple[str, ...] = ()

    @property
    def versions_dict(self) -> dict[str, str]:
        """The pinned versions as a dict (file order kept)."""
        return dict(self.versions)

    def script_paths(self, root: Path) -> list[Path]:
        """Absolute paths of the provisioning scripts, in run order."""
        return [root / SCRIPTS_DIR / s for s in self.scripts]

    def goss_paths(self, root: Path) -> list[Path]:
        """Absolute paths of the goss specs."""
        return [root / IMAGES_DIR / g for g in self.goss]


# field -> (python type, description for messages, required)
_FIELDS: dict[str, tuple[type, str]] = {
    "name": (str, "a string"),
    "description": (str, "a string"),
    "base": (str, "one of " + ", ".join(b.value for b in Base)),
    "disk_size_gb": (int, "a positive integer"),
    "build_memory_mb": (int, "a positive integer"),
    "build_cpus": (int, "a positive integer"),
    "versions": (dict, "a mapping NAME: string"),
    "files": (list, "a list of repo-relative paths"),
    "scripts": (list, "a list of paths under packer/scripts/"),
    "goss": (list, "a list of paths under images/"),
    "prebuild": (dict, "a mapping {scripts: [paths under packer/scripts/], outputs: "
                       "[absolute paths]}"),
}
_MAXIMUM = {  # upper bounds of the integer fields, and why
    "disk_size_gb": (2048, "a disk image larger than 2 TiB is a mistake"),
    "build_memory_mb": (262144, "no build machine has more than 256 GiB for one bake"),
    "build_cpus": (256, "no build machine has more than 256 CPUs for one bake"),
}
_OPTIONAL = {"description": "", "versions": {}, "files": [], "goss": [], "prebuild": {}}


def image_names(root: Path) -> list[str]:
    """The images in the catalog (directories of images/ holding an image.yaml), sorted."""
    return sorted(p.parent.name for p in (root / IMAGES_DIR).glob("*/image.yaml"))


def load_image(root: Path, name: str) -> ImageSpec:
    """Load and validate images/<name>/image.yaml."""
    path = root / IMAGES_DIR / name / "image.yaml"
    if not path.is_file():
        known = ", ".join(image_names(root)) or "none"
        raise InputError(f"unknown image {name!r}", hint=f"known images: {known}")
    rel = path.relative_to(root)
    doc = inputs.load_yaml(inputs.read_text(path, what="image file", max_bytes=2**20),
                           source=rel)
    if not isinstance(doc, dict):
        raise InputError.field(rel, "(top level)", "a mapping", type(doc).__name__)
    return _validate(root, rel, doc, name)


def load_catalog(root: Path, names: list[str] | tuple[str, ...] | None = None) -> list[ImageSpec]:
    """Load the named images (default: all), validating each; sorted by name."""
    wanted = sorted(set(names)) if names else image_names(root)
    return [load_image(root, n) for n in wanted]


def override_versions(specs: Sequence[ImageSpec], texts: Sequence[str]) -> list[ImageSpec]:
    """Apply `--set [IMAGE.]NAME=VALUE` to the images' pinned versions.

    Without IMAGE the value goes to every selected image that pins NAME. A NAME no selected
    image pins is an error: a typo must not bake an image with the default silently. The
    overridden versions enter the fingerprint like the pinned ones.
    """
    result = list(specs)
    for text in texts:
        key, sep, value = text.partition("=")
        image, dot, name = key.rpartition(".")
        if not sep or not name or not _ENV_RE.fullmatch(name):
            raise InputError.field(None, "--set", "[IMAGE.]NAME=VALUE", text)
        hit = False
        for i, spec in enumerate(result):
            if (dot and spec.name != image) or name not in spec.versions_dict:
                continue
            versions = {**spec.versions_dict, name: value}
            raw = {**spec.raw, "versions": versions}
            result[i] = replace(spec, versions=tuple(versions.items()), raw=raw)
            hit = True
        if not hit:
            known = sorted({k for s in result if not dot or s.name == image
                            for k in s.versions_dict})
            raise InputError.field(
                None, "--set", f"a version one of the selected images pins ({', '.join(known)})",
                text)
    return result


def _validate(root: Path, rel: Path, doc: dict[str, Any], dirname: str) -> ImageSpec:
    for key in doc:
        if key not in _FIELDS:
            close = [k for k in _FIELDS if _similar(str(key), k)]
            raise InputError.field(
                rel, str(key), "one of " + ", ".join(_FIELDS), key,
                hint=f"did you mean {close[0]!r}?" if close else "unknown key",
            )
    values: dict[str, Any] = {}
    for key, (typ, expected) in _FIELDS.items():
        if key not in doc:
            if key in _OPTIONAL:
                values[key] = _OPTIONAL[key]
                continue
            raise InputError.field(rel, key, expected, "nothing (the key is missing)")
        v = doc[key]
        # bool is an int in Python; a YAML `true` is never a size.
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            raise InputError.field(rel, key, expected, v)
        if typ is int and v <= 0:
            raise InputError.field(rel, key, expected, v)
        if typ is int and v > _MAXIMUM[key][0]:
            raise InputError.field(rel, key, f"at most {_MAXIMUM[key][0]}", v,
                                   hint=f"the limit exists because {_MAXIMUM[key][1]}")
        values[key] = v
    if values["name"] != dirname or not _NAME_RE.fullmatch(values["name"]):
        raise InputError.field(rel, "name", f"{dirname!r} (the directory name)", values["name"])
    try:
        base = Base(values["base"])
    except ValueError:
        raise InputError.field(rel, "base", _FIELDS["base"][1], values["base"]) from None

    versions: list[tuple[str, str]] = []
    for k, v in values["versions"].items():
        if not isinstance(k, str) or not _ENV_RE.fullmatch(k):
            raise InputError.field(rel, f"versions.{k}", "an environment variable name", k)
        if not isinstance(v, str):
            raise InputError.field(rel, f"versions.{k}", "a string (quote numbers)", v)
        versions.append((k, v))

    files = _paths(root, rel, "files", values["files"], root, want_dir=None)
    scripts = _paths(root, rel, "scripts", values["scripts"], root / SCRIPTS_DIR, want_dir=False)
    goss = _paths(root, rel, "goss", values["goss"], root / IMAGES_DIR, want_dir=False)
    if not scripts:
        raise InputError.field(rel, "scripts", "at least one script", [])
    pre_scripts, pre_outputs = _prebuild(root, rel, values["prebuild"])
    return ImageSpec(
        name=values["name"], description=values["description"], base=base,
        disk_size_gb=values["disk_size_gb"], build_memory_mb=values["build_memory_mb"],
        build_cpus=values["build_cpus"], versions=tuple(versions), files=files,
        scripts=scripts, goss=goss, source=root / rel, raw=doc,
        prebuild_scripts=pre_scripts, prebuild_outputs=pre_outputs,
    )


def _prebuild(root: Path, rel: Path, doc: dict[str, Any]) -> tuple[tuple[str, ...],
                                                                     tuple[str, ...]]:
    if not doc:
        return (), ()
    for key in doc:
        if key not in ("scripts", "outputs"):
            raise InputError.field(rel, f"prebuild.{key}", "scripts or outputs", key)
    scripts_v, outputs_v = doc.get("scripts"), doc.get("outputs")
    if not isinstance(scripts_v, list) or not scripts_v:
        raise InputError.field(rel, "prebuild.scripts", "a non-empty list of paths under "
                               "packer/scripts/", scripts_v)
    if not isinstance(outputs_v, list) or not outputs_v:
        raise InputError.field(rel, "prebuild.outputs", "a non-empty list of absolute paths",
                               outputs_v)
    scripts = _paths(root, rel, "prebuild.scripts", scripts_v, root / SCRIPTS_DIR,
                     want_dir=False)
    outputs = []
    for i, item in enumerate(outputs_v):
        p = PurePosixPath(item) if isinstance(item, str) else None
        if (p is None or not p.is_absolute() or ".." in p.parts
                or len(p.parts) < 3 or not _OUTPUT_RE.fullmatch(item)):
            raise InputError.field(rel, f"prebuild.outputs[{i}]",
                                   "an absolute path at least two levels deep (/opt/x)", item)
        outputs.append(item)
    return scripts, tuple(outputs)


def _paths(root: Path, rel: Path, field: str, items: list[Any], under: Path,
           want_dir: bool | None) -> tuple[str, ...]:
    """Validate a list of relative paths that must exist below ``under``."""
    out: list[str] = []
    for i, item in enumerate(items):
        where = f"{field}[{i}]"
        if not isinstance(item, str) or not item:
            raise InputError.field(rel, where, "a relative path", item)
        p = PurePosixPath(inputs.check_path_text(item, source=rel, path=where))
        if p.is_absolute() or ".." in p.parts:
            raise InputError.field(rel, where, f"a path inside {under.relative_to(root) or '.'}",
                                   item)
        target = under / item
        shown = target.relative_to(root)
        if want_dir is False and not target.is_file():
            raise InputError.field(rel, where, f"an existing file ({shown})", item,
                                   hint=f"{shown} does not exist")
        if want_dir is None and not target.exists():
            raise InputError.field(rel, where, f"an existing file or directory ({shown})", item,
                                   hint=f"{shown} does not exist")
        out.append(item)
    return tuple(out)


def _similar(a: str, b: str) -> bool:
    """A cheap typo test: same letters give or take one, or one is a prefix of the other."""
    if a.startswith(b) or b.startswith(a):
        return True
    return len(set(a) ^ set(b)) <= 2 and abs(len(a) - len(b)) <= 2


def files_of(root: Path, spec: ImageSpec) -> list[Path]:
    """Every regular file the image's ``files`` entries bring, sorted by repo-relative path."""
    found: list[Path] = []
    for entry in spec.files:
        p = root / entry
        if p.is_file():
            found.append(p)
        else:
            found.extend(q for q in p.rglob("*") if q.is_file())
    return sorted(set(found), key=lambda q: q.relative_to(root).as_posix())
