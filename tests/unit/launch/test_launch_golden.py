"""Golden files of the rendered bundle (parsed back before comparing).

Keys, certificates, the nonce and generated passwords are replaced by placeholders.
FABPERF_UPDATE_GOLDEN=1 rewrites the files under tests/golden/launch/.
"""

from __future__ import annotations

import os

import pytest
import yaml
from launch_testlib import GOLDEN, cloud_config, render, scrub

from launch.render import cloudinit

UPDATE = os.environ.get("FABPERF_UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("golden")
    return {name: render(name, root / name) for name in ("aws", "local")}


def _env(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines()
                if line and not line.startswith("#"))


def _yaml_text(doc: object) -> str:
    # The bundle's own dumper: multi-line strings as literal blocks, readable in a diff.
    return yaml.dump(doc, Dumper=cloudinit._Dumper, sort_keys=False, width=4096)


CASES = {
    # name: (bundle, how to get the text, parser, golden text writer)
    "configtx.yaml": ("aws", lambda b: (b.out / "fabric/configtx.yaml").read_text(), "yaml"),
    "peer.env": ("aws", lambda b: (b.out / "nodes/peer1-org1/peer.env").read_text(), "env"),
    "orderer.env": ("aws", lambda b: (b.out / "nodes/orderer0/orderer.env").read_text(), "env"),
    "networkconfig-caliper1.yaml": (
        "aws", lambda b: (b.out / "caliper/networkconfig-caliper1.yaml").read_text(), "yaml"),
    "benchmark.yaml": ("aws", lambda b: (b.out / "caliper/benchmark.yaml").read_text(), "yaml"),
    "user-data-local-fabric.yaml": (
        "local", lambda b: _yaml_text(cloud_config(b.user_data["fabric"].data)), "yaml"),
    "user-data-aws-caliper0.yaml": (
        "aws", lambda b: _yaml_text(cloud_config(b.user_data["caliper0"].data)), "yaml"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str, bundles) -> None:
    which, get, kind = CASES[name]
    parse = yaml.safe_load if kind == "yaml" else _env
    actual = scrub(parse(get(bundles[which])))
    golden = GOLDEN / name
    if UPDATE or not golden.exists():
        golden.parent.mkdir(parents=True, exist_ok=True)
        if kind == "yaml":
            golden.write_text(_yaml_text(actual))
        else:
            golden.write_text("".join(f"{k}={v}\n" for k, v in actual.items()))
        if not UPDATE:
            pytest.fail(f"{golden} did not exist and was written; check it and re-run")
    expected = parse(golden.read_text())
    assert actual == expected, f"{name} differs from {golden} (FABPERF_UPDATE_GOLDEN=1)"


def test_scrub_leaves_no_key_material(bundles) -> None:
    text = _yaml_text(scrub(cloud_config(bundles["local"].user_data["fabric"].data)))
    assert "BEGIN" not in text and "PRIVATE KEY-----" not in text
    assert "<PEM PRIVATE KEY>" in text and "<nonce>" in text
