"""Fabric configuration of an environment: configtx.yaml, peer.env / orderer.env, and the
inputs of the one-time channel bootstrap job.

Node-specific settings go into env files (Fabric reads CORE_* / ORDERER_* overrides of the
baked core.yaml / orderer.yaml); every key used here is a real Fabric key (a test checks
them against tests/data/fabric-config-keys.txt). Pure functions of the plan.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launch.render import chaincode, crypto
from launch.render.plan import FabricNode, Plan
from launch.spec.contract import (
    BOOTSTRAP_DIR,
    FABRIC_CFG_PATH,
    FABRIC_DATA,
    PORTS,
    Role,
    fabric_dir,
)
from launch.spec.env import Consensus

CRYPTO_REL = "../crypto"  # configtx.yaml's view of the crypto tree (bundle and bootstrap node)
RAFT_OPTIONS = {
    "TickInterval": "500ms",
    "ElectionTick": 10,
    "HeartbeatTick": 1,
    "MaxInflightBlocks": 5,
    "SnapshotIntervalSize": "16 MB",
}
# configtxgen fills SmartBFT defaults only when the whole block is absent, so every option
# is spelled out (an empty one is rejected by the orderer at channel join). Values are
# Fabric 3.0's defaults, with the request pool of sampleconfig's BFT profile (100000, not
# the default 400, which a load generator fills at once).
SMARTBFT_OPTIONS = {
    "RequestBatchMaxBytes": 10485760,
    "IncomingMessageBufferSize": 200,
    "RequestPoolSize": 100000,
    "RequestForwardTimeout": "2s",
    "RequestComplainTimeout": "20s",
    "RequestAutoRemoveTimeout": "3m0s",
    "ViewChangeResendInterval": "5s",
    "ViewChangeTimeout": "20s",
    "LeaderHeartbeatTimeout": "1m0s",
    "LeaderHeartbeatCount": 10,
    "CollectTimeout": "1s",
    "SyncOnStart": False,
    "SpeedUpViewChange": False,
}


@dataclass(frozen=True)
class Material:
    """One file of the crypto tree and where it goes on a node."""

    source: str    # a file inside the bundle's crypto/ tree
    dest: str      # absolute path on the node
    secret: bool   # a private key: 0600


# --- crypto inputs ------------------------------------------------------------------------


def node_sans(plan: Plan, node: FabricNode) -> tuple[str, ...]:
    """Every name and address a client may dial for this node, besides its FQDN and short
    name (which crypto adds first): the host's names and address, and loopback."""
    host = plan.host(node.host)
    return (host.name, host.fqdn, host.address, "localhost", "127.0.0.1")


def crypto_orgs(plan: Plan) -> tuple[crypto.OrgCrypto, ...]:
    """The crypto request for the plan: the orderer organisation, then the peer ones."""
    spec = plan.spec
    o = spec.orderers
    orgs = [crypto.OrgCrypto(
        name=o.org, domain=o.domain, msp_id=o.msp_id, kind=crypto.OrgKind.ORDERER,
        nodes=tuple(crypto.NodeIdentity(n.fqdn, n.short, node_sans(plan, n),
                                        crypto.NodeOU.ORDERER) for n in plan.orderers),
        users=(),
    )]
    for org in spec.organisations:
        orgs.append(crypto.OrgCrypto(
            name=org.name, domain=org.domain, msp_id=org.msp_id, kind=crypto.OrgKind.PEER,
            nodes=tuple(crypto.NodeIdentity(n.fqdn, n.short, node_sans(plan, n),
                                            crypto.NodeOU.PEER)
                        for n in plan.peers if n.org == org.name),
            users=tuple(f"User{i + 1}" for i in range(org.users)),
        ))
    return tuple(orgs)


def org_of(orgs: tuple[crypto.OrgCrypto, ...], node: FabricNode) -> crypto.OrgCrypto:
    """The OrgCrypto a node belongs to."""
    return next(o for o in orgs if o.msp_id == node.msp_id)


def _rel(root: Path, path: Path) -> str:
    return f"{CRYPTO_REL}/{path.relative_to(root).as_posix()}"


# --- configtx.yaml ----------------------------------------------------------------------


def _sig(rule: str) -> dict[str, str]:
    return {"Type": "Signature", "Rule": rule}


def _meta(rule: str) -> dict[str, str]:
    return {"Type": "ImplicitMeta", "Rule": rule}


