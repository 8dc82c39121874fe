"""The bake CLI: exit codes, one clear message on bad input, nothing written under build/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bake.cli import cli
from fabkit.clikit import run_main


@pytest.fixture
def env(fake_repo: Path, build_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FABPERF_ROOT", str(fake_repo))
    monkeypatch.setenv("FABPERF_BUILD_DIR", str(build_dir))
    return fake_repo


def _snapshot(d: Path) -> list[str]:
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*")) if d.exists() else []


def _bad(argv: list[str], build_dir: Path, capsys: pytest.CaptureFixture[str]) -> str:
    before = _snapshot(build_dir)
    assert run_main(cli, argv) == 2
    assert _snapshot(build_dir) == before, "bad input must write nothing under build/"
    err = capsys.readouterr().err.strip()
    assert err.count("\n") <= 1, f"one clear message, got: {err}"
    return err


@pytest.mark.parametrize("command", ["render", "validate", "build"])
def test_misspelled_key(env: Path, build_dir: Path, command: str,
                        capsys: pytest.CaptureFixture[str]) -> None:
    path = env / "images/monitor/image.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["disk_size"] = doc.pop("disk_size_gb")
    path.write_text(yaml.safe_dump(doc))
    err = _bad([command], build_dir, capsys)
    assert err.startswith("error: ") and "images/monitor/image.yaml: disk_size:" in err
    assert "did you mean 'disk_size_gb'" in err


def test_missing_script(env: Path, build_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (env / "packer/scripts/fabric-node/go.sh").unlink()
    err = _bad(["build", "--image", "fabric-node"], build_dir, capsys)
    assert "images/fabric-node/image.yaml: scripts[2]" in err and "fabric-node/go.sh" in err


def test_unknown_provider(env: Path, build_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _bad(["build", "--provider", "vmware"], build_dir, capsys)
    assert err == "error: --provider: expected one of qemu, aws, openstack, found 'vmware'"
    assert "'vmware'" in _bad(["list", "--provider", "vmware"], build_dir, capsys)


@pytest.mark.parametrize(("var", "needle"), [
    ("memory", "--var: expected key=value, found 'memory'"),
    ("memroy_mb=4096", "--var memroy_mb: expected a key of the qemu profile"),
    ("cpus=many", "--var cpus: expected a non-negative integer, found 'many'"),
])
def test_malformed_var(env: Path, build_dir: Path, var: str, needle: str,
                       capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["render", "--packer-version", "1.6.6"], ["validate"], ["build"]):
        assert needle in _bad([*command, "--var", var], build_dir, capsys)


def test_unknown_image_and_missing_base(env: Path, build_dir: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert "unknown image 'graphana'" in _bad(["build", "--image", "graphana"], build_dir,
                                              capsys)
    fresh = tmp_path / "fresh-build"
    err = _bad(["build", "--build-dir", str(fresh)], fresh, capsys)
    assert "run `bake base-image` first" in err and not fresh.exists()


def test_render_writes_hcl(env: Path, build_dir: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert run_main(cli, ["render", "--provider", "aws", "--packer-version", "1.6.6",
                          "--out", str(out), "--output", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["packer_version"] == "1.6.6"
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.pkr.hcl"))
    assert files == ["caliper-worker/aws/caliper-worker.pkr.hcl",
                     "fabric-node/aws/fabric-node.pkr.hcl", "monitor/aws/monitor.pkr.hcl"]
    assert {t["name"] for t in doc["templates"]} == {
        f"fabperf-{t['image']}-{t['fingerprint'][:12]}" for t in doc["templates"]}


def test_list_and_noop_build(env: Path, build_dir: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(cli, ["list", "--provider", "qemu", "--output", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["images"]
    assert [r["built"] for r in rows] == [False] * 3
    # pretend everything is built, then `bake build` must skip it all without a subprocess
    from bake import manifest

    for r in rows:
        art = build_dir / "images" / f"{r['name']}.qcow2"
        art.parent.mkdir(parents=True, exist_ok=True)
        art.write_bytes(b"x")
        manifest.record(build_dir, r["image"], "qemu", manifest.Entry(
            name=r["name"], fingerprint=r["fingerprint"], artifact={"path": str(art)}))
    assert run_main(cli, ["build", "--output", "json"]) == 0
    builds = json.loads(capsys.readouterr().out)["builds"]
    assert [b["action"] for b in builds] == ["skipped"] * 3
    assert run_main(cli, ["list"]) == 0
    text = capsys.readouterr().out
    assert text.count(" built path=") == 3 and "not built" in text   # aws/openstack rows


def test_render_without_base_image_uses_a_placeholder(env: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    fresh = tmp_path / "fresh-build"
    assert run_main(cli, ["render", "--build-dir", str(fresh), "--packer-version", "1.6.6",
                          "--image", "monitor"]) == 0
    captured = capsys.readouterr()
    assert "no base image yet" in captured.err
    text = (fresh / "packer/monitor/qemu/monitor.pkr.hcl").read_text()
    assert 'iso_checksum       = "none"' in text
    assert f'iso_url            = "{fresh}/base/not-built.qcow2"' in text
