"""The native build root: a Debian chroot of the images' own release, where the slow steps
of a bake (compiling Fabric, npm installs) run once at native speed instead of in every
emulated build VM ("compile once, bake many").

A build root is a debootstrap (minbase) tree under ``$FABPERF_BUILDROOT_DIR`` (default
``/var/cache/fabperf/buildroot``)``/<suite>-<hash12>/``, named by the hash of its inputs
(suite, mirror, packages, the extra CA certificates it trusts, ``RECIPE_VERSION``). It is
made once (about 2 minutes) and kept; the provisioning scripts install what they need into
it (Go from backports, Node.js) the first time they run. It has the same Debian release and
architecture as the base image, so what is built there runs in the image unchanged.

It lives outside the repository on purpose: half a million files (Fabric's tree, Go's build
cache, node_modules) under the checkout would be crawled by every tool that walks it (pip's
editable install of fabperf took minutes).

Requires root (debootstrap, mount, chroot), like ``bake base-image``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bake.baseimage import DEFAULT_MIRROR, SUITE
from bake.chroot import chroot_mounts, remove_tree, umount
from fabkit import runner
from fabkit.atomic import write_atomic
from fabkit.errors import ExternalError
from fabkit.hashing import sha256_file

log = logging.getLogger("fabperf.buildroot")

# Bump when the recipe below changes what the root holds.
RECIPE_VERSION = "1"
PACKAGES: tuple[str, ...] = (
    "ca-certificates", "curl", "jq", "make", "gcc", "libc6-dev", "git", "xz-utils",
    "python3", "procps",
)
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
ROOT_DIR_ENV = "FABPERF_BUILDROOT_DIR"
DEFAULT_ROOT_DIR = Path("/var/cache/fabperf/buildroot")
MARKER = ".fabperf-buildroot.json"


@dataclass(frozen=True)
class BuildRootInputs:
    """Everything that determines a build root's content."""

    suite: str
    mirror: str
    packages: tuple[str, ...]
    extra_cas: tuple[tuple[str, str], ...]   # (file name, sha256)
    recipe: str = RECIPE_VERSION

    def to_json(self) -> dict[str, object]:
        """The inputs as recorded in the root's marker."""
        return {"suite": self.suite, "mirror": self.mirror, "packages": list(self.packages),
                "extra_cas": [list(c) for c in self.extra_cas], "recipe": self.recipe}

    def digest(self) -> str:
        """The cache key of the root."""
        doc = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(doc.encode()).hexdigest()


def host_cas() -> list[Path]:
    """The host's locally added CAs (a TLS-intercepting proxy's among them): the build root
    runs on this host and reaches the network through the same proxy."""
    return sorted(HOST_CA_DIR.glob("*.crt")) if HOST_CA_DIR.is_dir() else []


def make_inputs(mirror: str | None = None, cas: Sequence[Path] | None = None) -> BuildRootInputs:
    """The inputs for this host (default mirror, the host's extra CAs)."""
    chosen = host_cas() if cas is None else list(cas)
    return BuildRootInputs(SUITE, mirror or DEFAULT_MIRROR, PACKAGES,
                           tuple((p.name, sha256_file(p)) for p in chosen))


@dataclass(frozen=True)
class BuildRoot:
    """A ready build root."""

    path: Path
    inputs: BuildRootInputs

    @property
    def ident(self) -> str:
        """What identifies the root's content (part of every prebuilt artifact's key)."""
        return f"{self.inputs.suite}-{self.inputs.digest()[:12]}"


def roots_dir() -> Path:
    """Where build roots live ($FABPERF_BUILDROOT_DIR, else /var/cache/fabperf/buildroot)."""
    return Path(os.environ.get(ROOT_DIR_ENV) or DEFAULT_ROOT_DIR)