def _organisation(plan: Plan, org: crypto.OrgCrypto, root: Path) -> dict[str, Any]:
    m = org.msp_id
    if org.kind is crypto.OrgKind.ORDERER:
        policies = {"Readers": _sig(f"OR('{m}.member')"), "Writers": _sig(f"OR('{m}.member')"),
                    "Admins": _sig(f"OR('{m}.admin')")}
    else:
        policies = {
            "Readers": _sig(f"OR('{m}.admin', '{m}.peer', '{m}.client')"),
            "Writers": _sig(f"OR('{m}.admin', '{m}.client')"),
            "Admins": _sig(f"OR('{m}.admin')"),
            "Endorsement": _sig(f"OR('{m}.peer')"),
        }
    out: dict[str, Any] = {"Name": m, "ID": m,
                           "MSPDir": _rel(root, crypto.org_dir(root, org) / "msp"),
                           "Policies": policies}
    if org.kind is crypto.OrgKind.ORDERER:
        out["OrdererEndpoints"] = [n.endpoint for n in plan.orderers]
    else:
        # peer0 of the organisation is its anchor peer (cross-organisation gossip).
        anchor = next(p for p in plan.peers if p.msp_id == m and p.index == 0)
        out["AnchorPeers"] = [{"Host": anchor.fqdn, "Port": anchor.port}]
    return out


def _orderer_section(plan: Plan, ord_org: crypto.OrgCrypto, root: Path,
                     org_doc: dict[str, Any]) -> dict[str, Any]:
    o = plan.spec.orderers
    section: dict[str, Any] = {
        "OrdererType": o.type.value,
        "BatchTimeout": o.batch_timeout,
        "BatchSize": {"MaxMessageCount": o.max_message_count,
                      "AbsoluteMaxBytes": o.absolute_max_bytes,
                      "PreferredMaxBytes": o.preferred_max_bytes},
        "Organizations": [org_doc],
        "Policies": {
            "Readers": _meta("ANY Readers"),
            "Writers": _meta("ANY Writers"),
            "Admins": _meta("MAJORITY Admins"),
            # Fabric 3.0's configtxgen knows only Signature/ImplicitMeta; for BFT the peers
            # check block signatures against the consenter set themselves.
            "BlockValidation": _meta("ANY Writers"),
        },
        "Capabilities": {plan.spec.fabric.orderer_capability: True},
    }
    tls = {n.fqdn: _rel(root, crypto.node_dir(root, ord_org, n.fqdn) / "tls" / "server.crt")
           for n in plan.orderers}
    if o.type is Consensus.BFT:
        section["ConsenterMapping"] = [
            {"ID": n.index + 1, "Host": n.fqdn, "Port": n.port, "MSPID": o.msp_id,
             "Identity": _rel(root, crypto.node_dir(root, ord_org, n.fqdn) / "msp"
                              / "signcerts" / f"{n.fqdn}-cert.pem"),
             "ClientTLSCert": tls[n.fqdn], "ServerTLSCert": tls[n.fqdn]}
            for n in plan.orderers
        ]
        section["SmartBFT"] = {**SMARTBFT_OPTIONS,
                               "RequestBatchMaxCount": o.max_message_count,
                               "RequestBatchMaxInterval": o.batch_timeout}
    else:
        section["EtcdRaft"] = {
            "Consenters": [{"Host": n.fqdn, "Port": n.port, "ClientTLSCert": tls[n.fqdn],
                            "ServerTLSCert": tls[n.fqdn]} for n in plan.orderers],
            "Options": dict(RAFT_OPTIONS),
        }
    return section


def configtx(plan: Plan, orgs: tuple[crypto.OrgCrypto, ...], crypto_root: Path) -> dict:
    """configtx.yaml as a dict: one profile per channel, named after the channel."""
    spec = plan.spec
    docs = {o.msp_id: _organisation(plan, o, crypto_root) for o in orgs}
    ord_org = next(o for o in orgs if o.kind is crypto.OrgKind.ORDERER)
    profiles = {}
    for channel in spec.channels:
        members = [docs[spec.org(name).msp_id] for name in channel.orgs]
        profiles[channel.name] = {
            "Policies": {"Readers": _meta("ANY Readers"), "Writers": _meta("ANY Writers"),
                         "Admins": _meta("MAJORITY Admins")},
            "Capabilities": {spec.fabric.channel_capability: True},
            "Orderer": _orderer_section(plan, ord_org, crypto_root, docs[ord_org.msp_id]),
            "Application": {
                "Organizations": members,
                "Policies": {
                    "Readers": _meta("ANY Readers"),
                    "Writers": _meta("ANY Writers"),
                    "Admins": _meta("MAJORITY Admins"),
                    "LifecycleEndorsement": _meta("MAJORITY Endorsement"),
                    "Endorsement": _meta("MAJORITY Endorsement"),
                },
                "Capabilities": {spec.fabric.application_capability: True},
            },
        }
    return {"Organizations": list(docs.values()), "Profiles": profiles}


