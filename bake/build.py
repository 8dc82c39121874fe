"""Build orchestration: plan, skip unchanged, keys, render, validate, packer, manifest.

The skip decision is taken first, from the manifest (and the artifact itself), before
anything runs: a second `bake build` with nothing changed starts no subprocess at all.
The Packer version is detected lazily, only once something must be rendered for Packer.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bake import catalog, imagescan, manifest, packer, prebuild, profiles, render
from bake.catalog import ImageSpec
from bake.fingerprint import Fingerprint, fingerprint
from bake.profiles import CommonProfile, Overrides, Provider, QemuProfile
from bake.providers import baker
from fabkit.atomic import write_atomic
from fabkit.errors import ExternalError, InputError
from fabkit.hashing import sha256_file

log = logging.getLogger("fabperf.bake")

BASE_IMAGE_JSON = "base/base-image.json"
GOSS_VERSION = "v0.4.9"
# sha256 of goss v0.4.9 goss-linux-amd64 as pinned by independent public projects (goss
# releases are not downloadable from the build machines, so this was not re-derived here).
GOSS_SHA256 = "87dd36cfa1b8b50554e6e2ca29168272e26755b19ba5438341f7c66b36decc19"
GOSS_URL = ("https://github.com/goss-org/goss/releases/download/"
            f"{GOSS_VERSION}/goss-linux-amd64")
GOSS_BINARY_ENV = "GOSS_BINARY"
KVM_ENV = "FABPERF_QEMU_KVM"


@dataclass(frozen=True)
class Target:
    """One (image, provider) to render, validate or build."""

    spec: ImageSpec
    provider: Provider
    profile: CommonProfile
    fingerprint: Fingerprint

    @property
    def name(self) -> str:
        return self.fingerprint.name


@dataclass(frozen=True)
class Outcome:
    """What `bake build` did for one target."""

    image: str
    provider: str
    name: str
    fingerprint: str
    action: str            # "built" | "skipped"
    reason: str
    artifact: dict[str, str]


# --- inputs -------------------------------------------------------------------------------

NO_BASE = "none"   # checksum of the placeholder base: Packer accepts iso_checksum = "none"


def with_qemu_base(profile: CommonProfile, build_dir: Path,
                   placeholder_ok: bool = False) -> CommonProfile:
    """Fill the qemu base image from build/base/base-image.json unless the user set one.

    ``placeholder_ok`` (render, validate): without a base image, stand in the path where
    `bake base-image` would put it and checksum "none", so templates can be checked on a
    fresh clone. `bake build` never does that.
    """
    if not isinstance(profile, QemuProfile):
        return profile
    if profile.base_image:
        if not profile.base_image_checksum:
            raise InputError.field(None, "qemu.base_image_checksum", "the sha256 of base_image",
                                   "", hint="set --var base_image_checksum=<sha256>")
        return profile
    meta = build_dir / BASE_IMAGE_JSON
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if placeholder_ok:
            return replace(profile, base_image=str(build_dir / "base" / "not-built.qcow2"),
                           base_image_checksum=NO_BASE)
        raise InputError(
            f"no qemu base image: {meta} does not exist and qemu.base_image is not set",
            hint="run `bake base-image` first, or pass --var base_image=FILE "
                 "--var base_image_checksum=SHA256",
        ) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{meta}: not valid JSON: {exc}",
                         hint="run `bake base-image` again") from exc
    if not isinstance(doc, dict) or not doc.get("path") or not doc.get("sha256"):
        raise InputError.field(meta, "path/sha256", "the base image path and sha256", doc)
    return replace(profile, base_image=str(doc["path"]), base_image_checksum=str(doc["sha256"]))


def plan(root: Path, build_dir: Path, provider: Provider, images: Sequence[str],
         overrides: Overrides, placeholder_base: bool = False,
         version_sets: Sequence[str] = ()) -> list[Target]:
    """Load the catalog, resolve the profile and fingerprint every selected image.

    ``version_sets`` are `--set [IMAGE.]NAME=VALUE` overrides of the pinned versions.
    """
    specs = catalog.override_versions(catalog.load_catalog(root, list(images) or None),
                                      version_sets)
    profile = with_qemu_base(profiles.resolve(provider, overrides), build_dir, placeholder_base)
    for ca in profile.extra_ca_certs:
        if not Path(ca).is_file():
            raise InputError.field(None, "extra_ca_certs", "existing PEM files", ca)
    if profile.goss_binary and not Path(profile.goss_binary).is_file():
        raise InputError.field(None, "goss_binary", "an existing file", profile.goss_binary)
    for key in ("tags", "properties"):
        for item in getattr(profile, key, ()):
            if "=" not in item or not item.partition("=")[0]:
                raise InputError.field(None, f"{provider.value}.{key}", "KEY=VALUE items", item)
    return [Target(s, provider, profile, fingerprint(root, s, provider, profile)) for s in specs]


def resolve_accelerator(value: str) -> str:
    """auto -> tcg, unless $FABPERF_QEMU_KVM=1 and /dev/kvm is usable (nested KVM is slow)."""
    if value != profiles.Accelerator.AUTO:
        return value
    if os.environ.get(KVM_ENV) == "1" and os.access("/dev/kvm", os.R_OK | os.W_OK):
        return profiles.Accelerator.KVM.value
    return profiles.Accelerator.TCG.value


def goss_binary(profile: CommonProfile, build_dir: Path, *, download: bool = False) -> str | None:
    """The real goss binary to upload and run in the build VM: the profile's goss_binary
    (or $GOSS_BINARY), else the pinned release (downloaded once into build/cache/goss and
    checked against GOSS_SHA256). None when neither can be had: then the same specs run
    through bake.goss (testinfra) from the host over SSH, and the bake says so."""
    chosen = profile.goss_binary or os.environ.get(GOSS_BINARY_ENV, "")
    if chosen:
        p = Path(chosen)
        if not p.is_file():
            raise InputError.field(None, "goss_binary", "an existing goss binary", chosen)
        return str(p.resolve())
    cached = build_dir / "cache" / "goss" / f"goss-{GOSS_VERSION}-linux-amd64"
    if cached.is_file() and sha256_file(cached) == GOSS_SHA256:
        return str(cached)
    if download and _download_goss(cached):
        return str(cached)
    return None


def _download_goss(dest: Path) -> bool:
    import urllib.request  # only when a bake needs it

    tmp = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(GOSS_URL, timeout=15) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
        if sha256_file(tmp) != GOSS_SHA256:
            log.warning("goss download %s does not match the pinned sha256: not used", GOSS_URL)
            return False
        tmp.chmod(0o755)
        os.replace(tmp, dest)
        return True
    except OSError as exc:
        log.warning("goss %s cannot be downloaded (%s): the goss specs run through the "
                    "testinfra runner instead (set GOSS_BINARY=PATH for real goss)", GOSS_VERSION,
                    exc)
        return False
    finally:
        tmp.unlink(missing_ok=True)


def render_env(target: Target, root: Path, build_dir: Path,
               packer_version: packer.Version,
               prebuilt: Path | None = None, download: bool = False) -> render.RenderEnv:
    """The host-specific render inputs of a target."""
    accel = resolve_accelerator(getattr(target.profile, "accelerator", "tcg"))
    return render.RenderEnv(
        repo_root=str(root), build_dir=str(build_dir), python=sys.executable,
        packer_version=packer_version, fingerprint=target.fingerprint.digest,
        accelerator=accel, goss_binary=goss_binary(target.profile, build_dir,
                                                    download=download),
        prebuilt=str(prebuilt) if prebuilt else None,
    )


def render_target(target: Target, root: Path, build_dir: Path, out_dir: Path,
                  packer_version: packer.Version) -> Path:
    """Render one target into <out>/<image>/<provider>/; returns the file."""
    env = render_env(target, root, build_dir, packer_version)
    text = render.render(root, target.spec, target.provider, target.profile, env)
    return render.write(out_dir, target.spec, target.provider, text)


# --- keys and seeds -----------------------------------------------------------------------

def seed_user_data(user: str, public_key: str, create_user: bool) -> str:
    """cloud-config giving ``user`` this build's key (and creating it with sudo on qemu)."""
    if create_user:
        doc: dict[str, object] = {"users": [{
            "name": user, "shell": "/bin/bash", "lock_passwd": True,
            "sudo": "ALL=(ALL) NOPASSWD:ALL", "ssh_authorized_keys": [public_key],
        }]}
    else:
        doc = {"ssh_authorized_keys": [public_key]}
    doc["ssh_pwauth"] = False
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=True)


