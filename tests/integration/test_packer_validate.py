"""Real Packer on the rendered templates: 3 images x 3 providers, both goss modes, the CLI.

qemu and aws get a full `packer validate`; openstack's full validation authenticates, so
`bake validate` uses -syntax-only and this test adds a decode check: a full validate
against an unreachable Keystone must fail on the connection only (an unknown argument
fails earlier, at decode time).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from bake import build, packer, profiles
from bake.cli import cli
from bake.profiles import Provider
from fabkit import runner
from fabkit.clikit import run_main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "bake"))
from bake_fakerepo import make_repo

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


@pytest.fixture(params=["real", "fake"])
def tree(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """(repo root, build dir, base --var args): the real checkout and a fake one."""
    for k in [k for k in __import__("os").environ if k.startswith("FABPERF_")]:
        monkeypatch.delenv(k)
    root = REPO if request.param == "real" else make_repo(tmp_path / "repo")
    base = tmp_path / "base.qcow2"
    base.write_bytes(b"not really a qcow2")
    monkeypatch.setenv("FABPERF_ROOT", str(root))
    monkeypatch.setenv("FABPERF_BUILD_DIR", str(tmp_path / "build"))
    return root, tmp_path / "build", [
        "--var", f"base_image={base}",
        "--var", "base_image_checksum=" + hashlib.sha256(base.read_bytes()).hexdigest()]


@pytest.mark.parametrize("provider", [p.value for p in Provider])
def test_bake_validate_all_images(tree, provider: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    root, build_dir, base_vars = tree
    argv = ["validate", "--provider", provider, "--output", "json"]
    if provider == "qemu":
        argv += base_vars
    assert run_main(cli, argv) == 0, capsys.readouterr().err
    results = json.loads(capsys.readouterr().out)["validated"]
    assert sorted(r["image"] for r in results) == ["caliper-worker", "fabric-node", "monitor"]
    assert {r["mode"] for r in results} == {"syntax-only" if provider == "openstack" else "full"}
    assert not (build_dir / "keys").exists() or not any((build_dir / "keys").iterdir())


def test_openstack_templates_decode(tree, tmp_path: Path) -> None:
    root, build_dir, _ = tree
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(
        "clouds:\n  lab:\n    auth:\n      auth_url: http://127.0.0.1:9/v3\n"
        "      username: u\n      password: p\n      project_name: p\n"
        "      user_domain_name: Default\n      project_domain_name: Default\n")
    overrides = profiles.make_overrides(None, [
        "cloud=lab", "networks=n1", "floating_ip_network=public",
        "use_blockstorage_volume=true", "security_groups=sg"], env={})
    for t in build.plan(root, build_dir, Provider.OPENSTACK, [], overrides):
        with build.build_keys(t, build_dir):
            f = build.render_target(t, root, build_dir, build_dir / "packer", (1, 6, 6))
            done = runner.run(["packer", "validate", str(f.parent)], check=False,
                              env={"OS_CLIENT_CONFIG_FILE": str(clouds)})
        out = done.stdout + done.stderr
        assert done.returncode == 1
        assert "127.0.0.1:9" in out and "connection refused" in out, out
        assert "not expected here" not in out and "Unsupported" not in out, out


def test_goss_binary_mode_and_extra_ca_validate(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_repo(tmp_path / "repo")
    build_dir = tmp_path / "build"
    base = tmp_path / "base.qcow2"
    base.write_bytes(b"x")
    ca = tmp_path / "proxy-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    goss = tmp_path / "goss"
    goss.write_bytes(b"\x7fELF")
    overrides = profiles.make_overrides(None, [
        f"base_image={base}", "base_image_checksum=" + hashlib.sha256(b"x").hexdigest(),
        f"extra_ca_certs={ca}", f"goss_binary={goss}"], env={})
    for provider in (Provider.QEMU, Provider.AWS):
        ov = overrides if provider is Provider.QEMU else profiles.make_overrides(
            None, [f"extra_ca_certs={ca}", f"goss_binary={goss}"], env={})
        targets = build.plan(root, build_dir, provider, [], ov)
        results = build.validate_targets(targets, root, build_dir, build.PackerInfo(),
                                         lambda m: None)
        assert len(results) == 3
        text = Path(results[0]["template"]).read_text()
        assert "--format junit" in text and "/tmp/fabperf/ca/fabperf-extra-00.crt" in text


def test_render_cli_detects_packer(tmp_path: Path) -> None:
    """The real console script, the installed Packer: 1.6.6 gets no required_plugins."""
    bake = Path(sys.executable).parent / "bake"
    root = make_repo(tmp_path / "repo")
    out = tmp_path / "out"
    done = runner.run([bake, "render", "--provider", "aws", "--image", "monitor",
                       "--out", out, "--output", "json"],
                      env={"FABPERF_ROOT": str(root),
                           "FABPERF_BUILD_DIR": str(tmp_path / "build")})
    doc = json.loads(done.stdout)
    installed = packer.detect_version()
    assert doc["packer_version"] == packer.format_version(installed)
    text = (out / "monitor/aws/monitor.pkr.hcl").read_text()
    assert ("required_plugins" in text) == (installed >= (1, 7, 0))
    runner.run(["packer", "validate", "-syntax-only", str(out / "monitor/aws")])
    assert not (tmp_path / "build").exists()      # render --out writes only there


def test_validate_qemu_on_a_fresh_clone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """No base image yet: `bake validate` still fully validates the qemu templates."""
    monkeypatch.setenv("FABPERF_ROOT", str(REPO))
    monkeypatch.setenv("FABPERF_BUILD_DIR", str(tmp_path / "build"))
    assert run_main(cli, ["validate", "--provider", "qemu"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.count("valid (full)") == 3
