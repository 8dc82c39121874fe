"""Caliper configuration: a v2 network config per worker VM, caliper.yaml, the benchmark.

Each worker VM's network config names a different gateway peer (round robin over
organisations, then peers; see launch.render.plan), because the fabric-gateway binding sends every
transaction through the first peer of the organisation: that is the only way to spread the
gateway load. Workers are remote (MQTT through the monitor's Mosquitto); the manager runs on
the first worker VM with --caliper-flow-only-test (Fabric is bootstrapped by launch; see
launch.bench.run for why the manager is there and what it costs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from launch.render import crypto
from launch.render.fabric import org_of
from launch.render.plan import CaliperWorker, Plan
from launch.spec.byof import ByofSpec, Gateway, identity_pems
from launch.spec.common import Round
from launch.spec.contract import CALIPER_WORKER_BENCHMARK as WORKER_BENCHCONFIG
from launch.spec.contract import PORTS

REPORT_PATH = "/var/lib/caliper/report.html"
PUSH_INTERVAL_MS = 5000
PROGRESS_INTERVAL_MS = 1000
# caliper_tx_e2e_latency buckets (seconds). Caliper's default is linear 0.1 + 0.5 x 10, too
# coarse for p50/p95/p99 below a second and blind above 4.6 s.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0,
                   60.0)


def contract_ids(plan: Plan) -> dict[tuple[str, str], str]:
    """(channel, chaincode) -> Caliper contract id: the chaincode name, or name@channel when
    the same chaincode name is on several channels (Caliper ids must be unique)."""
    pairs = [(ch.name, cc.name) for ch in plan.spec.channels for cc in ch.chaincodes]
    names = [cc for _, cc in pairs]
    return {(ch, cc): cc if names.count(cc) == 1 else f"{cc}@{ch}" for ch, cc in pairs}


def contract_channels(plan: Plan) -> dict[str, str]:
    """Caliper contract id -> its channel."""
    return {cid: ch for (ch, _), cid in contract_ids(plan).items()}


def round_channels(plan: Plan, benchmark: Mapping[str, Any]) -> dict[int, str]:
    """Round index (of a rendered benchmark config) -> the channel its transactions go to;
    a round whose contract is not the plan's is left out (its channel is unknown)."""
    channels = contract_channels(plan)
    out = {}
    for i, r in enumerate(benchmark["test"]["rounds"]):
        cid = ((r.get("workload") or {}).get("arguments") or {}).get("contractId")
        if cid in channels:
            out[i] = channels[cid]
    return out


def network_config(plan: Plan, worker: CaliperWorker, orgs: tuple[crypto.OrgCrypto, ...],
                   root: Path, read: Callable[[Path], str]) -> dict[str, Any]:
    """The worker VM's network config v2: its gateway peer's organisation only, with the
    identity and the peer's TLS CA inline (the worker VM holds no crypto tree)."""
    gw = worker.gateway
    org = org_of(orgs, gw)
    user = crypto.user_dir(root, org, worker.user) / "msp"
    signcert = user / "signcerts" / f"{worker.user}@{org.domain}-cert.pem"
    tls_ca = crypto.node_dir(root, org, gw.fqdn) / "tls" / "ca.crt"
    return _network_doc(plan, worker, key=read(user / "keystore" / "priv_sk"),
                        cert=read(signcert), tls_ca=read(tls_ca))


def byof_network_config(plan: Plan, worker: CaliperWorker,
                        read: Callable[[Path], str]) -> dict[str, Any]:
    """The same network config for a BYOF worker: the identity and TLS CA are the user's
    files (launch.spec.byof), the TLS name override the gateway's tls_server_name (else the
    dialled host)."""

    spec, gw = plan.spec, worker.gateway
    if not isinstance(spec, ByofSpec) or not isinstance(gw, Gateway):
        raise TypeError(f"{worker.host}: not a BYOF worker")
    ident = spec.msp(gw.msp_id).identity(worker.user)
    cert, key = identity_pems(ident, gw.msp_id)
    tls_ca = gw.tls_ca_pem or read(gw.tls_ca)
    return _network_doc(plan, worker, key=key, cert=cert, tls_ca=tls_ca)


