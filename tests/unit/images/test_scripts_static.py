"""Provisioning scripts and image files, checked as text (no subprocess): structure, the
documented variables, and agreement with launch/spec/contract.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from launch.spec import contract

REPO = Path(__file__).resolve().parents[3]
SCRIPTS = sorted((REPO / "packer/scripts").rglob("*.sh"))
PROGRAMS = [REPO / "packer/files/common" / n for n in
            ("fabperf-node-ready", "fabperf-seal", "fabperf-keyscan")] + [
    REPO / "packer/files/fabric-node/fabperf-chaincode-server"]
IMAGES = ("fabric-node", "caliper-worker", "monitor")


def _image(name: str) -> dict:
    return yaml.safe_load((REPO / "images" / name / "image.yaml").read_text())


def test_there_are_scripts_for_every_image() -> None:
    names = {p.relative_to(REPO / "packer/scripts").as_posix() for p in SCRIPTS}
    for image in IMAGES:
        for script in _image(image)["scripts"]:
            assert script in names, f"{image}: {script} listed but missing"


@pytest.mark.parametrize("image", IMAGES)
def test_image_yaml_paths_exist(image: str) -> None:
    spec = _image(image)
    for rel in spec["files"]:
        assert (REPO / rel).is_dir(), rel
    for rel in spec["goss"]:
        assert (REPO / "images" / rel).is_file(), rel


@pytest.mark.parametrize("path", SCRIPTS + PROGRAMS, ids=lambda p: p.name)
def test_bash_strict_mode(path: Path) -> None:
    lines = path.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines[:40], f"{path}: no `set -euo pipefail` near the top"


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_every_defaulted_variable_is_documented_at_the_top(path: Path) -> None:
    text = path.read_text()
    header = "\n".join(ln for ln in text.splitlines() if ln.startswith("#"))
    assigned = set(re.findall(r'^([A-Z][A-Z0-9_]+)="\$\{\1:[-?]', text, re.M))
    assert assigned, f"{path}: no overridable variables?"
    undocumented = sorted(v for v in assigned if v not in header)
    assert not undocumented, f"{path}: variables not documented in the header: {undocumented}"


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_scripts_never_pipe_downloads_into_a_shell(path: Path) -> None:
    assert not re.search(r"curl[^\n|]*\|\s*(ba)?sh", path.read_text())


def test_downloads_are_sha256_verified() -> None:
    # every curl -o of an artifact goes through fetch_verified, or is a key checked by fingerprint
    lib = (REPO / "packer/files/common/lib.sh").read_text()
    assert 'sha256sum -c' in lib
    for path in SCRIPTS:
        for line in path.read_text().splitlines():
            if re.search(r"\bcurl\b.*\s-o\s", line) and "gpg.key" not in line:
                pytest.fail(f"{path}: unverified download: {line.strip()}")


def test_versions_of_each_image_are_documented_by_its_scripts() -> None:
    for image in IMAGES:
        spec = _image(image)
        headers = "\n".join((REPO / "packer/scripts" / s).read_text() for s in spec["scripts"])
        for var in spec.get("versions") or {}:
            assert var in headers, f"{image}: versions.{var} is read by no script"


def test_units_follow_the_contract() -> None:
    files = REPO / "packer/files"
    peer = (files / "fabric-node/fabric-peer.service").read_text()
    orderer = (files / "fabric-node/fabric-orderer.service").read_text()
    assert f"EnvironmentFile={contract.env_file(contract.Role.PEER)}" in peer
    assert f"EnvironmentFile={contract.env_file(contract.Role.ORDERER)}" in orderer
    for unit in (peer, orderer):
        assert f"Environment=FABRIC_CFG_PATH={contract.FABRIC_CFG_PATH}" in unit
        assert f"User={contract.FABRIC_USER}" in unit
        assert "LimitNOFILE=1048576" in unit
        assert f"WorkingDirectory={contract.FABRIC_DATA}" in unit
    assert contract.UNITS[contract.Role.PEER] == ("fabric-peer.service",)
    chaincode = (files / "fabric-node/fabric-chaincode@.service").read_text()
    assert "EnvironmentFile=" + contract.CHAINCODE_ENV.format(name="%i") in chaincode
    assert contract.CHAINCODE_DIR in chaincode
    worker = (files / "caliper-worker/caliper-worker@.service").read_text()
    assert f"User={contract.CALIPER_USER}" in worker
    assert f"EnvironmentFile={contract.CALIPER_WORKER_ENV}" in worker
    assert contract.CALIPER_WORKER_BENCHCONFIG in worker
    assert f"{contract.CALIPER_DIR}/networkconfig.yaml" in worker
    assert f"{contract.CALIPER_DIR}/caliper.yaml" in worker
    grafana = (files / "monitor/grafana-server-fabperf.conf").read_text()
    assert contract.GRAFANA_ENV in grafana


def test_programs_and_paths_follow_the_contract() -> None:
    base = (REPO / "packer/scripts/common/base.sh").read_text()
    assert contract.READY_PROGRAM in base
    assert contract.SEAL_PROGRAM in (REPO / "packer/scripts/common/cleanup.sh").read_text()
    ready = (REPO / "packer/files/common/fabperf-node-ready").read_text()
    assert contract.READY_FILE in ready and contract.FAILED_FILE in ready
    assert contract.CALIPER_WORKER_ENV in ready
    assert f'PEER_OPS_PORT:-{contract.PORTS["peer_operations"]}' in ready
    assert f'ORDERER_OPS_PORT:-{contract.PORTS["orderer_operations"]}' in ready
    fabric = (REPO / "packer/scripts/fabric-node/fabric.sh").read_text()
    for path in (contract.FABRIC_BIN, contract.FABRIC_CFG_PATH, contract.CCAAS_BUILDER,
                 contract.FABRIC_DATA, contract.IMAGE_JSON.rsplit("/", 1)[0]):
        assert path in fabric, path
    caliper = (REPO / "packer/scripts/caliper-worker/caliper.sh").read_text()
    assert contract.CALIPER_WORKSPACE in caliper and contract.CALIPER_DIR in caliper


def test_prometheus_reads_every_file_sd_job_of_the_contract() -> None:
    prom = yaml.safe_load((REPO / "packer/files/monitor/prometheus.yml").read_text())
    jobs = {c["job_name"]: c for c in prom["scrape_configs"]}
    for job in contract.PROMETHEUS_JOBS:
        files = jobs[job]["file_sd_configs"][0]["files"]
        assert files == [f"{contract.PROMETHEUS_FILE_SD}/{job}.json"]
    assert jobs["pushgateway"]["honor_labels"] is True
    defaults = (REPO / "packer/files/monitor/prometheus.default").read_text()
    assert "--web.enable-admin-api" in defaults


def test_mosquitto_listens_for_caliper_anonymously_without_persistence() -> None:
    conf = (REPO / "packer/files/monitor/mosquitto.conf").read_text().splitlines()
    assert f"listener {contract.PORTS['mqtt']} 0.0.0.0" in conf
    assert "allow_anonymous true" in conf and "persistence false" in conf


def test_process_exporter_groups_match_the_contract() -> None:
    cfg = yaml.safe_load((REPO / "packer/files/common/process-exporter.yml").read_text())
    names = [g["name"] for g in cfg["process_names"]]
    assert tuple(sorted(names)) == tuple(sorted(contract.PROCESS_GROUPS))
    # the chaincode server is a node process too: it must be matched before Caliper
    assert names.index("chaincode") < names.index("caliper")
    assert f":{contract.PORTS['process_exporter']}" in (
        REPO / "packer/files/common/prometheus-process-exporter.default").read_text()


def test_grafana_datasource_uid_is_the_contract_one() -> None:
    ds = yaml.safe_load(
        (REPO / "dashboards/provisioning/datasources/fabperf.yaml").read_text())["datasources"]
    assert [d["uid"] for d in ds] == [contract.GRAFANA_DATASOURCE_UID]
    assert ds[0]["url"] == f"http://localhost:{contract.PORTS['prometheus']}"
