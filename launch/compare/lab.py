"""The lab as `launch compare`, `bisect` and `size` drive it: bake a Fabric build, put the
Fabric hosts on it, run the benchmark. The orchestrators take a `Lab` (a Protocol); this
module's RealLab drives the existing Python APIs, the unit tests give a fake one.

    bake     bake.build.plan + build_targets for fabric-node with
             --set fabric-node.FABRIC_REF=<ref> [FABRIC_SOURCE=<tarball>] [FABRIC_COMMIT=<sha>]
             (bake skips an image whose fingerprint has an artifact: a cache hit)
    launch   a derived spec (the environment file with images.fabric-node = the artifact,
             and fabric.version = the ref's release when the ref names one, v2.5.12 -> 2.5.12:
             the channel capabilities follow it) in <work>/specs/<label>.yaml, then
             launch.lifecycle.up.up(only=<the Fabric hosts>, recreate=True): the peers and
             orderers are destroyed and created anew from the image and the channel is
             bootstrapped anew; the Caliper workers and the monitor keep running. An
             environment that is not up yet is brought up whole.
    bench    launch.bench.run.bench on the environment (results_root chosen by the caller)

Why the artifact goes into the derived spec: bake's manifest holds one entry per image and
provider (the last one baked), so the plan would otherwise boot whichever ref was baked last.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from bake import build, profiles
from bake.providers import baker
from fabkit import inputs
from fabkit.atomic import write_atomic
from fabkit.errors import InputError
from launch.bench import door as bench_door
from launch.bench import lab as bench_lab
from launch.bench import run
from launch.bench.results import Summary
from launch.lifecycle import up
from launch.machines.state import StateStore
from launch.render import plan as plan_mod
from launch.spec import env as spec_mod
from launch.spec.thresholds import Thresholds

IMAGE = "fabric-node"
RELEASE_RE = re.compile(r"^v?(\d+\.\d+\.\d+)$")
LABEL_RE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Variant:
    """One Fabric build to measure."""

    label: str
    """how outputs name it (a directory name: the ref with unsafe characters replaced)"""
    ref: str
    """FABRIC_REF: a tag, branch or commit"""
    source: Path | None = None
    """FABRIC_SOURCE: a source tarball (air-gapped machines); None: bake clones FABRIC_REPO"""
    commit: str = ""
    """FABRIC_COMMIT, for sources without a commit id"""
    fabric_version: str | None = None
    """the spec's fabric.version for this build (None: keep the spec's)"""

    def version_sets(self) -> list[str]:
        sets = [f"{IMAGE}.FABRIC_REF={self.ref}"]
        if self.source is not None:
            sets.append(f"{IMAGE}.FABRIC_SOURCE={self.source}")
        if self.commit:
            sets.append(f"{IMAGE}.FABRIC_COMMIT={self.commit}")
        return sets

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "ref": self.ref,
                "source": str(self.source) if self.source else None, "commit": self.commit,
                "fabric_version": self.fabric_version}


def variant(ref: str, source: Path | None = None, commit: str = "",
            fabric_version: str | None = None) -> Variant:
    """A Variant whose label and fabric.version follow from the ref (v3.0.0 -> 3.0.0)."""
    if not ref or ref.startswith("-") or any(c.isspace() for c in ref):
        raise InputError.field(None, "--ref", "a git tag, branch or commit", ref)
    m = RELEASE_RE.match(ref)
    return Variant(LABEL_RE.sub("_", ref), ref, source, commit,
                   fabric_version or (m.group(1) if m else None))


@dataclass(frozen=True)
class Image:
    """A baked fabric-node for one variant."""

    label: str
    name: str
    fingerprint: str
    artifact_id: str
    action: str
    """built | skipped (bake found the fingerprint in its manifest) | cached (compare's own
    record of an earlier bake, its artifact still there)"""

    def to_json(self) -> dict[str, str]:
        return {"label": self.label, "name": self.name, "fingerprint": self.fingerprint,
                "artifact_id": self.artifact_id, "action": self.action}


@dataclass(frozen=True)
class Bench:
    """What one benchmark run wrote."""

    bundle: Path
    summary: Summary


class Lab(Protocol):
    """What the orchestrators need of the lab."""

    environment: str

    def fingerprint(self, v: Variant) -> str:
        """The image fingerprint the variant bakes to (no subprocess)."""
        ...

    def has_artifact(self, image: Image) -> bool:
        """Whether a recorded image's artifact is still there."""
        ...

    def bake(self, v: Variant) -> Image:
        """Bake (or find) the variant's fabric-node; ExternalError when it does not build."""
        ...

    def launch(self, v: Variant, image: Image) -> None:
        """The Fabric hosts on this image, created anew, the channel bootstrapped."""
        ...

    def bench(self, results_root: Path, rounds: Sequence[str] = (), tps: int | None = None,
              duration: int | None = None, workers_per_vm: int | None = None) -> Bench:
        """One benchmark run; its bundle under results_root/<env>/<stamp>/."""
        ...

    def worker_vcpus(self) -> dict[str, int]:
        """vCPUs of each worker VM (`nproc` there)."""
        ...


def fabric_hosts(plan: plan_mod.Plan) -> list[str]:
    """The plan's hosts that run a peer or an orderer."""
    return [h.name for h in plan.hosts if {r.value for r in h.roles} & {"peer", "orderer"}]


