"""The image scripts run to completion for real in a chroot of a Debian root filesystem, then
the image's goss specs (through bake.goss) and, after fabperf-seal, the hygiene scan pass.

Slow (apt, npm, a Fabric build) and networked (Debian archive, npm registry): marked e2e.
fabric-node builds from a local Fabric checkout the air-gapped way, through FABRIC_SOURCE:
it runs only when FABPERF_FABRIC_SRC names one (the project ships no Fabric source, and
the build machines cannot clone it). Root needed.
"""

from __future__ import annotations

import os
from pathlib import Path

import chroot_rootfs
import pytest
import yaml

from bake import goss, imagescan
from fabkit import runner

REPO = Path(__file__).resolve().parents[2]
FABRIC_SRC = Path(os.environ.get("FABPERF_FABRIC_SRC", "/nonexistent/fabric"))

pytestmark = [
    pytest.mark.e2e,
    # The QEMU bakes of the end-to-end tests run the same scripts for real; these chroot runs
    # are the quicker loop while writing scripts, kept out of `make test` for CI's time.
    pytest.mark.chroot,
    pytest.mark.skipif(os.geteuid() != 0, reason="chroot, mounts and debootstrap need root"),
]


def _bake_in_chroot(tmp_path: Path, image: str, env: dict[str, str],
                    binds: dict[str, str] | None = None) -> tuple[Path, dict]:
    log = tmp_path / f"{image}.log"
    root = chroot_rootfs.copy_rootfs(chroot_rootfs.base_rootfs(log_path=log), tmp_path / "root")
    chroot_rootfs.run_scripts(root, image, env=env, log_path=log, binds=binds)
    spec = yaml.safe_load((REPO / "images" / image / "image.yaml").read_text())
    variables = {**spec["versions"], **env}
    results = goss.validate(f"chroot://{root}", [REPO / "images" / g for g in spec["goss"]],
                            variables=variables)
    failed = [f"{r.title}: {r.message}" for r in results if not r.ok]
    assert not failed, failed
    runner.run(["bash", REPO / "packer/files/common/fabperf-seal"],
               env={"FABPERF_SEAL_ROOT": str(root)})
    sealed = goss.validate(f"chroot://{root}", [REPO / "images/common/goss/hygiene.yaml"],
                           variables={"SEALED": True})
    assert all(r.ok for r in sealed), [r.title for r in sealed if not r.ok]
    assert imagescan.scan_root(root) == []
    return root, spec


def test_caliper_worker_scripts(tmp_path: Path) -> None:
    root, _ = _bake_in_chroot(tmp_path, "caliper-worker", {})
    assert (root / "opt/fabperf/caliper/node_modules/@hyperledger/fabric-gateway").is_dir()


def test_monitor_scripts_without_grafana(tmp_path: Path) -> None:
    # Grafana's apt repository is not reachable from the build machines: GRAFANA_SOURCE=none
    root, _ = _bake_in_chroot(tmp_path, "monitor", {"GRAFANA_SOURCE": "none"})
    assert (root / "var/lib/grafana/dashboards/fabperf/caliper.json").is_file()


@pytest.mark.skipif(not (FABRIC_SRC / "go.mod").is_file(),
                    reason="set FABPERF_FABRIC_SRC to a Fabric source checkout to run this")
def test_fabric_node_scripts_from_a_local_checkout(tmp_path: Path) -> None:
    commit = runner.run(["git", "-C", FABRIC_SRC, "rev-parse", "HEAD"]).stdout.strip()
    env = {"FABRIC_SOURCE": "/tmp/fabperf/files/fabric-src", "FABRIC_COMMIT": commit}
    root, _ = _bake_in_chroot(tmp_path, "fabric-node", env,
                              binds={str(FABRIC_SRC): "/tmp/fabperf/files/fabric-src"})
    version = runner.run(["chroot", root, "/opt/fabric/bin/peer", "version"]).stdout
    assert f"Commit SHA: {commit[:7]}" in version
