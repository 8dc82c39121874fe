"""Rendered HCL2 against golden files (tests/golden/packer/), parsed back with python-hcl2.

Regenerate after an intended template change with FABPERF_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import hcl2
import pytest

from bake import catalog, profiles, render
from bake.profiles import Provider

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "packer"
FP = "0123456789abcdef" * 4
OLD, NEW = (1, 6, 6), (1, 11, 2)
IMAGES = ("caliper-worker", "fabric-node", "monitor")


def _unquote(v: Any) -> Any:
    """python-hcl2 >= 7 keeps string quotes; strip them so tests read naturally."""
    if isinstance(v, str) and len(v) >= 2 and v[0] == v[-1] == '"':
        return v[1:-1]
    if isinstance(v, list):
        return [_unquote(x) for x in v]
    if isinstance(v, dict):
        return {_unquote(k): _unquote(x) for k, x in v.items() if k != "__is_block__"}
    return v


def parse(text: str) -> dict[str, Any]:
    return _unquote(hcl2.loads(text))


def _env(version: tuple[int, int, int], goss_binary: str | None = None) -> render.RenderEnv:
    return render.RenderEnv(repo_root="/srv/fabperf", build_dir="/srv/fabperf/build",
                            python="/srv/fabperf/.venv/bin/python3", packer_version=version,
                            fingerprint=FP, accelerator="tcg", goss_binary=goss_binary)


def _profile(provider: Provider, *vars_: str) -> profiles.CommonProfile:
    base = ("base_image=/srv/fabperf/build/base/debian-12.qcow2",
            "base_image_checksum=" + "ab" * 32) if provider is Provider.QEMU else ()
    return profiles.resolve(provider, profiles.make_overrides(None, [*base, *vars_], env={}))


CASES: dict[str, tuple[str, Provider, tuple[str, ...], tuple[int, int, int], str | None]] = {}
for _p in Provider:
    for _i in IMAGES:
        CASES[f"{_p.value}/{_i}.pkr.hcl"] = (_i, _p, (), OLD, None)
    CASES[f"{_p.value}/caliper-worker.packer-1.11.pkr.hcl"] = ("caliper-worker", _p, (), NEW, None)
CASES["qemu/caliper-worker.goss-binary-ca.pkr.hcl"] = (
    "caliper-worker", Provider.QEMU,
    ("extra_ca_certs=/etc/ssl/proxy-ca.pem", "remove_extra_ca_certs=true"),
    OLD, "/srv/fabperf/build/cache/goss/goss-v0.4.9-linux-amd64")
CASES["aws/monitor.options.pkr.hcl"] = (
    "monitor", Provider.AWS,
    ("region=eu-west-1", "subnet_id=subnet-0abc", "vpc_id=vpc-0abc", "kms_key_id=alias/fabperf",
     "associate_public_ip_address=false", "tags=team=perf,cost=lab"), NEW, None)
CASES["openstack/fabric-node.options.pkr.hcl"] = (
    "fabric-node", Provider.OPENSTACK,
    ("cloud=lab", "networks=net-1,net-2", "floating_ip_network=public",
     "use_blockstorage_volume=true", "security_groups=bake", "properties=hw_rng_model=virtio"),
    OLD, None)


def _render(fake_repo: Path, case: str) -> str:
    image, provider, vars_, version, goss = CASES[case]
    spec = catalog.load_image(fake_repo, image)
    return render.render(fake_repo, spec, provider, _profile(provider, *vars_),
                         _env(version, goss))


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(fake_repo: Path, case: str) -> None:
    text = _render(fake_repo, case)
    golden = GOLDEN / case
    if os.environ.get("FABPERF_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.is_file(), f"{golden} missing: run with FABPERF_UPDATE_GOLDEN=1"
    expected = golden.read_text()
    diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True),
                                        str(golden), "rendered"))
    assert parse(text) == parse(expected), diff
    assert text == expected, diff


def _source(doc: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    return doc["source"][0][kind][name]


def _provisioners(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [next(iter(p.items())) for p in doc["build"][0]["provisioner"]]


def test_qemu_semantics(fake_repo: Path) -> None:
    doc = parse(_render(fake_repo, "qemu/fabric-node.pkr.hcl"))
    src = _source(doc, "qemu", "fabric-node")
    assert src["disk_image"] is True and src["format"] == "qcow2"
    assert src["cd_label"] == "cidata" and len(src["cd_files"]) == 2
    assert src["shutdown_command"] == "sudo /usr/local/sbin/fabperf-seal"
    assert src["memory"] == 4096 and src["disk_size"] == "12G"
    assert "packer" not in doc   # 1.6.6 has no required_plugins
    kinds = [k for k, _ in _provisioners(doc)]
    # mkdir, uploads, one shell per script in order, then goss
    assert kinds[:3] == ["shell", "file", "file"]
    shells = [p for k, p in _provisioners(doc) if k == "shell" and "script" in p]
    assert [s["script"].rsplit("/scripts/", 1)[1] for s in shells] == [
        "common/base.sh", "common/exporters.sh", "fabric-node/go.sh", "fabric-node/fabric.sh",
        "fabric-node/chaincode.sh", "common/cleanup.sh"]
    # Each script is named in its own log lines (Packer uploads it as script_NNNN.sh).
    names = [s["script"].rsplit("/scripts/", 1)[1] for s in shells]
    assert [s["environment_vars"] for s in shells] == [
        f'${{concat(local.script_env, ["FABPERF_LOG_TAG={n}"])}}' for n in names]
    assert {s["execute_command"] for s in shells} == {"${local.execute_command}"}
    env = doc["locals"][0]["script_env"]
    assert "FABRIC_REF=v3.0.0" in env and f"FABPERF_FINGERPRINT={FP}" in env
    assert "FABPERF_PROVIDER=qemu" in env and "FABPERF_IMAGE=fabric-node" in env
    assert "sudo -E env {{ .Vars }}" in doc["locals"][0]["execute_command"]
    last_kind, last = _provisioners(doc)[-1]
    assert last_kind == "shell-local"
    cmd = last["inline"][0]
    assert "-m bake.goss validate --host ssh://${build.User}@${build.Host}:${build.Port}" in cmd
    assert "--junit /srv/fabperf/build/goss/fabric-node-qemu.xml" in cmd


def test_new_packer_gets_required_plugins_and_imdsv2(fake_repo: Path) -> None:
    new = parse(_render(fake_repo, "aws/caliper-worker.packer-1.11.pkr.hcl"))
    old = parse(_render(fake_repo, "aws/caliper-worker.pkr.hcl"))
    plugins = new["packer"][0]["required_plugins"][0]["amazon"]
    assert plugins["source"] == "github.com/hashicorp/amazon"
    src = _source(new, "amazon-ebs", "caliper-worker")
    assert src["metadata_options"][0]["http_tokens"] == "required"
    assert src["imds_support"] == "v2.0"
    old_src = _source(old, "amazon-ebs", "caliper-worker")
    assert "metadata_options" not in old_src and "packer" not in old
    for s in (src, old_src):
        assert s["encrypt_boot"] is True
        assert "ami_users" not in s and "ami_groups" not in s        # private
        assert s["source_ami_filter"][0]["owners"] == ["136693071363"]
        for tags in ("tags", "snapshot_tags", "run_tags", "run_volume_tags"):
            assert s[tags] == "${local.tags}"
    for doc in (new, old):
        tags = doc["locals"][0]["tags"]
        assert tags["fabperf:fingerprint"] == FP and tags["fabperf:image"] == "caliper-worker"


def test_openstack_semantics(fake_repo: Path) -> None:
    doc = parse(_render(fake_repo, "openstack/fabric-node.options.pkr.hcl"))
    src = _source(doc, "openstack", "fabric-node")
    assert src["image_visibility"] == "private"
    assert src["metadata"]["fabperf:fingerprint"] == FP
    assert src["metadata"]["hw_rng_model"] == "virtio"
    assert src["networks"] == ["net-1", "net-2"] and src["floating_ip_network"] == "public"
    assert src["use_blockstorage_volume"] is True and src["volume_size"] == 12
    last_kind, last = _provisioners(doc)[-1]
    assert last_kind == "shell" and "FABPERF_NO_POWEROFF=1" in last["inline"][0]


def test_goss_binary_mode_and_extra_cas(fake_repo: Path) -> None:
    text = _render(fake_repo, "qemu/caliper-worker.goss-binary-ca.pkr.hcl")
    doc = parse(text)
    provs = _provisioners(doc)
    files = [p for k, p in provs if k == "file"]
    ca = [f for f in files if f["destination"].startswith("/tmp/fabperf/ca/")]
    assert ca == [{"source": "/etc/ssl/proxy-ca.pem",
                   "destination": "/tmp/fabperf/ca/fabperf-extra-00.crt"}]
    first_script = next(i for i, (k, p) in enumerate(provs) if k == "shell" and "script" in p)
    assert provs.index(("file", ca[0])) < first_script     # CAs before the scripts
    assert any(f.get("direction") == "download" for f in files)
    assert "REMOVE_EXTRA_CA_CERTS=1" in doc["locals"][0]["script_env"]
    assert "--format junit" in text and "bake.goss" not in text
    # the accelerator comes resolved from the RenderEnv (bake.build.resolve_accelerator)
    assert doc["variable"][2]["accelerator"]["default"] == "tcg"


def test_hcl_escaping() -> None:
    assert render.hcl('a "b" ${c} %{d} \\ \n') == '"a \\"b\\" $${c} %%{d} \\\\ \\n"'
    assert render.hcl({"k:v": [1, True]}) == '{ "k:v" = [1, true] }'
    assert render.hcl_interp(["x ${y} ", ("build.Host",)]) == '"x $${y} ${build.Host}"'
    doc = parse('v = ' + render.hcl('echo "${HOME}" %{x}') + "\n")
    assert doc["v"] == 'echo \\"$${HOME}\\" %%{x}'   # python-hcl2 keeps escapes verbatim