def _network_doc(plan: Plan, worker: CaliperWorker, *, key: str, cert: str,
                 tls_ca: str) -> dict[str, Any]:
    spec = plan.spec
    gw = worker.gateway
    ids = contract_ids(plan)
    channels = []
    for ch in spec.channels:
        if gw.org not in ch.orgs:
            continue
        contracts = []
        for cc in ch.chaincodes:
            cid = ids[(ch.name, cc.name)]
            contracts.append({"id": cid} if cid == cc.name
                             else {"id": cid, "contractID": cc.name})
        channels.append({"channelName": ch.name, "contracts": contracts})
    return {
        "name": f"fabperf-{spec.name}-{worker.host}",
        "version": "2.0.0",
        "caliper": {"blockchain": "fabric", "sutOptions": {"mutualTls": False}},
        "channels": channels,
        "organizations": [{
            "mspid": gw.msp_id,
            "identities": {"certificates": [{
                "name": worker.user,
                "clientPrivateKey": {"pem": key},
                "clientSignedCert": {"pem": cert},
            }]},
            "peers": [{
                "endpoint": gw.endpoint,
                "tlsCACerts": {"pem": tls_ca},
                "grpcOptions": {
                    # the name the peer's TLS certificate is checked against
                    "ssl-target-name-override": gw.fqdn,
                    "grpc.keepalive_time_ms": 120000,
                    "grpc.keepalive_timeout_ms": 20000,
                },
            }],
        }],
    }


def caliper_yaml(plan: Plan) -> dict[str, Any]:
    """caliper.yaml (the project config) shared by the manager and every worker."""
    monitor = plan.monitor.address
    return {"caliper": {
        "worker": {"remote": True,
                   "communication": {"method": "mqtt",
                                     "address": f"mqtt://{monitor}:{PORTS['mqtt']}"}},
        # Caliper's scrape observer defaults to 3000, which is Grafana's port.
        "observer": {"prometheus": {"scrapeport": PORTS["caliper_scrape"]}},
        # the manager's 'Transaction Info' line (Caliper's own in-flight count, what the
        # backlog test reads) every second instead of every 5 s: five times the samples,
        # and the manager waits one interval after each round before it reports it (4 s
        # less per round)
        "progress": {"reporting": {"interval": PROGRESS_INTERVAL_MS}},
        "flow": {"only": {"test": True}},
        "fabric": {"gateway": {"localhost": False}},
        "report": {"path": REPORT_PATH},
    }}


def worker_env(plan: Plan, worker: CaliperWorker) -> dict[str, str]:
    """/etc/fabperf/caliper/worker.env: how many caliper-worker@N units, and the broker."""
    return {
        "CALIPER_WORKERS": str(worker.processes),
        "CALIPER_BENCHCONFIG": WORKER_BENCHCONFIG,
        "CALIPER_WORKER_COMMUNICATION_ADDRESS":
            f"mqtt://{plan.monitor.address}:{PORTS['mqtt']}",
    }


# fabperf's own workload modules (packer/files/caliper-worker/workloads): their asset ids
# are `<idPrefix>_<round>_<worker>_<n>`, so a run must bring a prefix of its own, or a second
# run on the same ledger creates ids that exist ("asset ... already exists", every create).
ASSET_WORKLOADS = frozenset({"workloads/create-asset.js", "workloads/read-asset.js",
                             "workloads/update-asset.js"})


