"""Compile once, bake many: an image's slow steps run in the native build root, and their
outputs are packed into one artifact that every bake of the image (any provider) unpacks.

An image declares ``prebuild: {scripts: [...], outputs: [...]}`` in its image.yaml. The
scripts are the image's own provisioning scripts: they run in the build root exactly as in
the build VM (same paths, same environment, FABPERF_PHASE=prebuild) and are idempotent, so
in the VM they find their work done and skip it (fabric.sh: the binaries of the expected
commit exist; chaincode.sh/caliper.sh: node_modules at the pinned versions exist).

The artifact ``<build>/prebuilt/<image>-<key12>.tar.gz`` (+ ``.json``) is keyed by the hash
of everything that can change it: the scripts and files (content), the pinned versions
(host paths such as FABRIC_SOURCE by the content of what they name), the outputs and the
build root's identity (Debian release, packages: so the Go and Node versions). The Fabric
commit and Go version a build used are recorded in the artifact's JSON.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tarfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bake import buildroot
from bake.catalog import SCRIPTS_DIR, ImageSpec, files_of
from bake.packer import format_seconds
from fabkit.atomic import write_atomic
from fabkit.errors import InputError
from fabkit.hashing import sha256_file

log = logging.getLogger("fabperf.prebuild")

# Versions whose value is a path on the machine running bake (air-gapped inputs). They are
# made visible inside the build root, and fingerprinted by content, not by spelling.
HOST_PATH_VERSIONS = ("FABRIC_SOURCE", "GO_TARBALL")
GUEST_INPUTS = "/tmp/fabperf/inputs"
GUEST_FILES = "/tmp/fabperf/files"
GUEST_SCRIPTS = "/tmp/fabperf/scripts"
# Where fabric.sh records what it compiled (copied into the artifact's JSON).
BUILD_RECORDS = ("/opt/fabric/BUILD.json",)
SCHEME = "fabperf-prebuild-1"


@dataclass(frozen=True)
class Artifact:
    """A packed prebuild (made now or found in the cache)."""

    image: str
    key: str
    path: Path
    cached: bool
    seconds: float
    record: dict[str, object]


def host_path(root: Path, name: str, value: str) -> Path:
    """The file or directory a host-path version names (relative: to the repository root)."""
    p = Path(value).expanduser()
    p = p if p.is_absolute() else root / p
    if not (p.is_file() or p.is_dir()):     # a FIFO or a device would be read for ever
        raise InputError.field(None, f"versions.{name}", "an existing file or directory on "
                               "this machine (relative paths are from the repository root)",
                               value, hint=f"{p} is not a regular file or a directory"
                               if p.exists() else f"{p} does not exist")
    return p.resolve()


def content_id(path: Path) -> str:
    """A content identity of a file (sha256) or a source directory (its git commit when it
    is a checkout, else the hash of every file's path and content)."""
    if path.is_file():
        return "sha256:" + sha256_file(path)
    head = path / ".git" / "HEAD"
    if head.is_file():
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            target = path / ".git" / ref[5:]
            if target.is_file():
                return "git:" + target.read_text().strip()
        else:
            return "git:" + ref
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file() and ".git" not in q.parts):
        h.update(p.relative_to(path).as_posix().encode() + b"\0")
        h.update(sha256_file(p).encode())
    return "tree:" + h.hexdigest()


def versions_identity(root: Path, spec: ImageSpec) -> dict[str, str]:
    """The pinned versions with every host path replaced by the identity of its content."""
    out = {}
    for k, v in spec.versions:
        out[k] = content_id(host_path(root, k, v)) if k in HOST_PATH_VERSIONS and v else v
    return dict(sorted(out.items()))


def key_inputs(root: Path, spec: ImageSpec, root_ident: str) -> dict[str, object]:
    """The document whose hash keys the artifact."""
    def rel(p: Path) -> str:
        return p.relative_to(root).as_posix()
    lib = root / "packer/files/common/lib.sh"
    scripts = {s: sha256_file(root / SCRIPTS_DIR / s) for s in spec.prebuild_scripts}
    return {
        "scheme": SCHEME,
        "image": spec.name,
        "scripts": scripts,
        "lib": sha256_file(lib) if lib.is_file() else "",
        "files": {rel(p): sha256_file(p) for p in files_of(root, spec)},
        "versions": versions_identity(root, spec),
        "outputs": list(spec.prebuild_outputs),
        "buildroot": root_ident,
    }