def derived_spec(raw: dict[str, Any], v: Variant, artifact_id: str) -> dict[str, Any]:
    """The environment document with the variant's image (and Fabric release) in it."""
    doc = dict(raw)
    doc["images"] = {**(raw.get("images") or {}), IMAGE: artifact_id}
    if v.fabric_version:
        doc["fabric"] = {**(raw.get("fabric") or {}), "version": v.fabric_version}
    return doc


class RealLab:
    """The Lab of a spec on this machine, through bake.build, launch.lifecycle.up and
    launch.bench."""

    def __init__(self, spec_path: Path, *, build_dir: Path, repo_root: Path, work_dir: Path,
                 progress: Callable[[str], None], threshold_pairs: Sequence[str] = ()) -> None:
        self.spec_path = spec_path
        self.spec = spec_mod.load(spec_path)
        self.raw = inputs.load_yaml_file(spec_path, what="environment file")
        bakes_with = self.spec.provider.bakes_with()
        if bakes_with is None:
            raise InputError.field(spec_path, "provider", "a provider that boots baked images",
                                   self.spec.provider.value)
        self.bake_provider = bakes_with
        self.environment = self.spec.name
        self.build_dir, self.repo_root, self.work_dir = build_dir, repo_root, work_dir
        self.progress = progress
        # --threshold NAME=VALUE over the spec's bench.thresholds: checked here, before
        # anything runs; every bench of the lab judges its rounds with them
        self.threshold_pairs = tuple(threshold_pairs)
        self.thresholds = Thresholds.parse_pairs(
            self.threshold_pairs,
            base=Thresholds.from_mapping(self.spec.bench_thresholds, source=spec_path))

    def check_variants(self, variants: Sequence[Variant]) -> None:
        """Each variant's fabric.version in this spec, checked by the spec's own rules before
        anything is baked (a version the spec refuses would fail only after the bake)."""
        for v in variants:
            if not v.fabric_version:
                continue
            doc = {**self.raw, "fabric": {**(self.raw.get("fabric") or {}),
                                          "version": v.fabric_version}}
            try:
                spec_mod.parse(doc, self.spec_path)
            except InputError as exc:
                raise InputError.field(
                    None, f"--fabric-version {v.ref}",
                    "a Fabric release this spec accepts (X.Y.Z, 2.5.x or 3.x)",
                    v.fabric_version, hint=exc.message) from None

    def _targets(self, v: Variant):

        overrides = profiles.make_overrides(os.environ.get("FABPERF_CONFIG"), ())
        return build.plan(self.repo_root, self.build_dir, profiles.Provider(self.bake_provider),
                          [IMAGE], overrides, version_sets=v.version_sets())

    def fingerprint(self, v: Variant) -> str:
        return self._targets(v)[0].fingerprint.digest

    def has_artifact(self, image: Image) -> bool:
        # a cloud image is taken on the manifest's word: bake.build asks the cloud when it
        # is baked again
        b = baker(self.bake_provider)
        return b.present({b.artifact_key: image.artifact_id})

    def bake(self, v: Variant) -> Image:
        targets = self._targets(v)
        self.progress(f"{v.label}: bake {IMAGE} ({' '.join(v.version_sets())})")
        outcome = build.build_targets(targets, self.repo_root, self.build_dir,
                                      build.PackerInfo(), self.progress)[0]
        key = baker(self.bake_provider).artifact_key
        return Image(v.label, outcome.name, outcome.fingerprint, outcome.artifact[key],
                     outcome.action)

    def spec_for(self, v: Variant, image: Image) -> Path:
        path = self.work_dir / "specs" / f"{v.label}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = derived_spec(self.raw, v, image.artifact_id)
        write_atomic(path, f"# {self.spec_path} with {IMAGE} for {v.ref} (launch compare)\n"
                     + yaml.safe_dump(doc, sort_keys=False))
        return path

    def launch(self, v: Variant, image: Image) -> None:
        path = self.spec_for(v, image)
        spec = spec_mod.load(path)
        hosts = fabric_hosts(plan_mod.build(spec, manifest_root=self.repo_root))
        state = StateStore(up.env_dir(self.build_dir, self.environment)).load()
        if state is None or not state.hosts:
            self.progress(f"{v.label}: launch up {self.environment} (every host)")
            up.up(path, build_dir=self.build_dir, repo_root=self.repo_root)
            return
        self.progress(f"{v.label}: recreate {', '.join(hosts)} on {image.name}")
        up.up(path, build_dir=self.build_dir, repo_root=self.repo_root, only=hosts,
              recreate=True)

    def bench(self, results_root: Path, rounds: Sequence[str] = (), tps: int | None = None,
              duration: int | None = None, workers_per_vm: int | None = None) -> Bench:
        options = run.Options(rounds=tuple(rounds), tps=tps, duration=duration,
                              threshold_pairs=self.threshold_pairs)
        result = run.bench(self.environment, options, build_dir=self.build_dir,
                           repo_root=self.repo_root, results_root=results_root,
                           workers_per_vm=workers_per_vm, on_progress=self.progress)
        return Bench(result.bundle, result.summary)

    def worker_vcpus(self) -> dict[str, int]:
        lab, targets = bench_lab.open_lab(self.environment, build_dir=self.build_dir,
                                          repo_root=self.repo_root)
        return bench_lab.worker_vcpus(
            bench_door.SshDoor(targets, lab.env_dir / "logs" / "size-ssh.log"), lab)