# --- env files ------------------------------------------------------------------------------


def _list(*paths: str) -> str:
    # Fabric's config reader parses "[a,b]" in an env override as a list.
    return "[" + ",".join(paths) + "]"


def peer_env(plan: Plan, node: FabricNode) -> dict[str, str]:
    """/etc/fabperf/peer.env for one peer."""
    t = plan.spec.tuning
    base = fabric_dir(Role.PEER)
    same_org = [p for p in plan.peers if p.org == node.org]
    # Gossip bootstrap: the next peer of the same organisation (itself when it is alone).
    buddy = same_org[(same_org.index(node) + 1) % len(same_org)]
    data = f"{FABRIC_DATA}/peer"
    env = {
        "CORE_PEER_ID": node.fqdn,
        "CORE_PEER_ADDRESS": node.endpoint,
        "CORE_PEER_LISTENADDRESS": f"0.0.0.0:{node.port}",
        "CORE_PEER_GOSSIP_BOOTSTRAP": buddy.endpoint,
        "CORE_PEER_GOSSIP_EXTERNALENDPOINT": node.endpoint,
        "CORE_PEER_LOCALMSPID": node.msp_id,
        "CORE_PEER_MSPCONFIGPATH": f"{base}/msp",
        "CORE_PEER_TLS_ENABLED": "true",
        "CORE_PEER_TLS_CERT_FILE": f"{base}/tls/server.crt",
        "CORE_PEER_TLS_KEY_FILE": f"{base}/tls/server.key",
        "CORE_PEER_TLS_ROOTCERT_FILE": f"{base}/tls/ca.crt",
        "CORE_PEER_FILESYSTEMPATH": data,
        "CORE_LEDGER_SNAPSHOTS_ROOTDIR": f"{data}/snapshots",
        "CORE_OPERATIONS_LISTENADDRESS": f"0.0.0.0:{PORTS['peer_operations']}",
        "CORE_METRICS_PROVIDER": "prometheus",
        # Empty: no Docker on the node, so /healthz must not check a Docker daemon. Fabric
        # 2.5's viper ignores an empty variable (the baked core.yaml's docker.sock stays and
        # /healthz answers 503 "docker" for ever): PEER_BEFORE blanks it in the file too.
        "CORE_VM_ENDPOINT": "",
        "CORE_PEER_LIMITS_CONCURRENCY_GATEWAYSERVICE": str(t.gateway_concurrency),
        "CORE_PEER_LIMITS_CONCURRENCY_ENDORSERSERVICE": str(t.endorser_concurrency),
        "CORE_PEER_LIMITS_CONCURRENCY_DELIVERSERVICE": str(t.deliver_concurrency),
        "CORE_PEER_GOSSIP_MAXBLOCKCOUNTTOSTORE": str(t.gossip_max_block_count),
    }
    if t.validator_pool_size:
        env["CORE_PEER_VALIDATORPOOLSIZE"] = str(t.validator_pool_size)
    return env


