"""launch.lifecycle.validate: goss is never skipped silently, and runs with the pins the image was
baked with (the manifest), not those at HEAD."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from bake import goss, manifest
from launch.lifecycle import validate
from launch.machines import ssh
from launch.machines.state import HostState

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bake"))
from bake_fakerepo import make_repo


def _target(tmp_path: Path) -> ssh.Target:
    return ssh.Target("caliper0", "127.0.0.1", 2222, "fabperf", tmp_path / "key")


def _host(artifact: str) -> HostState:
    return HostState("caliper0", "10.0.0.10", ("caliper",), artifact)


def test_a_broken_image_yaml_fails_the_goss_check(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo")
    (root / "images/caliper-worker/image.yaml").write_text("name: [unclosed\n")
    res = validate._goss_check("caliper-worker", _host("x.qcow2"), _target(tmp_path), root,
                               tmp_path / "build", "qemu")
    assert not res.ok and "cannot load the image's goss specs" in res.detail
    assert "not valid YAML" in res.detail


def test_goss_uses_the_pins_the_manifest_recorded(tmp_path: Path, monkeypatch) -> None:
    root = make_repo(tmp_path / "repo")
    build = tmp_path / "build"
    head = yaml.safe_load((root / "images/caliper-worker/image.yaml").read_text())["versions"]
    baked = {k: f"baked-{v}" for k, v in head.items()}
    manifest.record(build, "caliper-worker", "qemu", manifest.Entry(
        name="fabperf-caliper-worker-1", fingerprint="f",
        artifact={"path": "/b/caliper-worker.qcow2", "sha256": "s"}, versions=baked))
    seen = {}

    def fake_validate(hostspec, specs, variables, ssh_key):  # type: ignore[no-untyped-def]
        seen.update(variables)
        return [goss.Result("s.yaml", "file", "/x", "exists", ok=True)]

    monkeypatch.setattr(goss, "validate", fake_validate)
    res = validate._goss_check("caliper-worker", _host("/b/caliper-worker.qcow2"),
                               _target(tmp_path), root, build, "qemu")
    assert res.ok and "pins from manifest (qemu fabperf-caliper-worker-1)" in res.name
    assert seen == baked
    # an artifact the manifest does not know: HEAD's pins, and the check says so
    seen.clear()
    manifest.save(build, {})
    res = validate._goss_check("caliper-worker", _host("/elsewhere.qcow2"),
                               _target(tmp_path), root, build, "qemu")
    assert "image.yaml (not in the manifest)" in res.name and seen == head
