"""`launch render`: the whole bundle of an environment, laid out as ARCHITECTURE.md says.

    DIR/crypto/...              cryptogen-layout tree (kept across re-renders unless rotate)
    DIR/fabric/configtx.yaml    + bootstrap.json, chaincode/<channel>/<name>/*.json
    DIR/nodes/<host>/user-data  exactly what the instance gets (gzip when over budget)
    DIR/nodes/<host>/<role>.env
    DIR/caliper/                networkconfig-<host>.yaml per worker VM, benchmark.yaml,
                                caliper.yaml
    DIR/monitor/                file_sd/<job>.json, grafana.env
    DIR/plan.json               hosts, roles, addresses, image ids, user-data sizes

`render` is a transaction on DIR:

- an exclusive lock (DIR's parent/.DIR.lock, flock): a second render into the same DIR
  while one runs fails at once with exit 2, it does not wait (two renders at once would
  both issue CAs; the operator should decide which one they meant);
- everything is rendered into a staging directory beside DIR (.DIR.render-PID). An
  existing crypto tree that this render changes is hard-linked into it, never moved:
  crypto.generate writes every changed file as a new inode, so the old bundle's files are
  never touched, and the old DIR stays complete until the swap. A crypto tree this render
  does not change (crypto.up_to_date: the common re-render) is read where it is and joins
  the new bundle in the swap itself (linking 4,400 files costs seconds on a busy disk);
- the swap exchanges staging and DIR atomically (renameat2 RENAME_EXCHANGE; two renames
  with SIGINT/SIGTERM/SIGHUP blocked where the filesystem lacks it), then the old tree
  is removed;
- staging (or a half-swapped DIR) left by a process that died (SIGKILL, power loss) is
  swept, or restored as DIR, by the next render under the lock;
- modes are explicit whatever the umask: directories 0755, public files 0644, private keys,
  user-data and other secrets 0600.

Bad input (a spec error, a user-data over budget) therefore leaves DIR as it was.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fabkit.errors import InputError
from launch.render import caliper, cloudinit, crypto, fabric, monitor
from launch.render import plan as planner
from launch.render.cloudinit import File, UserData
from launch.render.plan import CaliperWorker, Host, Plan
from launch.spec.contract import (
    BOOTSTRAP_DIR,
    CALIPER_DIR,
    CALIPER_USER,
    CALIPER_WORKER_BENCHMARK,
    CALIPER_WORKER_ENV,
    CHAINCODE_ENV,
    FABRIC_USER,
    GRAFANA_ENV,
    LAUNCH_JSON,
    PROMETHEUS_FILE_SD,
    Role,
    env_file,
)
from launch.spec.env import EnvSpec

FABRIC_OWNER = f"{FABRIC_USER}:{FABRIC_USER}"
CALIPER_OWNER = f"{CALIPER_USER}:{CALIPER_USER}"


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


class _Reader:
    """Reads each crypto file once, as text (CA certificates are shared by every node of
    an organisation and land in many hosts' user-data)."""

    def __init__(self) -> None:
        self.cache: dict[str, str] = {}

    def __call__(self, path: str | Path) -> str:
        key = os.fspath(path)
        text = self.cache.get(key)
        if text is None:
            with open(key, encoding="ascii") as f:  # PEM and YAML: ASCII only
                text = self.cache[key] = f.read()
        return text


def _yaml(doc: object) -> str:
    return cloudinit.yaml_text(doc)


def _json(doc: object) -> str:
    return json.dumps(doc, indent=2) + "\n"


def _json_lines(items: list) -> str:
    """A JSON list with one item per line: readable, and C-encoded (file_sd of big labs)."""
    return "[\n" + ",\n".join(json.dumps(i, sort_keys=True) for i in items) + "\n]\n"


@dataclass(frozen=True)
class _Shared:
    """What several hosts' user-data draw from, computed once per render."""

    orgs: tuple[crypto.OrgCrypto, ...]
    crypto_root: Path
    read: _Reader
    hosts_file: str
    configtx: str
    bootstrap_inputs: Mapping[str, str | bytes]
    caliper_yaml: str
    benchmark: str
    network_configs: Mapping[str, str]   # worker host -> network config
    file_sd: Mapping[str, str]
    grafana_env: str
    env_texts: Mapping[tuple[str, Role], str]


def _material_files(materials: list[fabric.Material], read: _Reader, owner: str) -> list[File]:
    return [File(m.dest, read(m.source), owner, "0600" if m.secret else "0644")
            for m in materials]


def _worker_files(plan: Plan, host: Host, worker: CaliperWorker, network_config: str,
                  caliper_yaml: str) -> list[File]:
    """A Caliper worker VM's files: its network config (0600: a client key), Caliper's
    runtime config, the worker bench config (its push observer) and worker.env."""
    return [
        File(f"{CALIPER_DIR}/networkconfig.yaml", network_config, CALIPER_OWNER, "0600"),
        File(f"{CALIPER_DIR}/caliper.yaml", caliper_yaml, CALIPER_OWNER),
        File(CALIPER_WORKER_BENCHMARK, caliper.worker_benchmark_text(plan), CALIPER_OWNER),
        File(CALIPER_WORKER_ENV, cloudinit.env_text(
            caliper.worker_env(plan, worker), title="Caliper remote workers",
            environment=plan.spec.name, host=host.name)),
    ]


def _host_files(plan: Plan, host: Host, s: _Shared, nonce: str) -> list[File]:
    spec = plan.spec
    files = [
        File("/etc/hosts", s.hosts_file),
        File(LAUNCH_JSON, _json({"environment": spec.name, "host": host.name, "nonce": nonce,
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
        files += _worker_files(plan, host, worker, s.network_configs[host.name], s.caliper_yaml)
    if Role.MONITOR in host.roles:
        files += [File(f"{PROMETHEUS_FILE_SD}/{job}.json", text)
                  for job, text in s.file_sd.items()]
        files.append(File(GRAFANA_ENV, s.grafana_env, "root:root", "0600"))
        # No Caliper manager files: `launch bench` runs the manager on the first worker VM
        # (launch.bench.run), which has its network config; the monitor holds no Fabric key.
    return cloudinit.dedupe(files)


class _Writer:
    """Writes bundle files; remembers the directories it made (mkdir is slow on some disks)."""

    def __init__(self) -> None:
        self.made: set[Path] = set()

    def __call__(self, path: Path, data: bytes | str, mode: int = 0o644) -> None:
        # No fsync: a bundle is reproducible from the spec; the staging swap gives atomicity.
        raw = data.encode() if isinstance(data, str) else data
        if path.parent not in self.made:
            path.parent.mkdir(parents=True, exist_ok=True)  # 0755: render sets umask 022
            self.made.add(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir())
                                              and not (out / "plan.json").is_file())):
        raise InputError.field(None, "--out", "a new directory or an earlier bundle "
                               "(with plan.json)", str(out))


def render(spec: EnvSpec, out: Path, *, rotate: bool = False, nonce: str | None = None,
           manifest_root: Path | None = None) -> Bundle:
    """Render the environment into `out` and return the plan and every host's user-data
    (already within the provider's size budget). Crypto under out/crypto is reused unless
    `rotate`. `nonce` (default: random) is the readiness token of this launch.
    A transaction on `out`: see the module docstring."""
    out = Path(out)
    _check_out(out)
    plan = planner.build(spec, manifest_root=manifest_root)
    nonce = nonce or secrets.token_hex(16)
    with _transaction(out) as staging:
        old_crypto = out / "crypto"
        reuse = (not rotate and old_crypto.is_dir()
                 and crypto.up_to_date(fabric.crypto_orgs(plan), old_crypto))
        if old_crypto.is_dir() and not rotate and not reuse:
            _link_tree(old_crypto, staging / "crypto")
        result = _render_into(plan, staging, nonce, rotate, out / "monitor" / "grafana.env",
                              crypto_root=old_crypto if reuse else None)
        _swap(staging, out, crypto_from=old_crypto if reuse else None)
    return Bundle(out=out, plan=plan, nonce=nonce, user_data=result)


# --- the transaction --------------------------------------------------------------------

_STAGING = (".render-", ".old-")


@contextmanager
def _transaction(out: Path) -> Iterator[Path]:
    """One render of `out`: under its lock and a fixed umask, earlier staging swept, a fresh
    staging folder yielded (the caller renders into it and swaps it in), removed on any
    failure or signal."""
    with _umask(0o022), _locked(out):
        _sweep(out)
        _check_out(out)  # (a swept staging may have restored out)
        staging = out.parent / f".{out.name}.render-{os.getpid()}"
        try:
            staging.mkdir()
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    """Modes of what render creates do not depend on the caller's umask."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold out's render lock (the parent's .<out>.lock); busy -> InputError at once."""
    lock = out.parent / f".{out.name}.lock"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError.field(None, "--out", "a directory that can be created",
                               f"{out} ({exc.strerror})") from None
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError.field(None, "--out", "a directory whose parent is writable",
                                   f"{out} ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise InputError(f"{out}: another `launch render` is writing this bundle "
                             f"(pid {holder or '?'} holds {lock})",
                             hint="wait for it to finish, or render into another --out"
                             ) from None
        try:
            # The previous holder may have removed the lock file after we opened it.
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        lock.unlink(missing_ok=True)  # before unlocking: a waiter then retries
        os.close(fd)


def _sweep(out: Path) -> None:
    """Under the lock, every staging directory of `out` belongs to a dead render: remove
    it, and if `out` itself is missing (death between the two renames of a swap), restore
    the newest complete one (an old tree, else a rendered staging with its plan.json)."""
    prefix = f".{out.name}"
    leftovers = sorted((p for p in out.parent.glob(f"{prefix}.*-*")
                        if any(p.name.startswith(prefix + k) for k in _STAGING)),
                       key=lambda p: p.stat().st_mtime, reverse=True)
    if out.is_dir() and (out / "plan.json").is_file() and not (out / "crypto").exists():
        # killed after an unchanged crypto tree joined the new bundle, before the exchange
        done = next((p for p in leftovers if (p / "plan.json").is_file()
                     and (p / "crypto").is_dir()), None)
        if done is not None:
            os.rename(out, out.parent / f"{prefix}.old-sweep")
            leftovers.append(out.parent / f"{prefix}.old-sweep")
            os.rename(done, out)
            leftovers.remove(done)
    if not out.exists():
        for p in leftovers:
            if (p / "plan.json").is_file() and (p / "crypto").is_dir():
                os.rename(p, out)
                leftovers.remove(p)
                break
    for p in leftovers:
        shutil.rmtree(p, ignore_errors=True)


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of src into a new tree dst (directories 0755, as crypto makes
    them). crypto.generate replaces files by new inodes, so src is never changed."""
    for dirpath, _, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target = dst if rel == "." else dst / rel
        os.mkdir(target, 0o755)
        for name in filenames:
            os.link(os.path.join(dirpath, name), target / name, follow_symlinks=False)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where it is not supported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap(staging: Path, out: Path, *, crypto_from: Path | None = None) -> None:
    """Make staging the bundle at `out`; the old bundle is removed afterwards.

    ``crypto_from`` (out/crypto, unchanged by this render) joins staging first, in the
    same window with the signals blocked: only SIGKILL or a power loss can stop the swap
    between the two renames, and the next render's sweep then completes it."""
    trash = out.parent / f".{out.name}.old-{os.getpid()}"
    signals = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        if crypto_from is not None:
            os.rename(crypto_from, staging / "crypto")
        if not out.exists():
            os.rename(staging, out)
            return
        if _exchange(staging, out):
            os.rename(staging, trash)  # staging now holds the old bundle
        else:
            os.rename(out, trash)
            os.rename(staging, out)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    shutil.rmtree(trash, ignore_errors=True)


def _write_plan(write: _Writer, root: Path, plan: Plan, nonce: str,
                user_data: dict[str, UserData]) -> None:
    """plan.json: the plan, the nonce and each host's user-data size and digest."""
    doc = plan.to_json()
    doc["nonce"] = nonce
    for entry in doc["hosts"]:
        ud = user_data[entry["name"]]
        entry["user_data"] = {"bytes": ud.size, "raw_bytes": ud.raw_size, "gzip": ud.gzipped,
                              "sha256": hashlib.sha256(ud.data).hexdigest()}
    write(root / "plan.json", _json(doc))


def _render_into(plan: Plan, root: Path, nonce: str, rotate: bool, old_grafana: Path,
                 crypto_root: Path | None = None) -> dict[str, UserData]:
    """Render into ``root``; ``crypto_root``: an up-to-date crypto tree to read instead of
    generating root/crypto (it joins the bundle at the swap)."""
    spec = plan.spec
    orgs = fabric.crypto_orgs(plan)
    if crypto_root is None:
        crypto_root = root / "crypto"
        crypto.generate(orgs, crypto_root, rotate=rotate)
    read = _Reader()

    env_texts: dict[tuple[str, Role], str] = {}
    for node in (*plan.orderers, *plan.peers):
        env_texts[(node.host, node.role)] = cloudinit.env_text(
            fabric.node_env(plan, node), title=f"Fabric {node.role.value} {node.fqdn}",
            environment=spec.name, host=node.host)
    network_configs = {w.host: _yaml(caliper.network_config(plan, w, orgs, crypto_root, read))
                       for w in plan.workers}
    shared = _Shared(
        orgs=orgs, crypto_root=crypto_root, read=read,
        hosts_file=cloudinit.hosts_text(plan),
        configtx=_yaml(fabric.configtx(plan, orgs, crypto_root)),
        bootstrap_inputs=fabric.bootstrap_inputs(plan, orgs, crypto_root),
        caliper_yaml=_yaml(caliper.caliper_yaml(plan)),
        benchmark=_yaml(caliper.benchmark(plan)),
        network_configs=network_configs,
        file_sd={job: _json_lines(groups) for job, groups in monitor.file_sd(plan).items()},
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

    write = _Writer()
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
    for host, text in network_configs.items():
        write(cal / f"networkconfig-{host}.yaml", text, 0o600)
    write(cal / "benchmark.yaml", shared.benchmark)
    write(cal / "caliper.yaml", shared.caliper_yaml)
    mon = root / "monitor"
    for job, text in shared.file_sd.items():
        write(mon / "file_sd" / f"{job}.json", text)
    write(mon / "grafana.env", shared.grafana_env, 0o600)

    _write_plan(write, root, plan, nonce, user_data)
    return user_data
