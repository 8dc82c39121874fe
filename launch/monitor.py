"""Monitor configuration: Prometheus file_sd targets and the Grafana admin secret.

The monitor image bakes prometheus.yml with one file_sd job per name in
launch.contract.PROMETHEUS_JOBS; launch writes /etc/prometheus/file_sd/<job>.json. Targets
are addresses (not names) so a scrape never depends on name resolution.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from bake import inputs
from launch.contract import PORTS, PROMETHEUS_JOBS, Role
from launch.plan import Plan


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
    return jobs


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
