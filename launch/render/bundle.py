"""`launch render`: the whole bundle of an environment, laid out as ARCHITECTURE.md says.

    DIR/crypto/...              cryptogen-layout tree (kept across re-renders unless rotate)
    DIR/fabric/configtx.yaml    + bootstrap.json, chaincode/<channel>/<name>/*.json
    DIR/nodes/<host>/user-data  exactly what the instance gets (gzip when over budget)
    DIR/nodes/<host>/<role>.env
    DIR/caliper/                networkconfig-<host>.yaml per worker VM, benchmark.yaml,
                                caliper.yaml
    DIR/monitor/                file_sd/<job>.json, grafana.env
    DIR/plan.json               hosts, roles, addresses, image ids, user-data sizes

`render` is a transaction on DIR (launch.render.transaction: a lock, a staging directory,
an atomic swap, modes explicit whatever the umask).

Bad input (a spec error, a user-data over budget) therefore leaves DIR as it was.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fabkit.errors import InputError
from launch.render import byof_bundle, caliper, cloudinit, crypto, fabric, monitor
from launch.render import plan as planner
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
from launch.render.plan import Host, Plan
from launch.render.transaction import check_out, swap, transaction
from launch.spec.byof import ByofSpec, Spec
from launch.spec.contract import (
    BOOTSTRAP_DIR,
    CHAINCODE_ENV,
    FABRIC_USER,
    GRAFANA_ENV,
    LAUNCH_JSON,
    PROMETHEUS_FILE_SD,
    Role,
    env_file,
)

FABRIC_OWNER = f"{FABRIC_USER}:{FABRIC_USER}"


@dataclass(frozen=True)
class Bundle:
    """A rendered environment: what `launch up` hands to a provider."""

    out: Path
    plan: Plan
    nonce: str
    user_data: Mapping[str, UserData]  # host name -> size-checked payload

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.plan.warnings


def render(spec: Spec, out: Path, *, rotate: bool = False, nonce: str | None = None,
           manifest_root: Path | None = None) -> Bundle:
    """Render the spec into `out` and return the plan and every host's user-data (already
    within the provider's size budget). `nonce` (default: random) is the readiness token of
    this launch. A transaction on `out` (launch.render.transaction).

    The one dispatch on the spec's kind: an environment gets its whole bundle (crypto
    under out/crypto is reused unless `rotate`), a BYOF spec the workers' and the monitor's
    (launch.render.byof_bundle; every key is the user's)."""
    out = Path(out)
    check_out(out)
    if rotate and isinstance(spec, ByofSpec):
        raise InputError.field(spec.source, "--rotate", "no --rotate for a BYOF spec (its "
                               "keys and certificates are the user's; fabperf issues none)",
                               True)
    plan = planner.build(spec, manifest_root=manifest_root)
    nonce = nonce or secrets.token_hex(16)
    old_grafana = out / "monitor" / "grafana.env"
    with transaction(out) as staging:
        if isinstance(spec, ByofSpec):
            user_data = byof_bundle.render_into(plan, staging, nonce, old_grafana)
            swap(staging, out)
        else:
            old_crypto = out / "crypto"
            reuse = (not rotate and old_crypto.is_dir()
                     and crypto.up_to_date(fabric.crypto_orgs(plan), old_crypto))
            if old_crypto.is_dir() and not rotate and not reuse:
                _link_tree(old_crypto, staging / "crypto")
            user_data = _render_into(plan, staging, nonce, rotate, old_grafana,
                                     crypto_root=old_crypto if reuse else None)
            swap(staging, out, crypto_from=old_crypto if reuse else None)
    return Bundle(out=out, plan=plan, nonce=nonce, user_data=user_data)


@dataclass(frozen=True)
class _Shared:
    """What several hosts' user-data draw from, computed once per render."""

    orgs: tuple[crypto.OrgCrypto, ...]
    crypto_root: Path
    read: Reader
    hosts_file: str
    configtx: str
    bootstrap_inputs: Mapping[str, str | bytes]
    caliper_yaml: str
    benchmark: str
    network_configs: Mapping[str, str]   # worker host -> network config
    file_sd: Mapping[str, str]
    grafana_env: str
    env_texts: Mapping[tuple[str, Role], str]


def _material_files(materials: list[fabric.Material], read: Reader, owner: str) -> list[File]:
    return [File(m.dest, read(m.source), owner, "0600" if m.secret else "0644")
            for m in materials]


def _host_files(plan: Plan, host: Host, s: _Shared, nonce: str) -> list[File]:
    spec = plan.spec
    files = [
        File("/etc/hosts", s.hosts_file),
        File(LAUNCH_JSON, json_text({"environment": spec.name, "host": host.name, "nonce": nonce,
                                 "roles": [r.value for r in host.roles]})),
    ]
    for node in plan.nodes_on(host.name):
        files += _material_files(fabric.node_material(s.orgs, s.crypto_root, node), s.read,
                                 FABRIC_OWNER)
        files.append(File(env_file(node.role), s.env_texts[(host.name, node.role)]))
        if node.role is Role.PEER:
            for inst, env in fabric.chaincode_envs(plan, node).items():
                files.append(File(CHAINCODE_ENV.format(name=inst), cloudinit.env_text(
                    env, title=f"chaincode server {inst}", environment=spec.name,
                    host=host.name)))
    if host is plan.bootstrap:
        files += _material_files(fabric.bootstrap_material(plan, s.orgs, s.crypto_root),
                                 s.read, "root:root")
        files.append(File(f"{BOOTSTRAP_DIR}/fabric/configtx.yaml", s.configtx))
        files += [File(f"{BOOTSTRAP_DIR}/{rel}", text)
                  for rel, text in s.bootstrap_inputs.items()]
    worker = plan.worker_on(host.name)
    if worker is not None:
        files += worker_files(plan, host, worker, s.network_configs[host.name], s.caliper_yaml)
    if Role.MONITOR in host.roles:
        files += [File(f"{PROMETHEUS_FILE_SD}/{job}.json", text)
                  for job, text in s.file_sd.items()]
        files.append(File(GRAFANA_ENV, s.grafana_env, "root:root", "0600"))
        # No Caliper manager files: `launch bench` runs the manager on the first worker VM
        # (launch.bench.run), which has its network config; the monitor holds no Fabric key.
    return cloudinit.dedupe(files)


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of src into a new tree dst (directories 0755, as crypto makes
    them). crypto.generate replaces files by new inodes, so src is never changed."""
    for dirpath, _, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target = dst if rel == "." else dst / rel
        os.mkdir(target, 0o755)
        for name in filenames:
            os.link(os.path.join(dirpath, name), target / name, follow_symlinks=False)


def _render_into(plan: Plan, root: Path, nonce: str, rotate: bool, old_grafana: Path,
                 crypto_root: Path | None = None) -> dict[str, UserData]:
    """Render into ``root``; ``crypto_root``: an up-to-date crypto tree to read instead of
    generating root/crypto (it joins the bundle at the swap)."""
    spec = plan.spec
    orgs = fabric.crypto_orgs(plan)
    if crypto_root is None:
        crypto_root = root / "crypto"
        crypto.generate(orgs, crypto_root, rotate=rotate)
    read = Reader()

    env_texts: dict[tuple[str, Role], str] = {}
    for node in (*plan.orderers, *plan.peers):
        env_texts[(node.host, node.role)] = cloudinit.env_text(
            fabric.node_env(plan, node), title=f"Fabric {node.role.value} {node.fqdn}",
            environment=spec.name, host=node.host)
    network_configs = {w.host: yaml_text(caliper.network_config(plan, w, orgs, crypto_root, read))
                       for w in plan.workers}
    shared = _Shared(
        orgs=orgs, crypto_root=crypto_root, read=read,
        hosts_file=cloudinit.hosts_text(plan),
        configtx=yaml_text(fabric.configtx(plan, orgs, crypto_root)),
        bootstrap_inputs=fabric.bootstrap_inputs(plan, orgs, crypto_root),
        caliper_yaml=yaml_text(caliper.caliper_yaml(plan)),
        benchmark=yaml_text(caliper.benchmark(plan)),
        network_configs=network_configs,
        file_sd={job: json_lines(groups) for job, groups in monitor.file_sd(plan).items()},
        grafana_env=cloudinit.env_text(
            monitor.grafana_env(plan, None if rotate else old_grafana),
            title="Grafana admin (secret)", environment=spec.name, host=plan.monitor.name),
        env_texts=env_texts,
    )

    # Every host's user-data is built and size-checked before anything else is written.
    user_data: dict[str, UserData] = {}
    for host in plan.hosts:
        before = fabric.PEER_BEFORE if Role.PEER in host.roles else ()
        doc = cloudinit.cloud_config(plan, host, _host_files(plan, host, shared, nonce), nonce,
                                     before=before)
        user_data[host.name] = cloudinit.fit(host.name, cloudinit.dump(doc), spec.provider)

    write = Writer()
    fabric_dir = root / "fabric"
    write(fabric_dir / "configtx.yaml", shared.configtx)
    for rel, text in shared.bootstrap_inputs.items():
        write(fabric_dir / rel, text)
    for host in plan.hosts:
        d = root / "nodes" / host.name
        write(d / "user-data", user_data[host.name].data, 0o600)
        for role in host.roles:
            if (host.name, role) in env_texts:
                write(d / f"{role.value}.env", env_texts[(host.name, role)])
    cal = root / "caliper"
    for worker_host, text in network_configs.items():
        write(cal / f"networkconfig-{worker_host}.yaml", text, 0o600)
    write(cal / "benchmark.yaml", shared.benchmark)
    write(cal / "caliper.yaml", shared.caliper_yaml)
    mon = root / "monitor"
    for job, text in shared.file_sd.items():
        write(mon / "file_sd" / f"{job}.json", text)
    write(mon / "grafana.env", shared.grafana_env, 0o600)

    write_plan(write, root, plan, nonce, user_data)
    return user_data
