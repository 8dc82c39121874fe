"""launch.compare.lab.RealLab's wiring to bake.build, launch.lifecycle.up and launch.bench (their
functions replaced: no bake, no VM)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from bake import build
from launch.bench import run as bench_run
from launch.compare import lab
from launch.lifecycle import up
from launch.machines.state import EnvState, HostState, StateStore
from launch.spec import env as spec

REPO = Path(__file__).resolve().parents[3]
SPEC = REPO / "environments" / "local.yaml"


@pytest.fixture
def real(tmp_path: Path) -> lab.RealLab:
    return lab.RealLab(SPEC, build_dir=tmp_path / "build", repo_root=REPO,
                       work_dir=tmp_path / "run", progress=lambda _: None)


def test_bake_sets_the_ref_and_source_and_returns_the_artifact(real, monkeypatch,
                                                               tmp_path) -> None:
    seen = {}

    def plan(root, build_dir, provider, images, overrides, placeholder_base=False,
             version_sets=()):
        seen.update(provider=provider.value, images=images, sets=list(version_sets))
        return [SimpleNamespace(fingerprint=SimpleNamespace(digest="f" * 64))]

    def build_targets(targets, root, build_dir, info, progress, force=False):
        return [build.Outcome("fabric-node", "qemu", "fabperf-fabric-node-ffffffffffff",
                              "f" * 64, "skipped", "up to date",
                              {"path": "/img/x.qcow2", "sha256": "0"})]

    monkeypatch.setattr(build, "plan", plan)
    monkeypatch.setattr(build, "build_targets", build_targets)
    v = lab.variant("v2.5.12", tmp_path / "fabric.tar.gz")
    image = real.bake(v)
    assert seen == {"provider": "qemu", "images": ["fabric-node"],
                    "sets": ["fabric-node.FABRIC_REF=v2.5.12",
                             f"fabric-node.FABRIC_SOURCE={tmp_path / 'fabric.tar.gz'}"]}
    assert image == lab.Image("v2.5.12", "fabperf-fabric-node-ffffffffffff", "f" * 64,
                              "/img/x.qcow2", "skipped")
    assert real.fingerprint(v) == "f" * 64


def test_launch_recreates_only_the_fabric_hosts_of_a_running_environment(
        real, monkeypatch, tmp_path) -> None:
    calls = []
    monkeypatch.setattr(up, "up", lambda path, **kw: calls.append((path, kw)))
    image = lab.Image("v2.5.12", "fabperf-fabric-node-x", "x", str(tmp_path / "a.qcow2"),
                      "built")
    v = lab.variant("v2.5.12")

    real.launch(v, image)                      # nothing up yet: the whole environment
    path, kw = calls[-1]
    assert "only" not in kw
    derived = spec.load(path)
    assert derived.images["fabric-node"] == str(tmp_path / "a.qcow2")
    assert derived.fabric.version == "2.5.12" and derived.name == "local"
    assert yaml.safe_load(path.read_text())["caliper"] == \
        yaml.safe_load(SPEC.read_text())["caliper"]

    StateStore(up.env_dir(tmp_path / "build", "local")).save(
        EnvState(environment="local", provider="qemu", network={},
                 hosts={"caliper": HostState(
                     name="caliper", address="10.77.0.11", roles=("caliper",))}))
    real.launch(v, image)
    _, kw = calls[-1]
    assert kw["only"] == ["fabric"] and kw["recreate"] is True


def test_bench_runs_the_rounds_into_the_given_root(real, monkeypatch, tmp_path) -> None:
    seen = {}

    def bench(env, options, **kw):
        seen.update(env=env, rounds=options.rounds, tps=options.tps, root=kw["results_root"])
        return SimpleNamespace(bundle=tmp_path / "b", summary="S")

    monkeypatch.setattr(bench_run, "bench", bench)
    out = real.bench(tmp_path / "r", ("create",), tps=75)
    assert seen == {"env": "local", "rounds": ("create",), "tps": 75, "root": tmp_path / "r"}
    assert out.bundle == tmp_path / "b"


def test_thresholds_reach_every_bench_and_are_checked_up_front(monkeypatch, tmp_path) -> None:
    from fabkit.errors import InputError

    seen = []
    monkeypatch.setattr(bench_run, "bench", lambda env, options, **kw: seen.append(
        options.threshold_pairs) or SimpleNamespace(bundle=tmp_path / "b", summary="S"))
    real = lab.RealLab(SPEC, build_dir=tmp_path / "build", repo_root=REPO,
                       work_dir=tmp_path / "run", progress=lambda _: None,
                       threshold_pairs=("eventloop_lag_s=0.5",))
    assert real.thresholds.changed() == {"eventloop_lag_s": 0.5}
    real.bench(tmp_path / "r", ("create",))
    assert seen == [("eventloop_lag_s=0.5",)]
    with pytest.raises(InputError, match="--threshold"):
        lab.RealLab(SPEC, build_dir=tmp_path / "build", repo_root=REPO,
                    work_dir=tmp_path / "run", progress=lambda _: None,
                    threshold_pairs=("eventloop_lag_s=slow",))