@contextmanager
def _exclusive(target: Target, build_dir: Path) -> Iterator[None]:
    """One bake of (image, provider) per build dir at a time: they share keys/ and packer-out/."""
    lock = build_dir / "locks" / f"{target.spec.name}-{target.provider.value}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExternalError(
                f"another bake of {target.spec.name} on {target.provider.value} is running "
                f"in {build_dir} (lock {lock})",
                hint="wait for it, or use another --build-dir") from None
        yield


@contextmanager
def build_keys(target: Target, build_dir: Path) -> Iterator[dict[str, str]]:
    """A per-build ed25519 key (0600) and its seed files; removed afterwards (build-dir lock
    held meanwhile)."""
    with _exclusive(target, build_dir), _keys(target, build_dir) as p:
        yield p


@contextmanager
def _keys(target: Target, build_dir: Path) -> Iterator[dict[str, str]]:
    p = render.paths(target.spec, target.provider, str(build_dir))
    key_dir = Path(p["key_dir"])
    if key_dir.exists():
        shutil.rmtree(key_dir)
    (key_dir / "seed").mkdir(parents=True, mode=0o700)
    key_dir.chmod(0o700)
    try:
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
        fd = os.open(p["ssh_key"], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private)
        user = render.build_user(target.spec, target.provider, target.profile)
        Path(p["user_data"]).write_text(
            seed_user_data(user, f"{public} fabperf-build",
                           create_user=baker(target.provider).creates_build_user))
        # hostname "localhost": resolvable without touching /etc/hosts (sudo looks it up),
        # and nothing build-specific is left in the image.
        Path(p["meta_data"]).write_text(
            f"instance-id: fabperf-build-{target.spec.name}\nlocal-hostname: localhost\n")
        yield p
    finally:
        shutil.rmtree(key_dir, ignore_errors=True)
        with contextlib.suppress(OSError):   # the parent too, once no other build uses it
            key_dir.parent.rmdir()


