"""fabric.PEER_BEFORE on a real Fabric release's sampleconfig core.yaml (the file the
fabric-node image bakes): vm.endpoint ends up empty and nothing else changes."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
import yaml

from fabkit import runner
from launch.render import fabric

pytestmark = pytest.mark.integration

SOURCE = os.environ.get("FABPERF_FABRIC_SOURCE", "")


@pytest.mark.skipif(not SOURCE.endswith((".tar.gz", ".tgz")) or not Path(SOURCE).is_file(),
                    reason="FABPERF_FABRIC_SOURCE (a Fabric source tarball) is not set")
def test_peer_before_blanks_the_docker_endpoint_of_the_real_core_yaml(tmp_path: Path) -> None:
    with tarfile.open(SOURCE) as tf:
        member = next(m for m in tf.getmembers() if m.name.endswith("/sampleconfig/core.yaml"))
        original = tf.extractfile(member).read().decode()  # type: ignore[union-attr]
    core = tmp_path / "core.yaml"
    core.write_text(original)
    assert yaml.safe_load(original)["vm"]["endpoint"] == "unix:///var/run/docker.sock"
    for cmd in fabric.PEER_BEFORE:
        runner.run([*cmd[:-1], core])
        runner.run([*cmd[:-1], core])           # a second boot finds it done: no change
    after = core.read_text()
    assert yaml.safe_load(after)["vm"]["endpoint"] == ""
    changed = [(a, b) for a, b in zip(original.splitlines(), after.splitlines(), strict=True)
               if a != b]
    assert changed == [("    endpoint: unix:///var/run/docker.sock", '    endpoint: ""')]