def key(root: Path, spec: ImageSpec, root_ident: str) -> str:
    """The artifact's cache key."""
    doc = json.dumps(key_inputs(root, spec, root_ident), sort_keys=True,
                     separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()


def artifact_path(build_dir: Path, image: str, k: str) -> Path:
    """<build>/prebuilt/<image>-<key12>.tar.gz."""
    return build_dir / "prebuilt" / f"{image}-{k[:12]}.tar.gz"


def guest_env(root: Path, spec: ImageSpec, extra: Mapping[str, str]) -> tuple[
        dict[str, str], list[buildroot.Bind]]:
    """The scripts' environment inside the build root and the binds that make the image's
    files, the scripts and every host-path input visible there."""
    env = {**dict(spec.versions), **extra}
    binds = [buildroot.Bind(root / SCRIPTS_DIR, GUEST_SCRIPTS)]
    for entry in spec.files:
        src = root / entry
        binds.append(buildroot.Bind(src, f"{GUEST_FILES}/{src.name}"))
    for k in HOST_PATH_VERSIONS:
        v = env.get(k, "")
        if v:
            p = host_path(root, k, v)
            inside = f"{GUEST_INPUTS}/{k.lower()}/{p.name}"
            binds.append(buildroot.Bind(p, inside))
            env[k] = inside
    return env, binds


def ensure(root: Path, build_dir: Path, spec: ImageSpec, *, progress: Callable[[str], None],
           log_path: Path, force: bool = False) -> Artifact | None:
    """The image's prebuilt artifact (None for an image without `prebuild`), made in the
    build root when the cache has none with this key."""
    if not spec.prebuild_scripts:
        return None
    start = time.monotonic()
    inputs = buildroot.make_inputs()
    k = key(root, spec, f"{inputs.suite}-{inputs.digest()[:12]}")
    target = artifact_path(build_dir, spec.name, k)
    side = target.with_suffix("").with_suffix(".json")
    if target.is_file() and side.is_file() and not force:
        record: dict[str, object] = json.loads(side.read_text())
        progress(f"{spec.name}: prebuilt {target.name} (cached)")
        return Artifact(spec.name, k, target, True, time.monotonic() - start, record)
    progress(f"{spec.name}: native build root (log: {log_path})")
    br = buildroot.ensure(inputs, log_path=log_path)
    # A clean slate for the outputs: nothing left over from another version gets packed.
    for out in spec.prebuild_outputs:
        _remove(br.path / out.lstrip("/"))
    for script in spec.prebuild_scripts:
        env, binds = guest_env(root, spec, {
            "FABPERF_IMAGE": spec.name, "FABPERF_PROVIDER": "buildroot",
            "FABPERF_FILES": GUEST_FILES, "FABPERF_PHASE": "prebuild",
            "FABPERF_LOG_TAG": script,
        })
        t0 = time.monotonic()
        progress(f"{spec.name}: prebuild {script} (native)")
        buildroot.run(br, ["bash", f"{GUEST_SCRIPTS}/{script}"], env=env, binds=binds,
                      log_path=log_path)
        progress(f"{spec.name}: prebuild {script} done in {format_seconds(time.monotonic() - t0)}")
    record = {"key": k, "image": spec.name, "buildroot": br.ident,
              "outputs": list(spec.prebuild_outputs)}
    for rec in BUILD_RECORDS:
        p = br.path / rec.lstrip("/")
        if any(PurePosixPath(rec).is_relative_to(o) for o in spec.prebuild_outputs) \
                and p.is_file():
            record[rec] = json.loads(p.read_text())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, "w:gz", compresslevel=1) as tar:
            for out in spec.prebuild_outputs:
                p = br.path / out.lstrip("/")
                if not p.exists():
                    raise InputError.field(spec.source, "prebuild.outputs", "paths the "
                                           "prebuild scripts create", out,
                                           hint=f"{p} does not exist after the scripts ran")
                tar.add(p, arcname=out.lstrip("/"))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    seconds = time.monotonic() - start
    record["seconds"] = round(seconds, 1)
    record["size_bytes"] = target.stat().st_size
    write_atomic(side, json.dumps(record, indent=2, sort_keys=True) + "\n")
    progress(f"{spec.name}: prebuilt {target.name} "
             f"({target.stat().st_size / 2**20:.0f} MiB) in {format_seconds(seconds)}")
    return Artifact(spec.name, k, target, False, seconds, record)


def _remove(p: Path) -> None:
    if p.is_symlink() or p.is_file():
        p.unlink()
    elif p.is_dir():
        shutil.rmtree(p)
