"""bake.fingerprint: stable across runs and checkouts; changes exactly where inputs change."""

from __future__ import annotations

from pathlib import Path

from bake_fakerepo import edit_yaml, make_repo, write_base

from bake import build, profiles
from bake.profiles import Provider


def _fps(root: Path, build_dir: Path, provider: Provider = Provider.QEMU,
         vars_: tuple[str, ...] = ()) -> dict[str, str]:
    overrides = profiles.make_overrides(None, list(vars_), env={})
    return {t.spec.name: t.fingerprint.digest
            for t in build.plan(root, build_dir, provider, [], overrides)}


def test_stable_across_runs_and_checkouts(tmp_path: Path, build_dir: Path) -> None:
    a = make_repo(tmp_path / "one" / "repo")
    b = make_repo(tmp_path / "elsewhere" / "deeper" / "checkout")
    other_build = tmp_path / "other-build"
    write_base(other_build)
    for provider in Provider:
        first = _fps(a, build_dir, provider)
        assert first == _fps(a, build_dir, provider)          # two runs
        assert first == _fps(b, other_build, provider)        # two paths, two build dirs
        assert len(set(first.values())) == 3
        assert all(len(v) == 64 for v in first.values())


def test_one_byte_in_a_monitor_only_script(fake_repo: Path, build_dir: Path) -> None:
    before = {p: _fps(fake_repo, build_dir, p) for p in Provider}
    script = fake_repo / "packer/scripts/monitor/monitor.sh"
    script.write_bytes(script.read_bytes() + b" ")
    after = {p: _fps(fake_repo, build_dir, p) for p in Provider}
    for p in Provider:
        assert after[p]["monitor"] != before[p]["monitor"]
        assert after[p]["fabric-node"] == before[p]["fabric-node"]
        assert after[p]["caliper-worker"] == before[p]["caliper-worker"]


def test_shared_script_file_and_goss_changes(fake_repo: Path, build_dir: Path) -> None:
    before = _fps(fake_repo, build_dir)
    (fake_repo / "packer/scripts/common/base.sh").write_text("#!/bin/bash\necho changed\n")
    shared = _fps(fake_repo, build_dir)
    assert all(shared[i] != before[i] for i in before)
    (fake_repo / "packer/files/caliper-worker/new.conf").write_text("x\n")
    files = _fps(fake_repo, build_dir)
    assert files["caliper-worker"] != shared["caliper-worker"]
    assert files["monitor"] == shared["monitor"]
    (fake_repo / "images/fabric-node/goss/fabric-node.yaml").write_text("file: {}\n")
    goss = _fps(fake_repo, build_dir)
    assert goss["fabric-node"] != files["fabric-node"] and goss["monitor"] == files["monitor"]


def test_versions_template_and_base(fake_repo: Path, build_dir: Path) -> None:
    before = _fps(fake_repo, build_dir)
    edit_yaml(fake_repo / "images/fabric-node/image.yaml",
              versions={"FABRIC_REF": "v2.5.10", "GO_VERSION": "auto"})
    assert _fps(fake_repo, build_dir)["fabric-node"] != before["fabric-node"]
    tpl = fake_repo / "packer/templates/qemu.pkr.hcl.j2"
    tpl.write_text(tpl.read_text().replace('"virtio-net"', '"e1000"'))
    after_tpl = _fps(fake_repo, build_dir)
    assert after_tpl["monitor"] != before["monitor"]
    aws_before = _fps(fake_repo, build_dir, Provider.AWS)
    other_base = _fps(fake_repo, build_dir, vars_=("base_image=/x.qcow2",
                                                   "base_image_checksum=" + "cd" * 32))
    assert all(other_base[i] != after_tpl[i] for i in before)
    # the AMI filter is the aws base identity; qemu settings do not touch aws
    assert _fps(fake_repo, build_dir, Provider.AWS) == aws_before
    assert _fps(fake_repo, build_dir, Provider.AWS,
                ("source_ami_name=debian-12-arm64-*",)) != aws_before


def test_host_specific_settings_do_not_count(fake_repo: Path, build_dir: Path,
                                             tmp_path: Path) -> None:
    before = _fps(fake_repo, build_dir)
    moved = tmp_path / "moved.qcow2"
    assert _fps(fake_repo, build_dir, vars_=(
        f"base_image={moved}", "base_image_checksum=" + "ab" * 32,
        "accelerator=kvm", "headless=false")) == before
    ca = tmp_path / "proxy-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    with_ca = _fps(fake_repo, build_dir, vars_=(f"extra_ca_certs={ca}",))
    assert with_ca != before          # the CA enters the image trust store
    copy = tmp_path / "elsewhere" / "renamed.pem"
    copy.parent.mkdir()
    copy.write_bytes(ca.read_bytes())
    assert _fps(fake_repo, build_dir, vars_=(f"extra_ca_certs={copy}",)) == with_ca


def test_name_is_image_and_hash12(fake_repo: Path, build_dir: Path) -> None:
    t = build.plan(fake_repo, build_dir, Provider.QEMU, ["monitor"],
                   profiles.make_overrides(None, [], env={}))[0]
    assert t.name == f"fabperf-monitor-{t.fingerprint.digest[:12]}"
    assert t.fingerprint.inputs["base"] == {"kind": "qcow2", "sha256": "ab" * 32}