def orderer_env(plan: Plan, node: FabricNode) -> dict[str, str]:
    """/etc/fabperf/orderer.env for one orderer."""
    base = fabric_dir(Role.ORDERER)
    tls_ca = f"{base}/tls/ca.crt"
    data = f"{FABRIC_DATA}/orderer"
    return {
        "ORDERER_GENERAL_LISTENADDRESS": "0.0.0.0",
        "ORDERER_GENERAL_LISTENPORT": str(node.port),
        "ORDERER_GENERAL_LOCALMSPID": node.msp_id,
        "ORDERER_GENERAL_LOCALMSPDIR": f"{base}/msp",
        "ORDERER_GENERAL_TLS_ENABLED": "true",
        "ORDERER_GENERAL_TLS_CERTIFICATE": f"{base}/tls/server.crt",
        "ORDERER_GENERAL_TLS_PRIVATEKEY": f"{base}/tls/server.key",
        "ORDERER_GENERAL_TLS_ROOTCAS": _list(tls_ca),
        # Cluster traffic shares the general listener; the consenter set lists this cert.
        # Cluster root CAs come from the channel config (orderer org MSP tlscacerts).
        "ORDERER_GENERAL_CLUSTER_CLIENTCERTIFICATE": f"{base}/tls/server.crt",
        "ORDERER_GENERAL_CLUSTER_CLIENTPRIVATEKEY": f"{base}/tls/server.key",
        "ORDERER_GENERAL_CLUSTER_SENDBUFFERSIZE": str(plan.spec.tuning.cluster_send_buffer),
        # 2.5 defaults to a system channel genesis file; 3.x ignores this (it is harmless).
        "ORDERER_GENERAL_BOOTSTRAPMETHOD": "none",
        "ORDERER_CHANNELPARTICIPATION_ENABLED": "true",
        "ORDERER_ADMIN_LISTENADDRESS": f"0.0.0.0:{PORTS['orderer_admin']}",
        "ORDERER_ADMIN_TLS_ENABLED": "true",
        "ORDERER_ADMIN_TLS_CERTIFICATE": f"{base}/tls/server.crt",
        "ORDERER_ADMIN_TLS_PRIVATEKEY": f"{base}/tls/server.key",
        "ORDERER_ADMIN_TLS_CLIENTAUTHREQUIRED": "true",
        "ORDERER_ADMIN_TLS_CLIENTROOTCAS": _list(tls_ca),
        "ORDERER_OPERATIONS_LISTENADDRESS": f"0.0.0.0:{PORTS['orderer_operations']}",
        "ORDERER_METRICS_PROVIDER": "prometheus",
        "ORDERER_FILELEDGER_LOCATION": data,
        "ORDERER_CONSENSUS_WALDIR": f"{data}/etcdraft/wal",
        "ORDERER_CONSENSUS_SNAPDIR": f"{data}/etcdraft/snapshot",
    }


def node_env(plan: Plan, node: FabricNode) -> dict[str, str]:
    """The env file of a peer or an orderer."""
    return peer_env(plan, node) if node.role is Role.PEER else orderer_env(plan, node)


# --- files on nodes -------------------------------------------------------------------------


def _tree(src: Path, dest: str) -> list[Material]:
    # Plain strings and os.walk: this runs for every node of a big environment.
    out = []
    base = os.fspath(src)
    cut = len(base) + 1
    for dirpath, _dirs, files in os.walk(base):
        secret_dir = os.path.basename(dirpath) == "keystore"
        for name in files:
            path = os.path.join(dirpath, name)
            out.append(Material(path, f"{dest}/{path[cut:]}",
                                secret=secret_dir or name.endswith(".key")))
    return sorted(out, key=lambda m: m.dest)


def node_material(orgs: tuple[crypto.OrgCrypto, ...], root: Path,
                  node: FabricNode) -> list[Material]:
    """A node's own msp/ and tls/ from the crypto tree, placed under /etc/fabperf/<role>/."""
    return _tree(crypto.node_dir(root, org_of(orgs, node), node.fqdn), fabric_dir(node.role))


def bootstrap_material(plan: Plan, orgs: tuple[crypto.OrgCrypto, ...],
                       root: Path) -> list[Material]:
    """What configtxgen, osnadmin and the peer CLI need on the bootstrap node, under
    /etc/fabperf/bootstrap/crypto in the same layout (so configtx.yaml's paths hold):
    every organisation's verifying MSP, every orderer's TLS certificate (and signing
    certificate for BFT), and every organisation's Admin identity."""
    dest_root = f"{BOOTSTRAP_DIR}/crypto"
    out: list[Material] = []

    def add(path: Path) -> None:
        out.extend(_tree(path, f"{dest_root}/{path.relative_to(root).as_posix()}"))

    for org in orgs:
        add(crypto.org_dir(root, org) / "msp")
        add(crypto.user_dir(root, org, crypto.ADMIN))
        if org.kind is crypto.OrgKind.ORDERER:
            for n in org.nodes:
                ndir = crypto.node_dir(root, org, n.hostname)
                crt = ndir / "tls" / "server.crt"
                out.append(Material(os.fspath(crt),
                                    f"{dest_root}/{crt.relative_to(root).as_posix()}", False))
                if plan.spec.orderers.type is Consensus.BFT:
                    add(ndir / "msp" / "signcerts")
    return out


def chaincode_port(plan: Plan, channel: str, name: str) -> int:
    """Each chaincode server on a peer host listens on its own port, from 9999 upward."""
    pairs = [(ch.name, cc.name) for ch in plan.spec.channels for cc in ch.chaincodes]
    return PORTS["chaincode_server"] + pairs.index((channel, name))