# --- skip unchanged -----------------------------------------------------------------------

def up_to_date(target: Target, entries: dict[str, dict[str, manifest.Entry]],
               notes: Callable[[str], None]) -> tuple[bool, str]:
    """Whether the target's fingerprint already has an artifact, and why (no subprocess)."""
    entry = entries.get(target.spec.name, {}).get(target.provider.value)
    if entry is None:
        return False, "not in the manifest"
    if entry.fingerprint != target.fingerprint.digest:
        return False, f"inputs changed (manifest has {entry.fingerprint[:12]})"
    try:
        gone = baker(target.provider).missing(target.fingerprint.digest, entry.artifact,
                                              target.profile)
    except ImportError as exc:
        notes(f"{target.name}: {exc.name} is not installed; trusting the manifest")
        return True, "up to date (manifest trusted)"
    except Exception as exc:  # any SDK/credential failure: trust the manifest
        notes(f"{target.name}: could not ask {target.provider.value} ({type(exc).__name__}: "
              f"{exc}); trusting the manifest")
        return True, "up to date (manifest trusted)"
    if gone is not None:
        return False, gone
    return True, "up to date"


# --- the commands -------------------------------------------------------------------------

@dataclass
class PackerInfo:
    """The installed Packer, detected on first use."""

    binary: str = "packer"
    _version: packer.Version | None = None

    def version(self) -> packer.Version:
        if self._version is None:
            self._version = packer.detect_version(self.binary)
        return self._version


def _provider_notes(t: Target, version: packer.Version, progress: Callable[[str], None]) -> None:
    for note in baker(t.provider).notes(t.profile, version):
        progress(f"{t.name}: {note}")


