"""Fabric config: env keys are real Fabric keys, configtx.yaml per consensus and version."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from launch_testlib import REPO, cloud_config, example, files_of, render

from launch.render import fabric, plan
from launch.spec import env as spec
from launch.spec.contract import Role, env_file

KEYS_FILE = REPO / "tests" / "data" / "fabric-config-keys.txt"


def _keys() -> set[str]:
    lines = KEYS_FILE.read_text().splitlines()
    assert lines[0].startswith("#") and "v3.0.0" in KEYS_FILE.read_text()[:600]
    return {line for line in lines if line and not line.startswith("#")}


def _env(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, line
            out[key] = value
    return out


def test_the_key_list_is_the_fabric_one() -> None:
    keys = _keys()
    assert len(keys) > 250
    for known in ("CORE_PEER_GOSSIP_BOOTSTRAP", "ORDERER_GENERAL_CLUSTER_SENDBUFFERSIZE",
                  "CORE_VM_ENDPOINT", "ORDERER_GENERAL_BOOTSTRAPMETHOD"):
        assert known in keys
    # Keys that only live in commented-out core.yaml lines are not overridable.
    assert "CORE_PEER_CHAINCODEADDRESS" not in keys


@pytest.mark.parametrize("example_name", ["local", "aws", "openstack"])
def test_every_env_key_is_a_fabric_key(example_name: str, tmp_path: Path) -> None:
    keys = _keys()
    bundle = render(example_name, tmp_path / "b")
    seen = 0
    for host in bundle.plan.hosts:
        files = files_of(cloud_config(bundle.user_data[host.name].data))
        for role in (Role.PEER, Role.ORDERER):
            if env_file(role) in files:
                env = _env(files[env_file(role)]["content"])
                assert env == _env((bundle.out / "nodes" / host.name
                                    / f"{role.value}.env").read_text())
                assert set(env) - keys == set(), host.name
                seen += 1
    assert seen == len(bundle.plan.peers) + len(bundle.plan.orderers)


def test_peer_env_values(tmp_path: Path) -> None:
    p = plan.build(spec.load(REPO / "environments/aws.yaml"), manifest_root=tmp_path)
    env = fabric.peer_env(p, p.peers[1])
    assert env["CORE_PEER_ID"] == "peer1.org1.example.com"
    assert env["CORE_PEER_GOSSIP_BOOTSTRAP"] == "peer0.org1.example.com:7051"
    assert env["CORE_PEER_GOSSIP_EXTERNALENDPOINT"] == "peer1.org1.example.com:7051"
    assert env["CORE_VM_ENDPOINT"] == ""
    assert env["CORE_METRICS_PROVIDER"] == "prometheus"
    assert env["CORE_OPERATIONS_LISTENADDRESS"] == "0.0.0.0:9443"
    assert env["CORE_PEER_LIMITS_CONCURRENCY_GATEWAYSERVICE"] == "20000"
    orderer = fabric.orderer_env(p, p.orderers[0])
    assert orderer["ORDERER_GENERAL_BOOTSTRAPMETHOD"] == "none"
    assert orderer["ORDERER_CHANNELPARTICIPATION_ENABLED"] == "true"
    assert orderer["ORDERER_GENERAL_CLUSTER_SENDBUFFERSIZE"] == "1000"
    assert orderer["ORDERER_OPERATIONS_LISTENADDRESS"] == "0.0.0.0:8443"
    assert orderer["ORDERER_ADMIN_TLS_CLIENTAUTHREQUIRED"] == "true"


def test_tls_sans_cover_every_name_and_address(tmp_path: Path) -> None:
    p = plan.build(spec.load(REPO / "environments/aws.yaml"), manifest_root=tmp_path)
    for org in fabric.crypto_orgs(p):
        for node in org.nodes:
            n = next(x for x in (*p.peers, *p.orderers) if x.fqdn == node.hostname)
            h = p.host(n.host)
            assert {h.address, h.name, h.fqdn} <= set(node.sans)


def _configtx(doc: dict, tmp_path: Path) -> dict:
    env = spec.parse(doc, Path("x.yaml"))
    p = plan.build(env, manifest_root=tmp_path)
    root = tmp_path / "crypto"
    return fabric.configtx(p, fabric.crypto_orgs(p), root)


def test_configtx_raft(tmp_path: Path) -> None:
    doc = _configtx(example("aws"), tmp_path)
    prof = doc["Profiles"]["mychannel"]
    assert prof["Capabilities"] == {"V3_0": True}
    assert prof["Application"]["Capabilities"] == {"V2_5": True}
    assert prof["Orderer"]["OrdererType"] == "etcdraft"
    consenters = prof["Orderer"]["EtcdRaft"]["Consenters"]
    assert [c["Host"] for c in consenters] == [f"orderer{i}.example.com" for i in range(3)]
    assert consenters[0]["ClientTLSCert"] == (
        "../crypto/ordererOrganizations/example.com/orderers/orderer0.example.com/tls/server.crt")
    assert prof["Orderer"]["BatchSize"]["MaxMessageCount"] == 500
    orgs = {o["Name"]: o for o in doc["Organizations"]}
    assert orgs["Org2MSP"]["AnchorPeers"] == [{"Host": "peer0.org2.example.com", "Port": 7051}]
    assert orgs["Org2MSP"]["MSPDir"] == "../crypto/peerOrganizations/org2.example.com/msp"
    assert orgs["OrdererMSP"]["OrdererEndpoints"][2] == "orderer2.example.com:7050"
    assert orgs["Org1MSP"]["Policies"]["Endorsement"]["Rule"] == "OR('Org1MSP.peer')"


def test_configtx_bft_and_2_5(tmp_path: Path) -> None:
    doc = example("aws")
    doc["orderers"].update(type="BFT", count=4)
    prof = _configtx(doc, tmp_path)["Profiles"]["mychannel"]
    assert prof["Orderer"]["OrdererType"] == "BFT"
    mapping = prof["Orderer"]["ConsenterMapping"]
    assert [m["ID"] for m in mapping] == [1, 2, 3, 4]
    assert mapping[3]["Identity"].endswith(
        "orderers/orderer3.example.com/msp/signcerts/orderer3.example.com-cert.pem")
    assert "EtcdRaft" not in prof["Orderer"]
    # configtxgen applies no per-option defaults: an option left out reaches the orderer
    # empty and `osnadmin channel join` fails ("invalid duration"). All 15 must be set.
    bft = prof["Orderer"]["SmartBFT"]
    assert len(bft) == 15
    assert all(v not in ("", None) for v in bft.values())
    assert bft["RequestBatchMaxCount"] == doc["orderers"].get("max_message_count", 500)
    doc = example("aws")
    doc["fabric"]["version"] = "2.5.10"
    prof = _configtx(doc, tmp_path)["Profiles"]["mychannel"]
    assert prof["Capabilities"] == {"V2_0": True}


def test_one_profile_per_channel_with_its_members(tmp_path: Path) -> None:
    doc = example("aws")
    doc["channels"].append({"name": "second", "orgs": ["Org2"]})
    profiles = _configtx(doc, tmp_path)["Profiles"]
    assert [o["Name"] for o in profiles["second"]["Application"]["Organizations"]] == ["Org2MSP"]
    assert yaml.safe_load(yaml.safe_dump(profiles)) == profiles
