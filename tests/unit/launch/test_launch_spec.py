"""environments/*.yaml -> EnvSpec: the examples load, bad specs name file, field and value."""

from __future__ import annotations

from pathlib import Path

import pytest
from launch_testlib import EXAMPLES, example

from fabkit.errors import InputError
from launch.spec import env as spec
from launch.spec.contract import Role


@pytest.mark.parametrize("name", ["local", "aws", "openstack", "big"])
def test_examples_load(name: str) -> None:
    env = spec.load(EXAMPLES / f"{name}.yaml")
    assert env.name == name
    assert env.provider.value in {"qemu", "aws", "openstack"}


def test_aws_example_topology() -> None:
    env = spec.load(EXAMPLES / "aws.yaml")
    assert env.orderers.count == 3 and env.orderers.type is spec.Consensus.ETCDRAFT
    assert [(o.name, o.peers) for o in env.organisations] == [("Org1", 2), ("Org2", 2)]
    assert env.caliper.vms == 4 and env.caliper.workers == 4 * env.caliper.processes
    assert env.tuning.gateway_concurrency == 20000


def test_big_example_topology() -> None:
    env = spec.load(EXAMPLES / "big.yaml")
    assert len(env.organisations) == 8
    assert {(o.peers, o.users) for o in env.organisations} == {(16, 50)}
    assert env.orderers.count == 5


def test_defaults_are_the_performance_settings() -> None:
    doc = example("local")
    del doc["placement"]
    env = spec.parse(doc, Path("x.yaml"))
    assert env.tuning.gateway_concurrency == 20000      # Fabric's default is 500
    assert env.tuning.cluster_send_buffer == 1000       # Fabric's default is 100
    assert env.placement is None


@pytest.mark.parametrize(
    ("version", "channel", "application"),
    [("3.0.0", "V3_0", "V2_5"), ("2.5.10", "V2_0", "V2_5"), ("2.5", "V2_0", "V2_5")],
)
def test_capabilities_follow_the_fabric_version(version: str, channel: str,
                                                application: str) -> None:
    doc = example("aws")
    doc["fabric"]["version"] = version
    env = spec.parse(doc, Path("x.yaml"))
    assert env.fabric.channel_capability == channel
    assert env.fabric.application_capability == application
    assert env.fabric.orderer_capability == "V2_0"


def _bft(doc: dict) -> dict:
    doc["orderers"]["type"] = "BFT"
    return doc