def validate_targets(targets: Sequence[Target], root: Path, build_dir: Path, info: PackerInfo,
                     progress: Callable[[str], None]) -> list[dict[str, str]]:
    """Render and `packer validate` each target (qemu/aws fully, openstack -syntax-only)."""
    results = []
    for t in targets:
        out = build_dir / "packer"
        _provider_notes(t, info.version(), progress)
        with build_keys(t, build_dir):
            hcl_file = render_target(t, root, build_dir, out, info.version())
            syntax_only = baker(t.provider).validate_syntax_only
            logp = packer.log_path(build_dir, t.spec.name, t.provider.value, "validate")
            progress(f"{t.spec.name}/{t.provider.value}: packer validate"
                     + (" -syntax-only" if syntax_only else ""))
            packer.validate(hcl_file.parent, log=logp, syntax_only=syntax_only, cwd=root,
                            packer=info.binary,
                            env={"PACKER_CACHE_DIR": str(build_dir / "packer_cache")})
        results.append({"image": t.spec.name, "provider": t.provider.value,
                        "template": str(hcl_file),
                        "mode": "syntax-only" if syntax_only else "full"})
    return results


def build_targets(targets: Sequence[Target], root: Path, build_dir: Path, info: PackerInfo,
                  progress: Callable[[str], None], force: bool = False) -> list[Outcome]:
    """Build what is not up to date; skip the rest. Decides every skip before running anything."""
    entries = manifest.load(build_dir)
    todo: list[Target] = []
    outcomes: list[Outcome] = []
    for t in targets:
        ok, reason = (False, "--force") if force else up_to_date(t, entries, progress)
        if not ok and not force:
            # an earlier bake of this very fingerprint whose artifact still exists: it
            # becomes the current one again (A/B comparisons switch images this way)
            prev = manifest.earlier(build_dir, t.spec.name, t.provider.value,
                                    t.fingerprint.digest)
            if prev is not None and up_to_date(t, {t.spec.name: {t.provider.value: prev}},
                                               progress)[0]:
                manifest.record(build_dir, t.spec.name, t.provider.value, prev)
                entries = manifest.load(build_dir)
                ok, reason = True, f"baked before ({prev.built_at or prev.name}), current again"
        if ok:
            e = entries[t.spec.name][t.provider.value]
            progress(f"{t.name}: {reason}, skipped")
            outcomes.append(Outcome(t.spec.name, t.provider.value, t.name,
                                    t.fingerprint.digest, "skipped", reason, e.artifact))
        else:
            progress(f"{t.name}: will build ({reason})")
            todo.append(t)
    # Images are independent: one that cannot be baked (an unreachable source, a failing
    # check) does not keep the others from baking. Every failure is reported at the end.
    failures: list[tuple[Target, ExternalError]] = []
    for t in todo:
        try:
            outcomes.append(_build_one(t, root, build_dir, info, progress))
        except ExternalError as exc:
            progress(f"{t.name}: FAILED (going on with the other images)")
            failures.append((t, exc))
    if failures:
        done = ", ".join(f"{o.image} {o.action}" for o in outcomes) or "none"
        raise ExternalError(
            f"{len(failures)} of {len(targets)} images failed to bake "
            f"(the others: {done}):\n"
            + "\n".join(f"- {t.spec.name}/{t.provider.value}: {exc}" for t, exc in failures)
        )
    return outcomes