def chaincode_instance(channel: str, name: str) -> str:
    """The fabric-chaincode@ instance (and env file name) of a chaincode on a channel."""
    return f"{channel}-{name}"


def chaincode_packages(plan: Plan) -> dict[tuple[str, str], chaincode.Package]:
    """(channel, chaincode) -> its deterministic CCaaS package (package ID known now)."""
    return {(ch.name, cc.name): chaincode.package(f"{cc.name}_{cc.version}",
                                                  chaincode_port(plan, ch.name, cc.name))
            for ch in plan.spec.channels for cc in ch.chaincodes}


def chaincode_envs(plan: Plan, node: FabricNode) -> dict[str, dict[str, str]]:
    """instance -> the env of its chaincode server, for every chaincode the peer's
    organisation runs (each peer host serves them to its own peer)."""
    spec = plan.spec
    packages = chaincode_packages(plan)
    out = {}
    for ch in spec.channels:
        if node.msp_id not in {spec.org(n).msp_id for n in ch.orgs}:
            continue
        for cc in ch.chaincodes:
            port = chaincode_port(plan, ch.name, cc.name)
            out[chaincode_instance(ch.name, cc.name)] = {
                "CHAINCODE_SERVER_ADDRESS": chaincode.server_address(port),
                "CHAINCODE_ID": packages[(ch.name, cc.name)].package_id,
            }
    return out


def bootstrap_inputs(plan: Plan, orgs: tuple[crypto.OrgCrypto, ...],
                     root: Path) -> dict[str, str | bytes]:
    """The bootstrap job's own files (relative to /etc/fabperf/bootstrap): the job's
    description (bootstrap.json) and per chaincode its CCaaS package (bytes)."""
    spec = plan.spec
    rel = {o.msp_id: crypto.org_dir(root, o).relative_to(root).as_posix() for o in orgs}
    packages = chaincode_packages(plan)
    files: dict[str, str | bytes] = {}
    channels = []
    for ch in spec.channels:
        msps = [spec.org(n).msp_id for n in ch.orgs]
        ccs = []
        for cc in ch.chaincodes:
            pkg = packages[(ch.name, cc.name)]
            path = f"chaincode/{ch.name}/{cc.name}/{pkg.label}.tar.gz"
            files[path] = pkg.data
            ccs.append({"name": cc.name, "version": cc.version, "sequence": cc.sequence,
                        "label": pkg.label, "endorsement_policy": cc.endorsement_policy,
                        "server_port": chaincode_port(plan, ch.name, cc.name),
                        "package": path, "package_id": pkg.package_id})
        channels.append({
            "name": ch.name,
            "profile": ch.name,
            "orderers": [{"fqdn": n.fqdn, "endpoint": n.endpoint,
                          "admin": f"{n.fqdn}:{PORTS['orderer_admin']}"}
                         for n in plan.orderers],
            "peers": [{"fqdn": p.fqdn, "endpoint": p.endpoint, "msp_id": p.msp_id}
                      for p in plan.peers if p.msp_id in msps],
            "chaincodes": ccs,
        })
    doc = {
        "environment": spec.name,
        "fabric_version": spec.fabric.version,
        "consensus": spec.orderers.type.value,
        "configtx": "fabric/configtx.yaml",
        "orgs": [{"name": o.name, "msp_id": o.msp_id, "domain": o.domain,
                  "kind": o.kind.value,
                  "admin": f"crypto/{rel[o.msp_id]}/users/{crypto.ADMIN}@{o.domain}",
                  "tls_ca": f"crypto/{rel[o.msp_id]}/msp/tlscacerts/"
                            f"{crypto.tlsca_cert_name(o)}"}
                 for o in orgs],
        "channels": channels,
    }
    files["bootstrap.json"] = json.dumps(doc, indent=2) + "\n"
    return files


# Commands a peer host runs before its units start: sampleconfig core.yaml's
# `vm.endpoint: unix:///var/run/docker.sock` blanked in the baked file (the only line of
# the file with that value), which CORE_VM_ENDPOINT="" cannot do on Fabric 2.5.
PEER_BEFORE: tuple[tuple[str, ...], ...] = (
    ("sed", "-i", r's#^\( *endpoint:\) *unix:///var/run/docker\.sock *$#\1 ""#',
     f"{FABRIC_CFG_PATH}/core.yaml"),
)
