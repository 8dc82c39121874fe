"""`launch render` through the CLI: exit codes, output, nothing written on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from launch_testlib import EXAMPLES, example, write_spec

from fabkit.clikit import run_main
from launch.cli import cli


def _bft_with_three(d: dict) -> None:
    d["orderers"]["type"] = "BFT"


BAD = {
    "unknown key": (lambda d: d.update(peers=3), "peers: expected one of the known keys"),
    "negative count": (lambda d: d["organisations"][0].update(peers=-2),
                       "organisations[0].peers: expected an integer from 1 to 64, found -2"),
    "duplicate hostname": (lambda d: d.update(placement={"hosts": [
        {"name": "x", "roles": ["orderer"]}, {"name": "x", "roles": ["peer"]}]}),
        "placement.hosts[1].name: expected a host name no other host uses"),
    "BFT with fewer than 4 orderers": (_bft_with_three,
                                       "orderers.count: expected at least 4 orderers for BFT"),
    "channel naming an unknown org": (
        lambda d: d["channels"][0].update(orgs=["Org1", "OrgX"]),
        "channels[0].orgs[1]: expected one of the organisations ['Org1', 'Org2'], "
        "found 'OrgX'"),
    "provider none host without address": (
        lambda d: d.update(provider="none", placement={"hosts": [
            {"name": f"o{i}", "roles": ["orderer"], "address": f"192.0.2.{i + 1}"}
            for i in range(3)] + [
            {"name": f"p{i}", "roles": ["peer"], "address": f"192.0.2.{i + 10}"}
            for i in range(4)] + [
            {"name": f"c{i}", "roles": ["caliper"], "address": f"192.0.2.{i + 20}"}
            for i in range(4)] + [{"name": "mon", "roles": ["monitor"]}]}),
        "placement.hosts[11].address: expected an address (provider none hosts already exist)"),
    "msp_id with a trailing newline": (
        lambda d: d["organisations"][0].update(msp_id="Org1MSP\n"),
        "organisations[0].msp_id: expected an MSP id, found 'Org1MSP\\n'"),
    "channel with a trailing newline": (
        lambda d: d["channels"][0].update(name="mychannel\n"),
        "channels[0].name: expected a channel name"),
    "a million peers": (
        lambda d: d["organisations"][0].update(peers=1000000),
        "organisations[0].peers: expected an integer from 1 to 64, found 1000000"),
    "a billion processes": (
        lambda d: d["caliper"].update(workers={"vms": 1, "processes": 10**9}),
        "caliper.workers.processes: expected an integer from 1 to 64"),
    "a million users": (
        lambda d: d["organisations"][0].update(users=10**6),
        "organisations[0].users: expected an integer from 0 to 1000"),
    "too many orderers": (lambda d: d["orderers"].update(count=33),
                          "orderers.count: expected an integer from 1 to 32"),
    "too many hosts in all": (
        lambda d: d.update(organisations=[{"name": f"O{i}", "peers": 64} for i in range(17)],
                           channels=[]),
        "organisations: expected a topology of at most 1024 hosts"),
    "too many identities in all": (
        lambda d: d.update(organisations=[{"name": f"O{i}", "users": 1000} for i in range(11)],
                           channels=[]),
        "organisations: expected at most 10000 identities"),
    "env name too long for status": (
        lambda d: d.update(name="x" * 40),
        "name: expected an environment name (lower-case letters, digits and '-', at most 39"),
    "overlong manifest path (ENAMETOOLONG escaped)": (
        lambda d: d.update(manifest="a" * 3000 + "/manifest.json"),
        "manifest: expected a path of at most 1024 characters"),
    "long value shown as an excerpt": (
        lambda d: d["organisations"][0].update(name="!" * 5000),
        "organisations[0].name: expected a name (letters, digits, _ or -), found '!!!!"),
}


@pytest.mark.parametrize("text", [
    b"name: caf\xe9\n",                                             # not UTF-8
    b"name: lab\nname: lab2\n",                                     # duplicate key
    b"x: " + b"[" * 200 + b"]" * 200 + b"\n",                        # deep nesting
    b"a0: &a0 [l,l,l,l,l,l,l,l,l]\n" + b"".join(                      # alias bomb
        b"a%d: &a%d [" % (i, i) + b",".join([b"*a%d" % (i - 1)] * 9) + b"]\n"
        for i in range(1, 9)) + b"name: *a8\n",
])
def test_hostile_spec_files_exit_2_fast_and_write_nothing(text: bytes, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    import time

    path = tmp_path / "env.yaml"
    path.write_bytes(text)
    t0 = time.monotonic()
    assert run_main(cli, ["render", str(path), "--out", str(tmp_path / "b")]) == 2
    assert time.monotonic() - t0 < 5
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and len(err) < 400, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env.yaml"]


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spec_exits_2_and_writes_nothing(case: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    mutate, message = BAD[case]
    doc = example("aws")
    mutate(doc)
    path = write_spec(tmp_path, doc)
    out = tmp_path / "bundle"
    assert run_main(cli, ["render", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"error: {path}: {message}" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env.yaml"]


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_main(cli, ["render", str(tmp_path / "nope.yaml"), "--out",
                          str(tmp_path / "b")]) == 2
    assert "cannot read the environment file" in capsys.readouterr().err


def test_render_prints_hosts_and_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "b"
    assert run_main(cli, ["render", str(EXAMPLES / "local.yaml"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "fabric" in text and "10.77.0.10" in text and f"bundle: {out}" in text
    assert run_main(cli, ["render", str(EXAMPLES / "local.yaml"), "--out", str(out),
                          "--output", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [h["host"] for h in doc["hosts"]] == ["fabric", "caliper", "monitor"]
    assert (out / "plan.json").is_file()


def test_caliper_sharing_a_fabric_host_warns(tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    doc = example("local")
    doc["placement"]["hosts"] = [
        {"name": "lab", "roles": ["orderer", "peer", "caliper"], "image": "all-in-one"},
        {"name": "mon", "roles": ["monitor"]}]
    path = write_spec(tmp_path, doc)
    assert run_main(cli, ["render", str(path), "--out", str(tmp_path / "b")]) == 0
    assert "warning: host lab: Caliper shares the host with a Fabric node" in \
        capsys.readouterr().err
