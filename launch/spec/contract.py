"""The contract between the baked images and the user-data `launch` renders.

The images (packer/scripts, packer/files) install units and programs that read these
paths; launch writes these paths through cloud-init. Tests check both sides against
this module, so a path or port is named once.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """What a host runs. A host runs one role by default; small labs may stack them."""

    PEER = "peer"
    ORDERER = "orderer"
    CALIPER = "caliper"
    MONITOR = "monitor"

    def image(self) -> str:
        """The baked image that carries this role."""
        return {
            Role.PEER: "fabric-node",
            Role.ORDERER: "fabric-node",
            Role.CALIPER: "caliper-worker",
            Role.MONITOR: "monitor",
        }[self]


# --- paths on a node -----------------------------------------------------------------
CONFIG_ROOT = "/etc/fabperf"                  # everything launch writes lives below here
LAUNCH_JSON = "/etc/fabperf/launch.json"      # {"environment", "host", "nonce", "roles"}
READY_FILE = "/var/lib/fabperf/ready"         # holds the launch nonce once the roles are up
FAILED_FILE = "/var/lib/fabperf/failed"       # what failed, when the roles did not come up
READY_PROGRAM = "/usr/local/bin/fabperf-node-ready"  # baked; `fabperf-node-ready --nonce N ROLE...`
IMAGE_JSON = "/etc/fabperf/image.json"        # baked; what the image was built from

FABRIC_BIN = "/opt/fabric/bin"
FABRIC_CFG_PATH = "/etc/hyperledger/fabric"   # baked core.yaml / orderer.yaml
CCAAS_BUILDER = "/opt/hyperledger/ccaas_builder"
FABRIC_DATA = "/var/hyperledger/production"
FABRIC_USER = "fabric"


def fabric_dir(role: Role) -> str:
    """Where a Fabric node's own msp/ and tls/ are written: /etc/fabperf/<role>."""
    return f"{CONFIG_ROOT}/{role.value}"


def env_file(role: Role) -> str:
    """The EnvironmentFile= of the role's unit: /etc/fabperf/<role>.env."""
    return f"{CONFIG_ROOT}/{role.value}.env"


UNITS = {
    Role.PEER: ("fabric-peer.service",),
    Role.ORDERER: ("fabric-orderer.service",),
    Role.CALIPER: (),          # caliper-worker@N.service, N = 1..workers per VM
    Role.MONITOR: (
        "prometheus.service",
        "prometheus-pushgateway.service",
        "grafana-server.service",
        "mosquitto.service",
    ),
}
# EnvironmentFile=/etc/fabperf/chaincode-{name}.env
# Units a role runs when its image has them: a monitor baked with GRAFANA_SOURCE=none has no
# Grafana, and `systemctl enable` of a missing unit would fail the whole runcmd.
OPTIONAL_UNITS = frozenset({"grafana-server.service"})
CHAINCODE_UNIT = "fabric-chaincode@{name}.service"
CHAINCODE_ENV = "/etc/fabperf/chaincode-{name}.env"      # CHAINCODE_SERVER_ADDRESS, CHAINCODE_ID
# baked benchmark contract (Node.js, CCaaS server)
CHAINCODE_DIR = "/opt/fabperf/chaincode"
# channel block inputs, admin identities: one node only
BOOTSTRAP_DIR = "/etc/fabperf/bootstrap"
BOOTSTRAP_UNIT = "fabperf-bootstrap.service"             # baked, started on that node only
BOOTSTRAP_PROGRAM = "/usr/local/bin/fabperf-bootstrap"   # run | status | smoke ASSET
BOOTSTRAP_DONE = "/var/lib/fabperf/bootstrap.done"       # JSON: heights, package IDs, timings
BOOTSTRAP_FAILED = "/var/lib/fabperf/bootstrap.failed"   # JSON: step, node, error
GATEWAY_CLIENT = "/opt/fabperf/gateway-client"           # baked smoke-transaction client

# The accounts each image bakes, so user-data may own files by them (cloud-init's write_files
# fails on an unknown owner). Each image's goss spec checks its accounts exist.
IMAGE_USERS = {
    "fabric-node": ("root", "fabric"),
    "caliper-worker": ("root", "caliper"),
    "monitor": ("root",),
}

CALIPER_UNIT = "caliper-worker@{index}.service"
# networkconfig.yaml, caliper.yaml, worker.env
CALIPER_DIR = "/etc/fabperf/caliper"
CALIPER_WORKSPACE = "/opt/fabperf/caliper"               # baked: node_modules, workloads/
CALIPER_USER = "caliper"
CALIPER_WORKER_ENV = "/etc/fabperf/caliper/worker.env"  # CALIPER_WORKERS=N, CALIPER_* settings
CALIPER_WORKER_BENCHCONFIG = "/opt/fabperf/caliper/benchmarks/worker.yaml"  # baked placeholder
# the rendered one (its transaction observers push to the monitor); worker.env points at it
CALIPER_WORKER_BENCHMARK = "/etc/fabperf/caliper/worker-benchmark.yaml"
CALIPER_WORKLOADS = "/opt/fabperf/caliper/workloads"     # {create,read,update}-asset.js
BENCHMARK_CHAINCODE = "fixed-asset"                      # default contractId of the baked workloads

PROMETHEUS_FILE_SD = "/etc/prometheus/file_sd"           # <job>.json written by launch
GRAFANA_ENV = "/etc/fabperf/monitor/grafana.env"         # GF_SECURITY_ADMIN_PASSWORD=...
PROMETHEUS_JOBS = ("node", "process", "fabric", "pushgateway", "caliper")  # file_sd/<job>.json
PROMETHEUS_TARGET_LABELS = ("host", "role")  # on every file_sd group; dashboards join on host
GRAFANA_DATASOURCE_UID = "fabperf-prometheus"
PROCESS_GROUPS = ("peer", "orderer", "chaincode", "caliper")  # process-exporter groupname values
SEAL_PROGRAM = "/usr/local/sbin/fabperf-seal"            # Packer's shutdown_command (sudo)

# --- ports -----------------------------------------------------------------------------
PORTS = {
    "peer": 7051,
    "peer_chaincode": 7052,
    "peer_operations": 9443,
    "orderer": 7050,
    "orderer_admin": 7053,
    "orderer_operations": 8443,
    "chaincode_server": 9999,
    "node_exporter": 9100,
    "process_exporter": 9256,
    "prometheus": 9090,
    "pushgateway": 9091,
    "grafana": 3000,
    "mqtt": 1883,
    "caliper_scrape": 3100,   # Caliper's own prometheus observer, moved off Grafana's 3000
}
