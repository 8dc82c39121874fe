"""The bundle of a BYOF environment: caliper-worker VMs and the monitor, nothing of Fabric.

    DIR/nodes/<host>/user-data   what each VM gets (0600): /etc/hosts with the spec's
                                 aliases; on worker VMs the network config (the user's
                                 identity and TLS CA inline, 0600), caliper.yaml, worker.env;
                                 on the monitor the file_sd targets (the user's http
                                 operations endpoints in the fabric job), prometheus.yml
                                 with a job per https operations endpoint and its TLS
                                 files (the client key 0600, handed to prometheus), Grafana
    DIR/caliper/                 networkconfig-<host>.yaml (0600), benchmark.yaml, caliper.yaml
    DIR/monitor/                 file_sd/<job>.json, prometheus.yml (when needed), grafana.env
    DIR/plan.json                its kind, hosts, workers and their gateways

No crypto is generated: every key and certificate is the user's. The render is the same
transaction on DIR as `launch render` (launch.render.bundle.render dispatches here).
"""

from __future__ import annotations

from pathlib import Path

from launch.render import caliper, cloudinit, monitor
from launch.render.cloudinit import File, UserData
from launch.render.parts import (
    Reader,
    Writer,
    json_lines,
    json_text,
    worker_files,
    write_plan,
    yaml_text,
)
from launch.render.plan import Plan
from launch.spec.byof import ByofSpec
from launch.spec.contract import (
    GRAFANA_ENV,
    LAUNCH_JSON,
    PROMETHEUS_FILE_SD,
    Role,
)


def render_into(plan: Plan, root: Path, nonce: str, old_grafana: Path) -> dict[str, UserData]:
    """Render a BYOF plan's files into `root` (the staging directory of
    launch.render.bundle.render) and return every host's user-data."""
    spec = plan.spec
    assert isinstance(spec, ByofSpec), "a BYOF plan"
    read = Reader()
    hosts_file = cloudinit.hosts_text(plan, spec.aliases)
    network_configs = {w.host: yaml_text(caliper.byof_network_config(plan, w, read))
                       for w in plan.workers}
    caliper_yaml = yaml_text(caliper.caliper_yaml(plan))
    benchmark = yaml_text(caliper.benchmark(plan))
    file_sd = {job: json_lines(groups) for job, groups in monitor.file_sd(plan).items()}
    jobs, tls_files = monitor.operations_jobs(plan)
    prometheus_yml = yaml_text(monitor.prometheus_yml(jobs)) if jobs else None
    grafana_env = cloudinit.env_text(monitor.grafana_env(plan, old_grafana),
                                     title="Grafana admin (secret)", environment=spec.name,
                                     host=plan.monitor.name)

    user_data: dict[str, UserData] = {}
    for host in plan.hosts:
        files = [File("/etc/hosts", hosts_file),
                 File(LAUNCH_JSON, json_text({"environment": spec.name, "host": host.name,
                                          "nonce": nonce, "kind": plan.kind.value,
                                          "roles": [r.value for r in host.roles]}))]
        before: list[list[str]] = []
        worker = plan.worker_on(host.name)
        if worker is not None:
            files += worker_files(plan, host, worker, network_configs[host.name],
                                   caliper_yaml)
        if Role.MONITOR in host.roles:
            files += [File(f"{PROMETHEUS_FILE_SD}/{job}.json", text)
                      for job, text in file_sd.items()]
            files.append(File(GRAFANA_ENV, grafana_env, "root:root", "0600"))
            if prometheus_yml is not None:
                files.append(File(monitor.PROMETHEUS_YML, prometheus_yml))
                files += [File(f.dest, read(f.source), "root:root",
                               "0600" if f.secret else "0644") for f in tls_files]
                # write_files runs before the accounts of the image's packages are known
                # to the owner check (launch.spec.contract.IMAGE_USERS): hand the directory to
                # Prometheus before it starts
                before.append(["chown", "-R", f"{monitor.PROMETHEUS_USER}:",
                               monitor.BYOF_TLS_DIR])
        doc = cloudinit.cloud_config(plan, host, cloudinit.dedupe(files), nonce, before=before)
        user_data[host.name] = cloudinit.fit(host.name, cloudinit.dump(doc), spec.provider)

    write = Writer()
    for host in plan.hosts:
        write(root / "nodes" / host.name / "user-data", user_data[host.name].data, 0o600)
    cal = root / "caliper"
    for host, text in network_configs.items():
        write(cal / f"networkconfig-{host}.yaml", text, 0o600)
    write(cal / "benchmark.yaml", benchmark)
    write(cal / "caliper.yaml", caliper_yaml)
    mon = root / "monitor"
    for job, text in file_sd.items():
        write(mon / "file_sd" / f"{job}.json", text)
    if prometheus_yml is not None:
        write(mon / "prometheus.yml", prometheus_yml)
    write(mon / "grafana.env", grafana_env, 0o600)
    write_plan(write, root, plan, nonce, user_data)
    return user_data
