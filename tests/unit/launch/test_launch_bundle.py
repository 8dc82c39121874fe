"""`launch render` as a library: the bundle layout, the user-data, budgets, re-renders."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from launch_testlib import NONCE, cloud_config, example, files_of, render

from fabkit.errors import InputError
from launch.render import cloudinit, fabric
from launch.spec import providers
from launch.spec.contract import (
    BOOTSTRAP_DIR,
    CALIPER_DIR,
    GRAFANA_ENV,
    LAUNCH_JSON,
    PROMETHEUS_FILE_SD,
    PROMETHEUS_JOBS,
    PROMETHEUS_TARGET_LABELS,
    READY_PROGRAM,
)


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory):
    return render("aws", tmp_path_factory.mktemp("aws") / "bundle")


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory):
    return render("local", tmp_path_factory.mktemp("local") / "bundle")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_bundle_layout(aws) -> None:
    out = aws.out
    assert (out / "crypto/peerOrganizations/org1.example.com/peers/peer0.org1.example.com/tls"
            / "server.crt").is_file()
    assert (out / "crypto/ordererOrganizations/example.com/orderers/orderer2.example.com/msp"
            / "keystore/priv_sk").is_file()
    assert (out / "fabric/configtx.yaml").is_file()
    for h in aws.plan.hosts:
        assert (out / "nodes" / h.name / "user-data").read_bytes() == aws.user_data[h.name].data
        assert _mode(out / "nodes" / h.name / "user-data") == 0o600
    assert (out / "nodes/orderer1/orderer.env").is_file()
    assert (out / "nodes/peer1-org2/peer.env").is_file()
    assert sorted(p.name for p in (out / "caliper").iterdir()) == [
        "benchmark.yaml", "caliper.yaml", *(f"networkconfig-caliper{i}.yaml" for i in range(4))]
    assert _mode(out / "caliper/networkconfig-caliper0.yaml") == 0o600
    assert sorted(p.name for p in (out / "monitor/file_sd").iterdir()) == sorted(
        f"{j}.json" for j in PROMETHEUS_JOBS)
    assert _mode(out / "monitor/grafana.env") == 0o600
    plan = json.loads((out / "plan.json").read_text())
    assert plan["nonce"] == NONCE
    assert [h["address"] for h in plan["hosts"]] == [h.address for h in aws.plan.hosts]
    assert not list(out.parent.glob(".bundle.*")), "staging directories left behind"


def test_aws_user_data_fits_the_ec2_budget(aws) -> None:
    for name, ud in aws.user_data.items():
        assert ud.size <= providers.AWS_RAW_LIMIT, name
    # The bootstrap node carries every organisation's admin: only gzip makes it fit.
    boot = aws.user_data[aws.plan.bootstrap.name]
    assert boot.gzipped and boot.raw_size > providers.AWS_RAW_LIMIT
    assert aws.user_data["caliper0"].gzipped is False


def test_user_data_write_files(aws) -> None:
    doc = cloud_config(aws.user_data["peer1-org1"].data)
    assert doc["hostname"] == "peer1-org1" and doc["manage_etc_hosts"] is False
    files = files_of(doc)
    key = files["/etc/fabperf/peer/msp/keystore/priv_sk"]
    assert (key["owner"], key["permissions"]) == ("fabric:fabric", "0600")
    assert files["/etc/fabperf/peer/tls/server.key"]["permissions"] == "0600"
    assert files["/etc/fabperf/peer/tls/server.crt"]["permissions"] == "0644"
    assert "BEGIN PRIVATE KEY" in key["content"]
    assert json.loads(files[LAUNCH_JSON]["content"]) == {
        "environment": "aws", "host": "peer1-org1", "nonce": NONCE, "roles": ["peer"]}
    hosts = files["/etc/hosts"]["content"]
    for h in aws.plan.hosts:
        assert f"{h.address}\t{h.fqdn} {h.name}" in hosts
    assert "10.40.1.13\tpeer0-org1.aws.fabperf.internal peer0-org1 peer0.org1.example.com" \
        in hosts
    # core.yaml's docker endpoint blanked before the peer starts (Fabric 2.5 ignores an
    # empty CORE_VM_ENDPOINT; /healthz then fails on "docker" for ever)
    assert doc["runcmd"] == [list(c) for c in fabric.PEER_BEFORE] + [
        ["systemctl", "enable", "--now", "fabric-peer.service",
         "fabric-chaincode@mychannel-fixed-asset.service"],
        [READY_PROGRAM, "--nonce", NONCE, "peer"]]
    assert doc["runcmd"][0][-1] == "/etc/hyperledger/fabric/core.yaml"
    # No admin identity and no bootstrap input outside the bootstrap node.
    assert not [p for p in files if p.startswith(BOOTSTRAP_DIR) or "Admin@" in p]
    for path, f in files.items():
        if path.endswith(("priv_sk", ".key")):
            assert f["permissions"] == "0600", path


def test_bootstrap_inputs_only_on_the_bootstrap_node(aws) -> None:
    files = files_of(cloud_config(aws.user_data["peer0-org1"].data))
    boot = f"{BOOTSTRAP_DIR}/crypto"
    for org, domain in (("peer", "org1.example.com"), ("peer", "org2.example.com"),
                        ("orderer", "example.com")):
        admin = f"{boot}/{org}Organizations/{domain}/users/Admin@{domain}"
        assert files[f"{admin}/msp/keystore/priv_sk"]["permissions"] == "0600"
        assert f"{admin}/tls/client.crt" in files
    for i in range(3):
        assert (f"{boot}/ordererOrganizations/example.com/orderers/orderer{i}.example.com"
                "/tls/server.crt") in files
    assert f"{BOOTSTRAP_DIR}/fabric/configtx.yaml" in files
    job = json.loads(files[f"{BOOTSTRAP_DIR}/bootstrap.json"]["content"])
    assert [o["admin"] for o in job["channels"][0]["orderers"]] == [
        f"orderer{i}.example.com:7053" for i in range(3)]
    assert len(job["channels"][0]["peers"]) == 4
    cc = f"{BOOTSTRAP_DIR}/chaincode/mychannel/fixed-asset/fixed-asset_1.0.tar.gz"
    assert files[cc]["encoding"] == "b64"
    pkg = base64.b64decode(files[cc]["content"])
    (entry,) = job["channels"][0]["chaincodes"]
    assert entry["package"] == "chaincode/mychannel/fixed-asset/fixed-asset_1.0.tar.gz"
    assert entry["package_id"] == "fixed-asset_1.0:" + hashlib.sha256(pkg).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(pkg)) as outer:
        assert json.loads(outer.extractfile("metadata.json").read()) == {
            "label": "fixed-asset_1.0", "type": "ccaas"}
        with tarfile.open(fileobj=outer.extractfile("code.tar.gz")) as code:
            assert json.loads(code.extractfile("connection.json").read())["address"] == \
                "127.0.0.1:9999"
    # Every configtx.yaml path resolves inside the bootstrap crypto subset.
    configtx = yaml.safe_load(files[f"{BOOTSTRAP_DIR}/fabric/configtx.yaml"]["content"])
    base = f"{BOOTSTRAP_DIR}/fabric"
    for org in configtx["Organizations"]:
        msp = os.path.normpath(f"{base}/{org['MSPDir']}")
        assert any(p.startswith(msp + "/cacerts/") for p in files), msp
    for c in configtx["Profiles"]["mychannel"]["Orderer"]["EtcdRaft"]["Consenters"]:
        assert os.path.normpath(f"{base}/{c['ClientTLSCert']}") in files


def test_caliper_worker_and_monitor_files(aws) -> None:
    files = files_of(cloud_config(aws.user_data["caliper2"].data))
    net = files[f"{CALIPER_DIR}/networkconfig.yaml"]
    assert (net["owner"], net["permissions"]) == ("caliper:caliper", "0600")
    assert "CALIPER_WORKERS=12" in files[f"{CALIPER_DIR}/worker.env"]["content"]
    runcmd = cloud_config(aws.user_data["caliper2"].data)["runcmd"]
    assert runcmd[0][3:] == [f"caliper-worker@{i}.service" for i in range(1, 13)]
    mon = files_of(cloud_config(aws.user_data["monitor"].data))
    assert mon[GRAFANA_ENV]["permissions"] == "0600"
    assert sorted(p for p in mon if p.startswith(PROMETHEUS_FILE_SD)) == sorted(
        f"{PROMETHEUS_FILE_SD}/{j}.json" for j in PROMETHEUS_JOBS)
    fabric = json.loads(mon[f"{PROMETHEUS_FILE_SD}/fabric.json"]["content"])
    assert sorted(t for g in fabric for t in g["targets"]) == sorted(
        [f"10.40.1.{10 + i}:8443" for i in range(3)]
        + [f"10.40.1.{13 + i}:9443" for i in range(4)])
    node = json.loads(mon[f"{PROMETHEUS_FILE_SD}/node.json"]["content"])
    assert len(node) == len(aws.plan.hosts)
    for job in PROMETHEUS_JOBS:
        for group in json.loads(mon[f"{PROMETHEUS_FILE_SD}/{job}.json"]["content"]):
            assert set(PROMETHEUS_TARGET_LABELS) <= set(group["labels"]), (job, group)
    runcmd = cloud_config(aws.user_data["monitor"].data)["runcmd"]
    assert runcmd[0] == [
        "systemctl", "enable", "--now", "prometheus.service",
        "prometheus-pushgateway.service", "mosquitto.service"]
    # Grafana only where the image has it (GRAFANA_SOURCE=none bakes a monitor without it).
    assert runcmd[1] == ["sh", "-c", "if systemctl cat grafana-server.service >/dev/null 2>&1; "
                                     "then systemctl enable --now grafana-server.service; fi"]
    assert runcmd[2][0] == READY_PROGRAM


def test_caliper_configs(aws) -> None:
    out = aws.out / "caliper"
    gateways = set()
    for w in aws.plan.workers:
        net = yaml.safe_load((out / f"networkconfig-{w.host}.yaml").read_text())
        assert net["version"] == "2.0.0"
        [org] = net["organizations"]
        [peer] = org["peers"]
        gateways.add(peer["endpoint"])
        assert peer["grpcOptions"]["ssl-target-name-override"] == w.gateway.fqdn
        ident = org["identities"]["certificates"][0]
        cert = x509.load_pem_x509_certificate(ident["clientSignedCert"]["pem"].encode())
        key = serialization.load_pem_private_key(ident["clientPrivateKey"]["pem"].encode(),
                                                 None)
        assert cert.public_key() == key.public_key()
        assert org["mspid"] == w.gateway.msp_id
        tls_ca = x509.load_pem_x509_certificate(peer["tlsCACerts"]["pem"].encode())
        assert tls_ca.subject.rfc4514_string().startswith("CN=tlsca.")
    assert len(gateways) == 4
    bench = yaml.safe_load((out / "benchmark.yaml").read_text())
    assert bench["test"]["workers"]["number"] == 48
    assert [r["rateControl"] for r in bench["test"]["rounds"]] == [
        {"type": "fixed-rate", "opts": {"tps": 2000}},
        {"type": "fixed-rate", "opts": {"tps": 4000}}]
    assert bench["test"]["rounds"][0]["workload"]["arguments"] == {
        "contractId": "fixed-asset", "payloadSize": 100}
    push = bench["monitors"]["transaction"][0]
    assert push["module"] == "prometheus-push"
    assert push["options"]["pushUrl"] == "http://10.40.1.21:9091"
    cal = yaml.safe_load((out / "caliper.yaml").read_text())["caliper"]
    assert cal["worker"] == {"remote": True, "communication": {
        "method": "mqtt", "address": "mqtt://10.40.1.21:1883"}}
    assert cal["observer"]["prometheus"]["scrapeport"] != 3000


def test_rerender_reuses_crypto_and_secrets_and_rotate_does_not(tmp_path: Path) -> None:
    out = tmp_path / "b"
    first = render("local", out)
    cert = out / "crypto/peerOrganizations/org1.example.com/peers/peer0.org1.example.com/tls"
    before = (cert / "server.crt").read_bytes()
    grafana = (out / "monitor/grafana.env").read_text()
    second = render("local", out)
    assert (cert / "server.crt").read_bytes() == before
    assert (out / "monitor/grafana.env").read_text() == grafana
    # Same crypto, same nonce: byte-identical user-data (gzip is deterministic too).
    assert {h: u.data for h, u in first.user_data.items()} == \
        {h: u.data for h, u in second.user_data.items()}
    render("local", out, rotate=True)
    assert (cert / "server.crt").read_bytes() != before
    assert (out / "monitor/grafana.env").read_text() != grafana


def test_refuses_a_directory_that_is_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="--out: expected a new directory or an earlier"):
        render("local", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["precious.txt"]


def _too_big() -> dict:
    """One host running every Fabric node of a 32-organisation network plus bootstrap
    (on OpenStack: EC2 takes what exceeds its limit through S3, launch.machines.providers.aws)."""
    doc = example("aws")
    doc["provider"] = "openstack"
    doc["organisations"] = [{"name": f"Org{i}", "domain": f"org{i}.example.com", "peers": 1}
                            for i in range(1, 33)]
    doc["channels"] = [{"name": "mychannel"}]
    return doc


def test_user_data_that_cannot_fit_is_a_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "b"
    with pytest.raises(InputError) as err:
        render(_too_big(), out)
    message = str(err.value)
    assert message.startswith("user-data of host peer0-org1 does not fit openstack's limit of "
                              "65535 bytes after base64 (Nova): "), message
    assert "bytes gzipped" in message
    assert not out.exists() and not list(tmp_path.iterdir())


def test_a_failed_rerender_keeps_the_earlier_bundle(tmp_path: Path) -> None:
    out = tmp_path / "b"
    render("aws", out)
    kept = {p: p.read_bytes() for p in out.rglob("*")
            if p.is_file() and "crypto" not in p.relative_to(out).parts}
    with pytest.raises(InputError):
        render(_too_big(), out)
    # The rendered files are untouched; the crypto tree stays in place (brought up to date
    # for the failed spec: a later render reuses it, see launch.render.bundle).
    assert {p: p.read_bytes() for p in kept} == kept
    assert (out / "crypto/ordererOrganizations/example.com/ca/priv_sk").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_fit_budgets() -> None:
    from launch.spec.providers import Provider

    text = b"#cloud-config\n" + b"a" * 20000
    assert cloudinit.fit("h", text, Provider.QEMU).gzipped is False
    assert cloudinit.fit("h", text, Provider.NONE).data == text
    aws = cloudinit.fit("h", text, Provider.AWS)
    assert aws.gzipped and cloudinit.decode(aws.data) == text
    assert cloudinit.fit("h", text, Provider.OPENSTACK).gzipped is False  # 26668 b64 bytes
    big = b"#cloud-config\n" + b"a" * 50000
    assert cloudinit.fit("h", big, Provider.OPENSTACK).gzipped  # 66688 b64 bytes
    noise = b"#cloud-config\n" + os.urandom(20000)
    assert len(cloudinit.fit("h", noise, Provider.AWS).data) > 16384   # through S3
    noise = b"#cloud-config\n" + os.urandom(50000)
    with pytest.raises(InputError, match="user-data of host h does not fit openstack's limit"):
        cloudinit.fit("h", noise, Provider.OPENSTACK)


def test_user_data_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    bundle = render("local", tmp_path / "b")
    key = files_of(cloud_config(bundle.user_data["fabric"].data))[
        "/etc/fabperf/peer/tls/server.key"]["content"]
    assert key.splitlines()[1] not in caplog.text


def test_tls_certificates_carry_every_name_of_their_host(aws) -> None:
    for node in (*aws.plan.peers, *aws.plan.orderers):
        kind = "peer" if node.role.value == "peer" else "orderer"
        crt = (aws.out / "crypto" / f"{kind}Organizations" / node.domain / f"{kind}s"
               / node.fqdn / "tls" / "server.crt")
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = set(san.get_values_for_type(x509.DNSName))
        addresses = {str(a) for a in san.get_values_for_type(x509.IPAddress)}
        host = aws.plan.host(node.host)
        assert {node.fqdn, node.short, host.name, host.fqdn} <= names, node.fqdn
        assert host.address in addresses, node.fqdn


def test_workers_start_with_a_bench_config_whose_observers_push_to_the_monitor(local) -> None:
    """A remote Caliper worker builds its transaction observers from its own bench config
    (not the manager's): the rendered one names the Pushgateway, and worker.env selects it
    over the image's placeholder (EnvironmentFile= wins over the unit's Environment=)."""
    files = files_of(cloud_config(local.user_data["caliper"].data))
    bench = yaml.safe_load(files[f"{CALIPER_DIR}/worker-benchmark.yaml"]["content"])
    (obs,) = bench["monitors"]["transaction"]
    assert obs["module"] == "prometheus-push"
    assert obs["options"]["pushUrl"] == f"http://{local.plan.monitor.address}:9091"
    env = files[f"{CALIPER_DIR}/worker.env"]["content"]
    assert f"CALIPER_BENCHCONFIG={CALIPER_DIR}/worker-benchmark.yaml" in env.replace('"', "")


@pytest.mark.parametrize("name", ["aws", "bft", "multiorg"])
def test_yaml_text_writes_what_the_safe_dumper_writes(tmp_path: Path, name: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # cloudinit.yaml_text builds the nodes itself (the representer's dispatch was most of a
    # render's YAML time): every document a render dumps must come out byte for byte.
    docs = []
    real = cloudinit.yaml_text

    def spy(doc, **kwargs):
        docs.append((doc, kwargs))
        return real(doc, **kwargs)

    monkeypatch.setattr(cloudinit, "yaml_text", spy)
    render(name, tmp_path / "out")
    assert len(docs) > 5
    for doc, kwargs in docs:
        assert real(doc, **kwargs) == yaml.dump(
            doc, Dumper=cloudinit._Dumper, sort_keys=False, width=4096,
            default_flow_style=False, **kwargs)


def test_yaml_text_leaves_other_values_to_the_representer() -> None:
    shared = ["a", "b"]
    doc = {"twice": [shared, shared], "text": "x\ny\n", "n": 3, "t": True, "none": None,
           "tuple": (1, 2)}
    expected = yaml.dump(doc, Dumper=cloudinit._Dumper, sort_keys=False, width=4096,
                         default_flow_style=False)
    assert "&id001" in expected   # an alias, as the representer writes it
    assert cloudinit.yaml_text(doc) == expected
