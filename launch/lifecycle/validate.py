"""`launch validate`: the images' runtime checks, run on every live host of an environment.

Per host:
- the ready marker still holds this launch's nonce;
- no systemd unit has failed;
- the baked `fabperf-node-ready` health check of the host's roles passes now;
- the goss specs of the host's image (images/<image>/image.yaml `goss:`) pass through
  bake.goss over SSH, except the bake-time hygiene specs (a running instance has host keys
  and an authorized admin key by design). They are rendered with the versions the image
  was baked with (build/manifest.json's entry for the host's artifact), not the pins at
  HEAD; an image.yaml that cannot be loaded is a failed check, never a silent skip.
"""

from __future__ import annotations

import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bake import catalog, goss
from bake import manifest as bake_manifest
from fabkit import layout
from fabkit.errors import FabperfError, InputError
from launch.lifecycle.up import resolve_env, target
from launch.machines import ssh
from launch.machines.state import HostState, StateStore
from launch.spec.contract import READY_FILE, READY_PROGRAM, Role

NODE_READY_TIMEOUT = 60
BAKE_ONLY_SPECS = ("hygiene",)   # spec file stems that describe the sealed image, not an instance


@dataclass(frozen=True)
class CheckResult:
    """One runtime check on one host."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class HostValidation:
    """Every check of one host."""

    host: str
    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, object]:
        return {"host": self.host, "ok": self.ok,
                "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail}
                           for c in self.checks]}


def _ssh_check(t: ssh.Target, name: str, command: str, timeout: float = 120) -> CheckResult:
    res = ssh.run(t, command, timeout=timeout)
    out = (res.stdout + res.stderr).strip()
    return CheckResult(name, res.ok, out[-2000:])


def runtime_specs(image: str, root: Path) -> list[Path]:
    """The goss specs of an image that hold on a running instance (InputError when its
    image.yaml cannot be loaded)."""

    spec = catalog.load_image(root, image)
    return [p for p in spec.goss_paths(root)
            if not any(stem in p.stem for stem in BAKE_ONLY_SPECS) and p.exists()]


def image_versions(image: str, root: Path, *, build_dir: Path | None = None,
                   provider: str = "", artifact: str = "") -> tuple[dict[str, str], str]:
    """The versions the goss specs are rendered with, and where they come from: the
    manifest entry of the host's artifact (the pins it was baked with), else the image's
    manifest entry for the provider, else the pins in image.yaml at HEAD."""

    if build_dir is not None:
        entries = bake_manifest.load(build_dir).get(image, {})
        for prov, entry in entries.items():
            if artifact and artifact in entry.artifact.values() and entry.versions:
                return dict(entry.versions), f"manifest ({prov} {entry.name})"
        entry = entries.get(provider)
        if entry is not None and entry.versions:
            return dict(entry.versions), f"manifest ({provider} {entry.name})"
    return catalog.load_image(root, image).versions_dict, "image.yaml (not in the manifest)"


def validate(arg: str, *, build_dir: Path, repo_root: Path | None = None,
             goss_specs: bool = True) -> list[HostValidation]:
    """Run the checks on every host of the environment (in host order); ``goss_specs=False``
    skips the image's goss specs (one SSH round trip per check: minutes under TCG)."""

    root = repo_root or layout.find_repo_root()
    name, edir = resolve_env(arg, build_dir)
    state = StateStore(edir).load()
    if state is None:
        raise InputError(f"unknown environment {name!r}: no state in {edir}")

    def one(h: HostState) -> HostValidation:
        return _validate_host(arg, h, state.nonce, build_dir, root, goss_specs,
                              state.provider)

    hosts = list(state.hosts.values())
    if not hosts:
        return []
    # Hosts in parallel: goss over SSH is one round trip per check.
    with ThreadPoolExecutor(max_workers=min(8, len(hosts))) as pool:
        return list(pool.map(one, hosts))


def _validate_host(arg: str, h: HostState, nonce: str, build_dir: Path,
                   root: Path, goss_specs: bool, provider: str = "") -> HostValidation:
    """Every runtime check of one host."""
    t = target(arg, h.name, build_dir=build_dir)
    checks = [
        _ssh_check(t, "ready marker holds the launch nonce",
                   f"test \"$(sudo -n cat {shlex.quote(READY_FILE)})\" = "
                   f"{shlex.quote(nonce)}"),
        _ssh_check(t, "no failed systemd units",
                   "f=$(sudo -n systemctl --failed --no-legend --plain); "
                   "[ -z \"$f\" ] || { echo \"$f\"; exit 1; }"),
    ]
    if h.roles:
        checks.append(_ssh_check(
            t, f"{READY_PROGRAM} {' '.join(h.roles)}",
            f"sudo -n {READY_PROGRAM} --nonce {shlex.quote(nonce)} "
            f"--timeout {NODE_READY_TIMEOUT} {' '.join(shlex.quote(r) for r in h.roles)}",
            timeout=NODE_READY_TIMEOUT + 60))
    images = sorted({Role(r).image() for r in h.roles}) if goss_specs else []
    for image in images:
        checks.append(_goss_check(image, h, t, root, build_dir, provider))
    return HostValidation(h.name, tuple(checks))


def _goss_check(image: str, h: HostState, t: ssh.Target, root: Path, build_dir: Path,
                provider: str) -> CheckResult:
    """The image's goss specs on one host, as one check."""

    try:
        specs = runtime_specs(image, root)
        versions, pins = image_versions(image, root, build_dir=build_dir, provider=provider,
                                        artifact=h.image)
    except FabperfError as exc:
        return CheckResult(f"goss {image}", False, f"cannot load the image's goss specs: {exc}")
    if not specs:
        return CheckResult(f"goss {image} (no runtime specs)", True, "")
    hostspec = f"ssh://{t.user}@{t.address}:{t.port}"
    try:
        results = goss.validate(hostspec, specs, variables=versions, ssh_key=str(t.key))
    except FabperfError as exc:
        return CheckResult(f"goss {image}", False, str(exc))
    bad = [r for r in results if not r.ok and not r.skipped]
    return CheckResult(f"goss {image} ({len(results)} checks, pins from {pins})", not bad,
                       "; ".join(f"{r.title}: {r.message}" for r in bad)[:2000])