BAD = {
    "unknown top-level key": (lambda d: d.update(organizations=[]), "organizations",
                              "unknown key"),
    "unknown nested key": (lambda d: d["orderers"].update(batchtimeout="2s"),
                           "orderers.batchtimeout", "unknown key"),
    "negative peer count": (lambda d: d["organisations"][0].update(peers=-1),
                            "organisations[0].peers", "-1"),
    "negative users": (lambda d: d["organisations"][1].update(users=-3),
                       "organisations[1].users", "-3"),
    "duplicate hostname": (lambda d: d.update(placement={"hosts": [
        {"name": "a", "roles": ["orderer", "peer"]}, {"name": "a", "roles": ["peer"]}]}),
        "placement.hosts[1].name", "'a'"),
    "BFT with 3 orderers": (_bft, "orderers.count", "3"),
    "channel naming an unknown org": (
        lambda d: d["channels"][0].update(orgs=["Org1", "Org9"]), "channels[0].orgs[1]",
        "'Org9'"),
    "bad provider": (lambda d: d.update(provider="gcp"), "provider", "'gcp'"),
    "round with both duration and tx_number": (
        lambda d: d["caliper"]["rounds"][0].update(tx_number=10), "caliper.rounds[0].duration",
        "tx_number"),
    "bad cidr": (lambda d: d["network"].update(cidr="10.0.0.300/24"), "network.cidr",
                 "10.0.0.300"),
    "placement with too few peers": (lambda d: d.update(placement={"hosts": [
        {"name": "a", "roles": ["orderer", "peer"]}]}), "placement.hosts", "1 host(s)"),
    "bad role": (lambda d: d.update(placement={"hosts": [{"name": "a", "roles": ["db"]}]}),
                 "placement.hosts[0].roles[0]", "'db'"),
    "placed address outside the network": (lambda d: d.update(placement={"hosts": [
        {"name": f"h{i}", "roles": [r], **({"address": "10.9.9.9"} if i == 0 else {})}
        for i, r in enumerate(["orderer"] * 3 + ["peer"] * 4 + ["caliper"] * 4
                              + ["monitor"])]}), "placement.hosts[0].address", "10.9.9.9"),
    "duplicate msp id": (lambda d: d["organisations"][1].update(msp_id="Org1MSP"),
                         "organisations[1].msp_id", "Org1MSP"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_specs_name_the_field(case: str, tmp_path: Path) -> None:
    mutate, field, found = BAD[case]
    doc = example("aws")
    mutate(doc)
    with pytest.raises(InputError) as err:
        spec.parse(doc, Path("environments/aws.yaml"))
    message = str(err.value)
    assert message.startswith(f"environments/aws.yaml: {field}: expected "), message
    assert found in message, message
    assert err.value.exit_code == 2


def test_bft_on_fabric_2_5_is_refused() -> None:
    doc = example("aws")
    doc["orderers"].update(type="BFT", count=4)
    doc["fabric"]["version"] = "2.5.10"
    with pytest.raises(InputError, match=r"fabric.version: expected Fabric 3.0 or later"):
        spec.parse(doc, Path("x.yaml"))


def test_provider_none_needs_an_address_for_every_host() -> None:
    doc = example("local")
    doc["provider"] = "none"
    doc["placement"]["hosts"][0]["address"] = "192.0.2.10"
    doc["placement"]["hosts"][1]["address"] = "192.0.2.11"
    with pytest.raises(InputError, match=r"placement.hosts\[2\].address: expected an address"):
        spec.parse(doc, Path("x.yaml"))
    doc["placement"]["hosts"][2]["address"] = "192.0.2.12"
    env = spec.parse(doc, Path("x.yaml"))
    assert [h.address for h in env.placement] == ["192.0.2.10", "192.0.2.11", "192.0.2.12"]


def test_provider_none_needs_placement() -> None:
    doc = example("local")
    doc["provider"] = "none"
    del doc["placement"]
    with pytest.raises(InputError, match="placement.hosts: expected hosts with explicit"):
        spec.parse(doc, Path("x.yaml"))


def test_a_typo_gets_a_hint() -> None:
    doc = example("local")
    doc["caliper"]["workers"]["procesess"] = 2
    with pytest.raises(InputError) as err:
        spec.parse(doc, Path("x.yaml"))
    assert "caliper.workers.procesess" in str(err.value)
    assert "did you mean processes?" in str(err.value)


def test_stacked_roles_are_read_in_order() -> None:
    env = spec.load(EXAMPLES / "local.yaml")
    assert env.placement[0].roles == (Role.ORDERER, Role.PEER)


def _parse(doc: dict) -> spec.EnvSpec:
    return spec.parse(doc, Path("x.yaml"))


@pytest.mark.parametrize(("address", "what"), [("10.77.0.0", "the network address"),
                                               ("10.77.0.255", "the broadcast address"),
                                               ("10.77.0.1", "the gateway")])
def test_fixed_addresses_that_are_not_host_addresses_are_refused(address: str,
                                                                 what: str) -> None:
    doc = example("local")
    doc["placement"]["hosts"][1]["address"] = address
    with pytest.raises(InputError, match=rf"placement.hosts\[1\].address: expected a host "
                                         rf"address of 10.77.0.0/24, not {what}"):
        _parse(doc)
    doc["placement"]["hosts"][1]["address"] = "10.77.0.2"
    assert _parse(doc).placement[1].address == "10.77.0.2"


def test_first_host_cannot_be_the_gateway() -> None:
    doc = example("local")
    doc["network"]["first_host"] = 1
    with pytest.raises(InputError, match="network.first_host: expected an integer from 2"):
        _parse(doc)


def test_a_host_image_must_carry_its_roles() -> None:
    doc = example("local")
    doc["placement"]["hosts"][1]["image"] = "monitor"   # the caliper host
    with pytest.raises(InputError, match=r"placement.hosts\[1\].image: expected an image "
                                         r"that carries the roles \['caliper'\] \(monitor "
                                         r"does not carry \['caliper'\]\)"):
        _parse(doc)
    doc["placement"]["hosts"][1]["image"] = "caliper-worker"
    doc["placement"]["hosts"][0]["image"] = "fabric-node"   # orderer + peer: both in it
    assert _parse(doc).placement[0].image == "fabric-node"


@pytest.mark.parametrize("version", ["1.0\n", "", "1 0", "x" * 65, "-1"])
def test_chaincode_version_is_validated(version: str) -> None:
    doc = example("local")
    doc["channels"][0]["chaincodes"][0]["version"] = version
    with pytest.raises(InputError, match=r"channels\[0\].chaincodes\[0\].version: expected "
                                         "a chaincode version label"):
        _parse(doc)


@pytest.mark.parametrize("policy", [
    "AND('Org1MSP.peer','Org2MSP.peer')",
    "OR('Org1MSP.member', AND('Org2MSP.admin', 'Org1MSP.client'))",
    "OutOf(2, 'Org1MSP.peer', 'Org2MSP.peer', \"Org1MSP.admin\")",
    "/Channel/Application/Endorsement",
    "/Channel/Application/Org1MSP/Endorsement",
])
def test_good_endorsement_policies(policy: str) -> None:
    doc = example("aws")
    doc["channels"][0]["chaincodes"] = [{"name": "fixed-asset", "endorsement_policy": policy}]
    assert _parse(doc).channels[0].chaincodes[0].endorsement_policy == policy


@pytest.mark.parametrize(("policy", "hint"), [
    ("AND('Org1MSP.peer','Org2MSP.peer'", "ends too early"),
    ("AND('Org1MSP.peer' 'Org2MSP.peer')", "expected , or )"),
    ("XOR('Org1MSP.peer')", "unexpected text at character 1"),
    ("AND('Org9MSP.peer')", "names 'Org9MSP', not an MSP of the channel's organisations"),
    ("AND('Org1MSP.boss')", "is not 'MSPID.role'"),
    ("OutOf(3, 'Org1MSP.peer', 'Org2MSP.peer')", "OutOf(3, ...) with 2 sub-policies"),
    ("OutOf(0, 'Org1MSP.peer')", "OutOf(0, ...) with 1 sub-policies"),
    ("'Org1MSP.peer' 'Org2MSP.peer'", "unexpected"),
    ("/Channel/Orderer/Writers", "under /Channel/Application/"),
    ("AND(" * 40 + "'Org1MSP.peer'" + ")" * 40, "nested deeper than 32"),
    ("AND('Org1MSP.peer')\nOR(", "unexpected"),
])
def test_bad_endorsement_policies(policy: str, hint: str) -> None:
    doc = example("aws")
    doc["channels"][0]["chaincodes"] = [{"name": "fixed-asset", "endorsement_policy": policy}]
    with pytest.raises(InputError, match=r"channels\[0\].chaincodes\[0\].endorsement_policy:"
                                         " expected a signature policy") as exc:
        _parse(doc)
    assert hint in str(exc.value), str(exc.value)


def test_duplicate_keys_in_a_spec_file_are_refused(tmp_path: Path) -> None:
    text = (EXAMPLES / "local.yaml").read_text() + "\nname: other\n"
    (tmp_path / "e.yaml").write_text(text)
    with pytest.raises(InputError, match="duplicate key 'name'"):
        spec.load(tmp_path / "e.yaml")