def ensure(inputs: BuildRootInputs, *, log_path: Path,
           cas: Sequence[Path] | None = None) -> BuildRoot:
    """The build root for these inputs, made now if it does not exist yet."""
    base = roots_dir()
    path = base / f"{inputs.suite}-{inputs.digest()[:12]}"
    if (path / MARKER).is_file():
        return BuildRoot(path, inputs)
    if os.geteuid() != 0:
        raise ExternalError(
            "the native build root needs root (debootstrap, mount, chroot)",
            hint="run bake as root, or compile in the build VM with "
                 "--set FABPERF_PREBUILD=guest (much slower under TCG)")
    start = time.monotonic()
    work = base / f".work-{inputs.digest()[:12]}"
    remove_tree(work, log_path)
    work.mkdir(parents=True)
    try:
        log.info("build root: debootstrap %s (about 2 minutes, once)", inputs.suite)
        runner.run(["debootstrap", "--variant=minbase",
                    f"--include={','.join(inputs.packages)}", inputs.suite, work,
                    inputs.mirror], log_path=log_path, what="debootstrap the build root",
                   timeout=1800)
        _configure(work, inputs, host_cas() if cas is None else list(cas))
        with chroot_mounts(work, log_path):
            runner.run(["chroot", work, "update-ca-certificates"], log_path=log_path,
                       what="trust the extra CAs in the build root",
                       env={"LC_ALL": "C.UTF-8"})
        write_atomic(work / MARKER, json.dumps(
            {"inputs": inputs.to_json(), "seconds": round(time.monotonic() - start, 1)},
            indent=2) + "\n")
        os.replace(work, path)
    except BaseException:
        remove_tree(work, log_path)
        raise
    return BuildRoot(path, inputs)


def _configure(root: Path, inputs: BuildRootInputs, cas: Sequence[Path]) -> None:
    security = inputs.mirror + "-security" if inputs.mirror.endswith("/debian") else None
    lines = [f"deb {inputs.mirror} {inputs.suite} main",
             f"deb {inputs.mirror} {inputs.suite}-updates main"]
    if security:
        lines.append(f"deb {security} {inputs.suite}-security main")
    (root / "etc/apt/sources.list").write_text("\n".join(lines) + "\n")
    (root / "etc/apt/apt.conf.d/60fabperf-no-recommends").write_text(
        'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n')
    dest = root / "usr/local/share/ca-certificates"
    dest.mkdir(parents=True, exist_ok=True)
    for ca in cas:
        shutil.copyfile(ca, dest / ca.name)
        (dest / ca.name).chmod(0o644)


@dataclass(frozen=True)
class Bind:
    """A host path made visible inside the root for one run."""

    source: Path
    target: str            # absolute path inside the root
    read_only: bool = True


@contextmanager
def _binds(root: Path, binds: Sequence[Bind], log_path: Path) -> Iterator[None]:
    done: list[Path] = []
    try:
        for b in binds:
            inside = root / b.target.lstrip("/")
            if b.source.is_dir():
                inside.mkdir(parents=True, exist_ok=True)
            else:
                inside.parent.mkdir(parents=True, exist_ok=True)
                inside.touch(exist_ok=True)
            runner.run(["mount", "--bind", b.source, inside], log_path=log_path,
                       what=f"bind-mount {b.source}")
            done.append(inside)
            if b.read_only:
                runner.run(["mount", "-o", "remount,bind,ro", inside], log_path=log_path,
                           what=f"read-only {b.target}")
    except BaseException:
        for m in reversed(done):
            umount(m, log_path)
        raise
    try:
        yield
    finally:
        for m in reversed(done):
            umount(m, log_path)


def run(root: BuildRoot, argv: Sequence[str], *, env: Mapping[str, str],
        binds: Sequence[Bind] = (), log_path: Path, timeout: float = 3600,
        on_line=None) -> runner.Completed:  # type: ignore[no-untyped-def]
    """Run a command inside the root with /dev, /proc, /sys and the binds mounted.

    The environment is exactly ``env`` plus a minimal PATH/HOME/LANG (never the host's,
    which may name paths that do not exist inside)."""
    shutil.copyfile("/etc/resolv.conf", root.path / "etc/resolv.conf")
    base = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root", "LC_ALL": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    full = {**base, **env}
    with ExitStack() as stack:
        stack.enter_context(chroot_mounts(root.path, log_path))
        stack.enter_context(_binds(root.path, binds, log_path))
        return runner.run(["env", "-i", *(f"{k}={v}" for k, v in full.items()),
                           "chroot", root.path, *argv], log_path=log_path,
                          timeout=timeout, on_line=on_line,
                          what=f"in the build root: {' '.join(argv)}")
