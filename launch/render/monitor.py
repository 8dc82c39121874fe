"""Monitor configuration: Prometheus file_sd targets and the Grafana admin secret.

The monitor image bakes prometheus.yml with one file_sd job per name in
launch.spec.contract.PROMETHEUS_JOBS; launch writes /etc/prometheus/file_sd/<job>.json. Targets
are addresses (not names) so a scrape never depends on name resolution.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabkit import inputs
from launch.render.plan import Plan
from launch.spec.byof import ByofSpec, Operations
from launch.spec.contract import PORTS, PROMETHEUS_JOBS, Role

# The monitor image's Prometheus configuration (packer/files/monitor/prometheus.yml): a BYOF
# monitor gets it back with a job per TLS operations endpoint added.
PROMETHEUS_YML = "/etc/prometheus/prometheus.yml"
BAKED_PROMETHEUS_YML = Path(__file__).resolve().parents[2] / "packer" / "files" / \
    "monitor" / "prometheus.yml"
BYOF_TLS_DIR = "/etc/prometheus/byof"      # per endpoint: ca.crt, client.crt, client.key
PROMETHEUS_USER = "prometheus"             # Debian's prometheus package runs as it


def file_sd(plan: Plan) -> dict[str, list[dict[str, Any]]]:
    """job -> file_sd target groups (one group per target, labelled host and role)."""
    env = plan.spec.name

    def group(address: str, port: int, **labels: str) -> dict[str, Any]:
        return {"targets": [f"{address}:{port}"], "labels": {"environment": env, **labels}}

    jobs: dict[str, list[dict[str, Any]]] = {job: [] for job in PROMETHEUS_JOBS}
    for h in plan.hosts:
        # Every group carries PROMETHEUS_TARGET_LABELS (host, role): dashboards join on them.
        role = ",".join(r.value for r in h.roles)
        jobs["node"].append(group(h.address, PORTS["node_exporter"], host=h.name, role=role))
        jobs["process"].append(group(h.address, PORTS["process_exporter"], host=h.name,
                                     role=role))
    for n in (*plan.orderers, *plan.peers):
        jobs["fabric"].append(group(n.address, n.operations_port, host=n.host,
                                    role=n.role.value, node=n.fqdn, msp_id=n.msp_id))
    # Prometheus runs on the monitor itself, next to the Pushgateway.
    jobs["pushgateway"].append(group("localhost", PORTS["pushgateway"], host=plan.monitor.name,
                                     role=Role.MONITOR.value))
    # "caliper" stays empty: remote workers push (prometheus-push), nobody is scraped.
    if isinstance(plan.spec, ByofSpec):
        # the user's plain-http operations endpoints join the fabric job (https ones get a
        # job of their own with their TLS settings: operations_jobs)
        for op in plan.spec.operations:
            if op.scheme == "http":
                address, _, port = op.target.rpartition(":")
                g = group(address.strip("[]"), int(port), **operations_labels(op))
                if op.metrics_path != "/metrics":
                    g["labels"]["__metrics_path__"] = op.metrics_path
                jobs["fabric"].append(g)
    return jobs


def operations_labels(op: Operations) -> dict[str, str]:
    """host (the user's name for the endpoint), role, node: what fabric series carry; cpus
    (its host's vCPUs) when the spec gives it, so bench can express its CPU as a share."""
    labels = {"host": op.host, "role": op.role, "node": op.host}
    if op.cpus is not None:
        labels["cpus"] = str(op.cpus)
    return labels


@dataclass(frozen=True)
class TlsFile:
    """A file an https scrape needs on the monitor (source: the user's file)."""

    dest: str
    source: Path
    secret: bool


def operations_jobs(plan: Plan) -> tuple[list[dict[str, Any]], list[TlsFile]]:
    """One scrape job per https operations endpoint of a BYOF plan (its CA, client
    certificate and key, server name), relabelled job="fabric" so bench's queries find its
    series as they find those of fabperf's own peers; and the files the jobs name."""
    jobs: list[dict[str, Any]] = []
    files: list[TlsFile] = []
    if not isinstance(plan.spec, ByofSpec):
        return jobs, files
    for i, op in enumerate(plan.spec.operations):
        if op.scheme != "https":
            continue
        d = f"{BYOF_TLS_DIR}/op{i}"
        tls: dict[str, Any] = {}
        for key, src, name, secret in (("ca_file", op.tls_ca, "ca.crt", False),
                                       ("cert_file", op.client_cert, "client.crt", False),
                                       ("key_file", op.client_key, "client.key", True)):
            if src is not None:
                tls[key] = f"{d}/{name}"
                files.append(TlsFile(f"{d}/{name}", src, secret))
        if op.tls_server_name:
            tls["server_name"] = op.tls_server_name
        jobs.append({
            "job_name": f"fabric-byof-{i}",
            "scheme": "https",
            "metrics_path": op.metrics_path,
            "tls_config": tls,
            "static_configs": [{"targets": [op.target], "labels": {
                "environment": plan.spec.name, **operations_labels(op)}}],
            "relabel_configs": [{"target_label": "job", "replacement": "fabric"}],
        })
    return jobs, files


def prometheus_yml(extra_jobs: Sequence[dict[str, Any]],
                   baked: Path = BAKED_PROMETHEUS_YML) -> dict[str, Any]:
    """The baked prometheus.yml with `extra_jobs` appended (its file_sd jobs unchanged)."""
    doc = inputs.load_yaml_file(baked, what="baked Prometheus configuration")
    names = {j["job_name"] for j in doc["scrape_configs"]}
    doc["scrape_configs"] = [*doc["scrape_configs"],
                             *(j for j in extra_jobs if j["job_name"] not in names)]
    return doc



_PASSWORD = inputs.Rule("GF_SECURITY_ADMIN_PASSWORD", str, pattern=r"[A-Za-z0-9_.~+-]{8,128}",
                        doc="a password of 8 to 128 letters, digits or _.~+-")


def grafana_env(plan: Plan, existing: Path | None = None) -> dict[str, str]:
    """grafana.env: the admin user and password; the password is kept from an earlier
    render when `existing` has one (a re-render must not change a running monitor's)."""
    password = None
    if existing is not None and existing.is_file():
        text = inputs.read_text(existing, what="Grafana admin file", max_bytes=65536)
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key == "GF_SECURITY_ADMIN_PASSWORD" and value:
                # It lands in an env file and a systemd unit: plain characters only.
                inputs.check_value(value, _PASSWORD, source=existing,
                                   path="GF_SECURITY_ADMIN_PASSWORD")
                password = value
    return {"GF_SECURITY_ADMIN_USER": plan.spec.monitor.grafana_admin_user,
            "GF_SECURITY_ADMIN_PASSWORD": password or secrets.token_urlsafe(18)}
