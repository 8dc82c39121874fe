"""Issue 25, items 6 and 7: every option is checked before a machine is touched."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from hostile_testlib import REPO, assert_refused, run_cli

from launch.cli import cli
from launch.lifecycle import up
from launch.machines.state import EnvState, StateStore

SPEC = REPO / "environments/local.yaml"


@pytest.fixture
def launched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A recorded environment `local` whose machines must not be asked anything: the live
    check (the provider) and SSH fail the test."""
    spec = tmp_path / "local.yaml"
    shutil.copy(SPEC, spec)
    bdir = tmp_path / "build"
    StateStore(bdir / "environments" / "local").save(EnvState(
        environment="local", provider="qemu", spec_path=str(spec),
        spec_sha256=hashlib.sha256(spec.read_bytes()).hexdigest()))

    def touched(*args: object, **kwargs: object) -> None:
        pytest.fail("a machine was asked before the options were checked")

    monkeypatch.setattr(up, "status", touched)
    monkeypatch.setattr(up, "target", touched)
    return bdir


@pytest.mark.parametrize(("argv", "named"), [
    (["--round", "nosuch"], "nosuch"),
    (["--round", "create", "--round", "nosuch"], "nosuch"),
    (["--threshold", "worker_cpu=nan"], "--threshold.worker_cpu"),
    (["--threshold", "nosuch=1"], "--threshold.nosuch"),
])
def test_bench_checks_its_options_before_asking_a_machine(launched, capsys, argv,
                                                          named) -> None:
    ran = run_cli(cli, ["bench", "local", "--build-dir", str(launched), *argv], capsys)
    assert_refused(ran, named)


@pytest.mark.parametrize(("argv", "named"), [
    (["--ref", "v2.5.12", "--ref", "v3.0.0", "--fabric-version", "v3.0.0=banana"],
     "--fabric-version v3.0.0"),
    (["--ref", "v2.5.12", "--ref", "main", "--fabric-version", "main=2.4.0"],
     "--fabric-version main"),
    (["--ref", "v2.4.9", "--ref", "v3.0.0"], "--fabric-version v2.4.9"),   # from the ref
])
def test_compare_checks_each_fabric_version_before_baking(tmp_path, capsys, argv,
                                                          named) -> None:
    out, bdir = tmp_path / "out", tmp_path / "build"
    ran = run_cli(cli, ["compare", str(SPEC), *argv, "--dry-run", "--out", str(out),
                        "--build-dir", str(bdir)], capsys)
    assert_refused(ran, named, "2.5.x or 3.x")
    assert not out.exists() and not bdir.exists()


def test_gc_from_a_local_spec_blames_the_specs_provider_not_an_option(tmp_path,
                                                                     capsys) -> None:
    # issue 25, item 10: `launch gc --from <provider-none spec>` blamed --provider, which
    # was not given
    import yaml

    doc = yaml.safe_load(SPEC.read_text())
    doc["provider"] = "none"
    for i, h in enumerate(doc["placement"]["hosts"]):
        h["address"] = f"127.0.0.{10 + i}"
    spec = tmp_path / "env.yaml"
    spec.write_text(yaml.safe_dump(doc))
    ran = run_cli(cli, ["gc", "--from", str(spec), "--build-dir", str(tmp_path / "b")], capsys)
    assert_refused(ran, f"{spec}: provider: expected a cloud provider gc can ask", "none")
    assert "--provider" not in ran.err