def _build_one(t: Target, root: Path, build_dir: Path, info: PackerInfo,
               progress: Callable[[str], None]) -> Outcome:
    version = info.version()
    _provider_notes(t, version, progress)
    out = build_dir / "packer"
    start = time.monotonic()
    stages: list[packer.Stage] = []
    logp = packer.log_path(build_dir, t.spec.name, t.provider.value, "build")
    t0 = time.monotonic()
    artifact_pre = prebuild.ensure(root, build_dir, t.spec, progress=progress,
                                   log_path=logp.with_name(logp.stem + "-prebuild.log"))
    if artifact_pre is not None:
        stages.append(packer.Stage("prebuild (native)" + (" cached" if artifact_pre.cached
                                                          else ""), time.monotonic() - t0))
    with build_keys(t, build_dir) as p:
        env_r = render_env(t, root, build_dir, version,
                           artifact_pre.path if artifact_pre else None, download=True)
        progress(f"{t.name}: goss step: " + (f"real goss {env_r.goss_binary}" if env_r.goss_binary
                                             else "testinfra runner (no goss binary: set "
                                                  "GOSS_BINARY=PATH)"))
        text = render.render(root, t.spec, t.provider, t.profile, env_r)
        hcl_file = render.write(out, t.spec, t.provider, text)
        # Packer keeps its ISO/seed cache in the working directory unless told otherwise.
        env = {"PACKER_CACHE_DIR": str(build_dir / "packer_cache")}
        progress(f"{t.name}: packer validate")
        packer.validate(hcl_file.parent, log=logp, syntax_only=False, cwd=root,
                        packer=info.binary, env=env)
        progress(f"{t.name}: packer build (log: {logp})")
        ids = packer.build(hcl_file.parent, log=logp, cwd=root, packer=info.binary, env=env,
                           progress=lambda m: progress(f"{t.spec.name}: {m}"), stages=stages)
        b = baker(t.provider)
        artifact = b.collect(t.name, p, ids, build_dir, t.profile)
        if b.local_artifact:
            t0 = time.monotonic()
            _hygiene_scan(Path(artifact[b.artifact_key]), progress)
            stages.append(packer.Stage("hygiene scan", time.monotonic() - t0))
    total = time.monotonic() - start
    summary = ", ".join(f"{s.name} {packer.format_seconds(s.seconds)}" for s in stages)
    progress(f"{t.name}: stages: {summary}; total {packer.format_seconds(total)}")
    write_atomic(logp.with_name(logp.stem + "-stages.json"), json.dumps(
        {"image": t.spec.name, "provider": t.provider.value, "name": t.name,
         "total_seconds": round(total, 1),
         "stages": [{"name": s.name, "seconds": round(s.seconds, 1)} for s in stages]},
        indent=2) + "\n")
    entry = manifest.Entry(
        name=t.name, fingerprint=t.fingerprint.digest, artifact=artifact,
        versions=t.spec.versions_dict,
        built_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        packer_version=packer.format_version(version),
    )
    manifest.record(build_dir, t.spec.name, t.provider.value, entry)
    progress(f"{t.name}: built")
    return Outcome(t.spec.name, t.provider.value, t.name, t.fingerprint.digest, "built",
                   "", artifact)


def _hygiene_scan(image: Path, progress: Callable[[str], None]) -> None:
    """Scan the sealed qcow2 for private keys, host keys, machine-id, cloud-init state.

    The in-guest goss hygiene spec runs before fabperf-seal (SSH must still work), so this
    is the check of what is really shipped. It mounts the image, which needs root.
    """
    if os.geteuid() != 0:
        progress(f"WARNING: {image.name}: hygiene scan skipped (mounting the image needs root); "
                 f"run `sudo bake imagescan {image}`")
        return
    progress(f"{image.name}: hygiene scan of the final image")
    try:
        findings = imagescan.scan_qcow2(image, progress=progress)
    except OSError as exc:
        # this image's scan failed, not the bake: the other images still bake
        raise ExternalError(f"{image.name}: the hygiene scan could not run: {exc}",
                            hint=f"scan it again with `sudo bake imagescan {image}`") from exc
    if findings:
        image.unlink()
        raise ExternalError(
            f"{image.name} failed the hygiene scan and was removed:\n"
            + "\n".join(f"  {f}" for f in findings),
            hint="a provisioning script left a key or instance state behind; see fabperf-seal",
        )


def status(targets: Sequence[Target], build_dir: Path) -> list[dict[str, Any]]:
    """For `bake list`: image, fingerprint, name and the manifest's artifact (no cloud calls)."""
    entries = manifest.load(build_dir)
    rows: list[dict[str, Any]] = []
    for t in targets:
        e = entries.get(t.spec.name, {}).get(t.provider.value)
        current = e is not None and e.fingerprint == t.fingerprint.digest
        if current and e is not None:
            current = baker(t.provider).present(e.artifact)
        rows.append({
            "image": t.spec.name, "provider": t.provider.value, "name": t.name,
            "fingerprint": t.fingerprint.digest, "built": current,
            "artifact": e.artifact if current and e else None,
            "stale": e.name if e is not None and not current else None,
        })
    return rows
