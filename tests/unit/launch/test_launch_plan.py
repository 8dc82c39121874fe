"""The plan: hosts, addresses from the CIDR, node placement, gateways, images."""

from __future__ import annotations

from pathlib import Path

import pytest
from launch_testlib import EXAMPLES, example

from bake import manifest
from fabkit.errors import InputError
from launch.render import plan
from launch.spec import env as spec
from launch.spec.contract import Role


def _plan(doc: dict, **kw) -> plan.Plan:
    return plan.build(spec.parse(doc, Path("x.yaml")), **kw)


def test_one_role_per_vm_by_default_with_addresses_in_order() -> None:
    p = plan.build(spec.load(EXAMPLES / "aws.yaml"))
    names = [h.name for h in p.hosts]
    assert names == ["orderer0", "orderer1", "orderer2", "peer0-org1", "peer1-org1",
                     "peer0-org2", "peer1-org2", "caliper0", "caliper1", "caliper2",
                     "caliper3", "monitor"]
    assert [h.address for h in p.hosts] == [f"10.40.1.{10 + i}" for i in range(12)]
    assert all(len(h.roles) == 1 for h in p.hosts)
    assert [n.fqdn for n in p.orderers] == [f"orderer{i}.example.com" for i in range(3)]
    assert p.peers[2].fqdn == "peer0.org2.example.com" and p.peers[2].host == "peer0-org2"
    assert p.bootstrap.name == "peer0-org1" and p.monitor.name == "monitor"
    assert p.warnings == ()


def test_gateways_round_robin_over_organisations_then_peers() -> None:
    p = plan.build(spec.load(EXAMPLES / "aws.yaml"))
    assert [w.gateway.fqdn for w in p.workers] == [
        "peer0.org1.example.com", "peer0.org2.example.com",
        "peer1.org1.example.com", "peer1.org2.example.com"]
    assert len({w.gateway.endpoint for w in p.workers}) == len(p.workers)
    assert {w.user for w in p.workers} == {"User1"}


def test_more_workers_than_peers_rotate_users() -> None:
    doc = example("aws")
    doc["caliper"]["workers"]["vms"] = 6
    p = _plan(doc)
    assert [w.user for w in p.workers] == ["User1"] * 4 + ["User2"] * 2
    assert p.workers[4].gateway == p.workers[0].gateway


def test_stacked_roles_and_caliper_warning() -> None:
    doc = example("local")
    doc["placement"]["hosts"] = [
        {"name": "lab", "roles": ["orderer", "peer", "caliper"], "image": "all-in-one"},
        {"name": "mon", "roles": ["monitor"]},
    ]
    p = _plan(doc)
    assert p.host("lab").roles == (Role.ORDERER, Role.PEER, Role.CALIPER)
    assert p.host("lab").image == "all-in-one"
    assert {n.fqdn for n in p.nodes_on("lab")} == {"orderer0.example.com",
                                                    "peer0.org1.example.com"}
    assert len(p.warnings) == 1 and "Caliper shares the host" in p.warnings[0]


def test_stacking_roles_of_different_images_needs_an_image() -> None:
    doc = example("local")
    doc["placement"]["hosts"] = [
        {"name": "lab", "roles": ["orderer", "peer", "caliper"]},
        {"name": "mon", "roles": ["monitor"]},
    ]
    with pytest.raises(InputError, match=r"placement.hosts\[0\].image: expected one image"):
        _plan(doc)


def test_cidr_too_small() -> None:
    doc = example("aws")
    doc["network"]["cidr"] = "10.40.1.0/28"
    with pytest.raises(InputError, match="network.cidr: expected a network with room for 12"):
        _plan(doc)


def test_provider_none_uses_the_given_addresses() -> None:
    doc = example("local")
    doc["provider"] = "none"
    for i, h in enumerate(doc["placement"]["hosts"]):
        h["address"] = f"192.0.2.{50 + i}"
    p = _plan(doc)
    assert [h.address for h in p.hosts] == ["192.0.2.50", "192.0.2.51", "192.0.2.52"]
    assert all(h.image is None and h.image_id is None for h in p.hosts)


def test_image_ids_from_the_manifest_and_explicit_ones(tmp_path: Path) -> None:
    build = tmp_path / "build"
    for image, provider, artifact in (
            ("fabric-node", "aws", {"ami": "ami-fabric", "region": "eu-west-1"}),
            ("caliper-worker", "aws", {"ami": "ami-caliper", "region": "eu-west-1"}),
            ("monitor", "aws", {"ami": "ami-from-manifest", "region": "eu-west-1"}),
            ("fabric-node", "qemu", {"path": "/x.qcow2", "sha256": "0" * 64})):
        manifest.record(build, image, provider,
                        manifest.Entry(name=f"fabperf-{image}", fingerprint="f", artifact=artifact))
    doc = example("aws")
    doc["images"] = {"monitor": "ami-explicit"}
    p = _plan(doc, manifest_root=tmp_path)
    ids = {h.name: h.image_id for h in p.hosts}
    assert ids["orderer0"] == ids["peer1-org2"] == "ami-fabric"
    assert ids["caliper3"] == "ami-caliper"
    assert ids["monitor"] == "ami-explicit"
    doc = example("local")
    p = _plan(doc, manifest_root=tmp_path)
    assert {h.name: h.image_id for h in p.hosts} == {
        "fabric": "/x.qcow2", "caliper": None, "monitor": None}


def test_unbuilt_images_stay_unresolved(tmp_path: Path) -> None:
    p = _plan(example("aws"), manifest_root=tmp_path)
    assert {h.image for h in p.hosts} == {"fabric-node", "caliper-worker", "monitor"}
    assert {h.image_id for h in p.hosts} == {None}


def test_plan_json_has_no_secret_and_names_everything(tmp_path: Path) -> None:
    p = plan.build(spec.load(EXAMPLES / "local.yaml"), manifest_root=tmp_path)
    doc = p.to_json()
    assert doc["hosts"][0] == {
        "name": "fabric", "fqdn": "fabric.local.fabperf.internal", "address": "10.77.0.10",
        "roles": ["orderer", "peer"], "image": "fabric-node", "image_id": None,
        "nodes": ["orderer0.example.com", "peer0.org1.example.com"]}
    assert doc["bootstrap_host"] == "fabric"


def test_planning_at_the_size_bound() -> None:
    """The largest topology the spec accepts (1024 hosts) plans, with the per-host lookups
    render uses (their speed is benchmarks/render_big.py's business, not a timed test)."""
    doc = example("aws")
    doc["organisations"] = [{"name": f"Org{i}", "peers": 61, "users": 0} for i in range(16)]
    doc["channels"] = []
    doc["network"] = {"cidr": "10.0.0.0/16"}
    doc["orderers"]["count"] = spec.MAX_ORDERERS
    doc["caliper"]["workers"] = {"vms": 15, "processes": 1}
    doc.pop("placement", None)
    s = spec.parse(doc, Path("big.yaml"))
    p = plan.build(s)
    for h in p.hosts:
        p.nodes_on(h.name), p.worker_on(h.name), p.peer_on(h.name), p.host(h.name)
    p.to_json()
    assert len(p.hosts) == spec.MAX_HOSTS
    doc["caliper"]["workers"] = {"vms": 16, "processes": 1}
    with pytest.raises(InputError, match="at most 1024 hosts"):
        spec.parse(doc, Path("big.yaml"))
