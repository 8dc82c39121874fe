"""launch.render.chaincode: the CCaaS package is deterministic, so its package ID is known at
render."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

from launch_testlib import EXAMPLES, example

from launch.render import chaincode, fabric
from launch.render import plan as planner
from launch.spec import env as spec


def _members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_the_package_is_byte_for_byte_deterministic() -> None:
    a, b = chaincode.package("fixed-asset_1.0", 9999), chaincode.package("fixed-asset_1.0", 9999)
    assert a.data == b.data
    assert a.package_id == "fixed-asset_1.0:" + hashlib.sha256(a.data).hexdigest()
    assert chaincode.package("fixed-asset_1.0", 10000).package_id != a.package_id
    # gzip carries no name and no time
    assert a.data[4:8] == b"\0\0\0\0" and gzip.decompress(a.data)


def test_the_package_has_fabric_s_layout() -> None:
    pkg = chaincode.package("cc_2", 10001)
    members = _members(pkg.data)
    assert sorted(members) == ["code.tar.gz", "metadata.json"]
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members.values())
    with tarfile.open(fileobj=io.BytesIO(pkg.data)) as tar:
        assert json.loads(tar.extractfile("metadata.json").read()) == {"label": "cc_2",
                                                                        "type": "ccaas"}
        code = tar.extractfile("code.tar.gz").read()
    with tarfile.open(fileobj=io.BytesIO(code)) as tar:
        conn = json.loads(tar.extractfile("connection.json").read())
    assert conn == {"address": "127.0.0.1:10001", "dial_timeout": "10s", "tls_required": False}


def test_each_chaincode_server_gets_the_port_and_id_of_its_package() -> None:
    plan = planner.build(spec.load(EXAMPLES / "aws.yaml"))   # 2 orgs x 2 peers
    pkgs = fabric.chaincode_packages(plan)
    (key,) = pkgs
    for peer in plan.peers:
        envs = fabric.chaincode_envs(plan, peer)
        assert envs == {"mychannel-fixed-asset": {
            "CHAINCODE_SERVER_ADDRESS": "127.0.0.1:9999",
            "CHAINCODE_ID": pkgs[key].package_id}}


def test_a_second_chaincode_gets_the_next_port_in_its_package_and_server() -> None:
    doc = example("local")
    doc["channels"][0]["chaincodes"].append({"name": "other", "version": "2", "sequence": 1})
    plan = planner.build(spec.parse(doc, EXAMPLES / "local.yaml"))
    (peer,) = plan.peers
    envs = fabric.chaincode_envs(plan, peer)
    pkgs = fabric.chaincode_packages(plan)
    assert envs["mychannel-other"] == {
        "CHAINCODE_SERVER_ADDRESS": "127.0.0.1:10000",
        "CHAINCODE_ID": pkgs[("mychannel", "other")].package_id}
    with tarfile.open(fileobj=io.BytesIO(pkgs[("mychannel", "other")].data)) as tar:
        code = tar.extractfile("code.tar.gz").read()
    with tarfile.open(fileobj=io.BytesIO(code)) as tar:
        assert json.loads(tar.extractfile("connection.json").read())["address"] == \
            "127.0.0.1:10000"
