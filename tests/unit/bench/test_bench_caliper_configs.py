"""The Caliper configs `launch bench` relies on: one gateway peer per worker VM (round robin
over organisations, then peers), the manager's benchmark pointing at the monitor."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from launch.render import caliper, fabric, plan
from launch.spec import env as spec

REPO = Path(__file__).resolve().parents[3]


def test_each_worker_vm_has_its_own_gateway_peer() -> None:
    env = spec.load(REPO / "environments/aws.yaml")    # 2 orgs x 2 peers, 4 worker VMs
    p = plan.build(env)
    orgs = fabric.crypto_orgs(p)
    configs = [caliper.network_config(p, w, orgs, Path("/crypto"), lambda _: "PEM")
               for w in p.workers]
    gateways = [c["organizations"][0]["peers"][0]["endpoint"] for c in configs]
    assert len(configs) == 4 and len(set(gateways)) == 4
    assert [c["organizations"][0]["mspid"] for c in configs] == \
        ["Org1MSP", "Org2MSP", "Org1MSP", "Org2MSP"]
    assert gateways[:2] == ["peer0.org1.example.com:7051", "peer0.org2.example.com:7051"]
    # each config names only its gateway peer: the fabric-gateway binding uses the first
    assert all(len(c["organizations"]) == 1 and len(c["organizations"][0]["peers"]) == 1
               for c in configs)


def test_benchmark_for_a_bench_run() -> None:
    env = spec.load(REPO / "environments/local.yaml")
    p = plan.build(env)
    doc = caliper.benchmark(p, rounds=env.caliper.rounds[:1], workers=6)
    assert doc["test"]["workers"]["number"] == 6
    assert [r["label"] for r in doc["test"]["rounds"]] == ["create"]
    push = doc["monitors"]["transaction"][0]["options"]
    assert push["histogramBuckets"]["explicit"] == list(caliper.LATENCY_BUCKETS)
    assert doc["monitors"]["resource"][0]["options"]["url"] == \
        f"http://{p.monitor.address}:9090"


def test_each_run_creates_asset_ids_of_its_own() -> None:
    """A second `launch bench` on the same ledger must not create ids the first one made
    (seen live: every create of the repeat failed with "asset ... already exists")."""
    env = spec.load(REPO / "environments/local.yaml")
    p = plan.build(env)

    def prefixes(run_id: str | None) -> list[object]:
        doc = caliper.benchmark(p, run_id=run_id)
        return [r["workload"]["arguments"].get("idPrefix") for r in doc["test"]["rounds"]]

    first, second = prefixes("20261202T060810Z"), prefixes("20261202T062340Z")
    assert first == ["asset_20261202T060810Z"] * 2 and second[0] != first[0]
    assert prefixes(None) == [None, None]            # the rendered bundle keeps the default
    own = replace(env.caliper.rounds[0],
                  workload_arguments={"idPrefix": "mine", "payloadSize": 100})
    other = replace(env.caliper.rounds[0], workload_module="workloads/user-module.js")
    doc = caliper.benchmark(p, rounds=[own, other], run_id="X")
    assert [r["workload"]["arguments"].get("idPrefix") for r in doc["test"]["rounds"]] == \
        ["mine", None]


def test_each_round_knows_its_channel() -> None:
    """The round's contract names its channel (the live committed rate and the plotted one
    count that channel's commits alone); a contract the plan does not have is unknown."""
    env = spec.load(REPO / "environments/local.yaml")
    p = plan.build(env)
    channel = env.channels[0].name
    assert caliper.contract_channels(p) == {env.channels[0].chaincodes[0].name: channel}
    elsewhere = replace(env.caliper.rounds[0], workload_arguments={"contractId": "nope"})
    doc = caliper.benchmark(p, rounds=[env.caliper.rounds[0], elsewhere, env.caliper.rounds[1]])
    assert caliper.round_channels(p, doc) == {0: channel, 2: channel}