def _round(plan: Plan, rnd: Round, default_contract: str,
           run_id: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"label": rnd.label}
    if rnd.duration is not None:
        out["txDuration"] = rnd.duration
    else:
        out["txNumber"] = rnd.tx_number
    # tps is the total: Caliper divides it over test.workers.number.
    out["rateControl"] = dict(rnd.rate_control) if rnd.rate_control else \
        {"type": "fixed-rate", "opts": {"tps": rnd.tps}}
    arguments = {"contractId": default_contract, **rnd.workload_arguments}
    if run_id and rnd.workload_module in ASSET_WORKLOADS:
        arguments.setdefault("idPrefix", f"asset_{run_id}")
    out["workload"] = {"module": rnd.workload_module, "arguments": arguments}
    return out


def tx_observers(plan: Plan) -> list[dict[str, Any]]:
    """Caliper's prometheus-push transaction observer: every worker pushes its transaction
    and process metrics to the monitor's Pushgateway (job caliper-workers)."""
    return [{"module": "prometheus-push", "options": {
        "pushInterval": PUSH_INTERVAL_MS,
        "pushUrl": f"http://{plan.monitor.address}:{PORTS['pushgateway']}",
        "processMetricCollectInterval": PUSH_INTERVAL_MS,
        "defaultLabels": {"environment": plan.spec.name},
        "histogramBuckets": {"explicit": list(LATENCY_BUCKETS)},
    }}]


def worker_benchmark(plan: Plan) -> dict[str, Any]:
    """The benchmark config a remote worker starts with (WORKER_BENCHCONFIG). Its rounds
    come from the manager over MQTT, but a worker builds its transaction observers from
    its own file's `monitors.transaction` (caliper-core TxObserverInterface): without
    them here, nothing is pushed."""
    return {
        "test": {"name": f"fabperf-{plan.spec.name}-worker",
                 "description": "remote worker: the manager's benchmark drives the rounds",
                 "workers": {"number": 1}, "rounds": []},
        "monitors": {"transaction": tx_observers(plan)},
    }


def worker_benchmark_text(plan: Plan) -> str:
    """worker_benchmark as the YAML file cloud-init writes."""
    return yaml.safe_dump(worker_benchmark(plan), sort_keys=False)


def benchmark(plan: Plan, *, rounds: Sequence[Round] | None = None,
              workers: int | None = None, run_id: str | None = None) -> dict[str, Any]:
    """The manager's benchmark config: every worker process of every VM (`workers`, default
    the spec's), the spec's rounds (or `rounds`), the Pushgateway
    observer and Prometheus resource queries for the report. `run_id` (launch bench's
    stamp) makes fabperf's asset workloads' ids unique to the run (ASSET_WORKLOADS) unless
    the round sets `idPrefix` itself."""
    spec = plan.spec
    monitor = plan.monitor.address
    first = spec.channels[0]
    default_contract = contract_ids(plan)[(first.name, first.chaincodes[0].name)]
    workers = spec.caliper.workers if workers is None else workers

    def cpu(group: str) -> dict[str, Any]:
        return {"name": f"CPU {group} (%)", "label": "host", "statistic": "avg",
                "step": 5, "multiplier": 100,
                "query": f'sum by (host) (rate(namedprocess_namegroup_cpu_seconds_total'
                         f'{{groupname="{group}"}}[30s]))'}

    if isinstance(spec, ByofSpec):
        sut = f"the user's network ({len(spec.gateways)} gateway peers)"
    else:
        sut = f"{len(plan.peers)} peers, {len(plan.orderers)} " \
              f"{spec.orderers.type.value} orderers"
    return {
        "test": {
            "name": f"fabperf-{spec.name}",
            "description": f"{spec.name}: {sut}, {workers} workers",
            "workers": {"number": workers},
            "rounds": [_round(plan, r, default_contract, run_id)
                       for r in (spec.caliper.rounds if rounds is None else rounds)],
        },
        "monitors": {
            "transaction": tx_observers(plan),
            # The manager runs on a worker VM: Prometheus is the monitor's.
            "resource": [{"module": "prometheus", "options": {
                "url": f"http://{monitor}:{PORTS['prometheus']}",
                "metrics": {"include": [".*"],
                            "queries": [cpu("peer"), cpu("orderer"), cpu("caliper")]},
            }}],
        },
    }
