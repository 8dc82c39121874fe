"""Bringing an environment up and down: spec -> plan -> reserve -> render -> create -> ready.

Everything of an environment lives in <build>/environments/<env>/: state.json
(launch.machines.state), the per-environment SSH key (ssh/), the rendered bundle (bundle/),
the provider's files (for qemu: hosts/, run/) and logs/ (kept after `down`).

`up` is a reconcile: a second `up` of a running, ready environment changes nothing; an `up`
after an interrupted one resumes with the same nonce and certificates. On failure (or
Ctrl-C) the hosts this `up` created are rolled back unless keep_on_failure; anything an
interruption leaves behind is in the state file or carries the environment's tag, so
`down` finds it.

`up` never looks at the provider's name: the provider checks its own settings, sizes the
hosts and finds their images (launch.machines.providers.base.Provider). `wait` says how far `up`
goes: "ready" (every readiness layer), "running" (the machines run; for API doubles whose
instances never boot) or "none" (created, not waited for).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fabkit import inputs
from fabkit.errors import ExternalError, FabperfError, InputError
from launch.lifecycle import bootstrap, preflight
from launch.machines import ssh
from launch.machines.providers.base import (
    PROVIDERS,
    DestroyReport,
    HostRequest,
    Leaked,
    Provider,
    ProviderContext,
    check_region,
    check_settings,
    create_all,
    get_provider,
    provider_class,
)
from launch.machines.ready import HostReadiness, Timeouts
from launch.machines.state import (
    REMOVED,
    CorruptState,
    EnvState,
    HostState,
    Phase,
    StateStore,
    check_env_name,
    salvage,
)
from launch.render import bundle as bundle_mod
from launch.render import plan as plan_mod
from launch.render.bundle import Bundle
from launch.render.cloudinit import UserData
from launch.render.plan import Plan
from launch.spec import byof
from launch.spec.byof import ByofSpec, Spec
from launch.spec.common import SpecKind
from launch.spec.providers import LOCAL_DEFAULT
from launch.spec.providers import Provider as SpecProvider

log = logging.getLogger("fabperf.up")

ENVIRONMENTS = "environments"

WAITS = ("ready", "running", "none")


def env_dir(build_dir: Path, name: str) -> Path:
    """<build>/environments/<env>."""
    return build_dir / ENVIRONMENTS / name


def resolve_env(arg: str, build_dir: Path) -> tuple[str, Path]:
    """ENV on the command line: an environment name or the path of its spec file."""
    p = Path(arg)
    if arg.endswith((".yaml", ".yml")) or p.is_file():
        name = byof.load_any(p).name
    else:
        name = check_env_name(arg)
    return name, env_dir(build_dir, name)


# --- up --------------------------------------------------------------------------------

@dataclass(frozen=True)
class UpResult:
    """What `launch up` did."""

    environment: str
    changed: bool
    hosts: tuple[HostState, ...]
    readiness: tuple[HostReadiness, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    waited: str = "ready"               # how far `up` waited (WAITS)
    where: str = ""                     # the provider and its region / cloud


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _provider(name: str, environment: str, edir: Path, store: StateStore,
              options: Mapping[str, object], **ctx: Any) -> Provider:
    return get_provider(name, ProviderContext(environment, edir, store, dict(options), **ctx))


_SETTLED = {"ready": (Phase.READY,), "running": (Phase.RUNNING, Phase.READY),
            "none": tuple(Phase)}


def up(spec_path: Path, *, build_dir: Path, repo_root: Path, only: Sequence[str] = (),
       keep_on_failure: bool = False, timeouts: Timeouts | None = None,
       wait: str = "ready", recreate: bool = False, run_on: str | None = None) -> UpResult:
    """Bring the environment described by ``spec_path`` up (see the module docstring).

    A BYOF spec (launch.spec.byof) brings up its caliper-worker VMs and monitor only, after its
    preflight (launch.lifecycle.preflight) passed; its state is marked with its kind.

    ``recreate`` (with ``only``): destroy those hosts first and create them anew from this
    spec, even when it differs from the one the running hosts were launched with; the hosts
    that stay must get the same user-data from it (else InputError). How `launch compare`
    puts the Fabric hosts on another image while the workers and the monitor keep running.

    ``run_on`` runs the spec on another provider that boots the same images (on_provider:
    `make lab` runs environments/local.yaml in containers where it can).

    The phases, in order: check every input (nothing is written before), recreate, settle
    (nothing to do?), record, reserve, render, create, wait, bootstrap; a failure after
    record rolls back what this `up` created."""
    if wait not in WAITS:
        raise InputError.field(None, "--wait", f"one of {list(WAITS)}", wait)
    if recreate and not only:
        raise InputError.field(None, "--only", "the hosts to recreate", None)
    run = _check_inputs(spec_path, build_dir=build_dir, repo_root=repo_root, only=only,
                        wait=wait, run_on=run_on)
    with run.store.lock():
        before = run.store.load()
        if before is not None and before.hosts and before.provider != run.spec.provider.value:
            raise InputError(f"environment {run.name} runs on {before.provider}, not "
                             f"{run.spec.provider.value}",
                             hint=f"`launch down {run.name}` first, then `launch up` again")
        if before is not None and recreate:
            before = _recreate(run, before)
        if before is not None:
            settled = _settled(run, before, recreate)
            if settled is not None:
                return settled
        nonce = _record(run, before)
        created: list[str] = []
        try:
            _reserve(run)
            bundle = _render(run, nonce)
            _create(run, bundle, created)
            reports = _wait(run, bundle, timeouts)
            _bootstrap_phase(run, bundle, timeouts)
        except BaseException:
            _undo(run, before, created, keep_on_failure)
            raise
        state = run.store.load()
        assert state is not None
        run.timings["total"] = round(time.monotonic() - run.t0, 1)
        return UpResult(run.name, True, tuple(state.hosts[n] for n in run.wanted),
                        tuple(reports), run.timings, (*run.checked, *bundle.warnings),
                        waited=wait, where=run.where)


@dataclass
class _Up:
    """One `up` under way: what its phases share."""

    spec: Spec
    spec_path: Path
    spec_sha: str
    plan: Plan
    provider: Provider
    store: StateStore
    edir: Path
    repo_root: Path
    requests: list[HostRequest]
    wait: str
    checked: tuple[str, ...]
    t0: float
    timings: dict[str, float]
    where: str = ""                     # the provider and its region / cloud

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def wanted(self) -> list[str]:
        return [r.name for r in self.requests]

    def timed(self, phase: str, since: float) -> None:
        self.timings[phase] = round(time.monotonic() - since, 1)


def _check_inputs(spec_path: Path, *, build_dir: Path, repo_root: Path, only: Sequence[str],
                  wait: str, run_on: str | None = None) -> _Up:
    """Every input checked before anything is written (bad input changes nothing): the
    spec, the provider's settings, the plan, a BYOF spec's preflight, the hosts asked."""
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    spec = byof.load_any(spec_path)
    if run_on is not None:
        spec = on_provider(spec, run_on)
    settings = check_settings(spec.provider.value, spec.settings, spec.source)
    edir = env_dir(build_dir, spec.name)
    store = StateStore(edir)
    provider = _provider(spec.provider.value, spec.name, edir, store, settings,
                         cidr=spec.cidr, build_dir=build_dir, repo_root=repo_root)
    located = where(provider)
    log.info("%s: %s", spec.name, located)
    # the plan leaves out the addresses something else holds in the network
    spec = _avoiding_busy(spec, provider, store)
    plan = plan_mod.build(spec, manifest_root=repo_root)
    checked: tuple[str, ...] = ()
    if isinstance(spec, ByofSpec):
        report = preflight.check(spec)
        checked = tuple(f"preflight: {w}" for w in (*report.warnings, *report.skipped))
        timings["preflight"] = round(time.monotonic() - t0, 1)
    return _Up(spec=spec, spec_path=spec_path, spec_sha=_sha256(spec_path), plan=plan,
               provider=provider, store=store, edir=edir, repo_root=repo_root,
               requests=provider.host_requests(plan, only), wait=wait, checked=checked,
               t0=t0, timings=timings, where=located)


def on_provider(spec: Spec, provider: str) -> Spec:
    """The spec with its provider replaced by ``provider``, which must boot the images the
    spec's provider boots (the same bake provider); InputError otherwise."""
    try:
        wanted = SpecProvider(provider)
    except ValueError:
        raise InputError.field(None, "--provider",
                               f"one of {[p.value for p in SpecProvider]}",
                               provider) from None
    if wanted is spec.provider:
        return spec
    if wanted.bakes_with() is None or wanted.bakes_with() != spec.provider.bakes_with():
        raise InputError.field(
            spec.source, "provider", f"a provider whose images {wanted.value} boots "
            f"({wanted.bakes_with()} images) for --provider {wanted.value}",
            spec.provider.value)
    return replace(spec, provider=wanted)


def _recreate(run: _Up, before: EnvState) -> EnvState | None:
    """Remove the hosts to recreate, once the hosts that stay are shown to be what this spec
    makes of them (a trial render beside the bundle: same crypto, same nonce)."""
    wanted = run.wanted
    _check_kept(before, wanted, _trial_user_data(run.spec, run.edir, before.nonce,
                                                 run.repo_root), run.spec_path)
    gone = [n for n in wanted if n in before.hosts]
    log.info("%s: recreating %s", run.name, ", ".join(gone) if gone else
             f"{', '.join(wanted)} (not in the state: created anew)")
    removed = run.provider.destroy_hosts(gone)
    if removed.errors:
        raise ExternalError(f"environment {run.name}: could not remove "
                            f"{', '.join(gone)}:\n  " + "\n  ".join(removed.errors))
    run.store.update(bootstrap={})
    return run.store.load()


def _settled(run: _Up, before: EnvState, recreate: bool) -> UpResult | None:
    """The result when every host asked is already as far as `wait` (and bootstrapped when
    that is waited for): nothing to do. A running environment of another spec version is an
    error."""
    provider, wanted = run.provider, run.wanted
    alive = {h.name for h in before.hosts.values() if provider.alive(h)}
    if recreate:
        alive -= set(wanted)
    elif before.spec_sha256 and before.spec_sha256 != run.spec_sha and alive:
        raise InputError(
            f"environment {run.name} runs from a different version of {run.spec_path} "
            f"(hosts {sorted(alive)} are up)",
            hint=f"`launch down {run.name}` first, then `launch up` again")
    bootstrap = run.plan.bootstrap
    bootstrapped = (run.wait != "ready" or not provider.follows_hosts
                    or bootstrap is None or bootstrap.name not in wanted
                    or before.bootstrap.get("nonce") == before.nonce != "")
    if bootstrapped and all(n in alive and before.hosts[n].phase in _SETTLED[run.wait]
                            for n in wanted):
        log.info("%s: every host is up (%s); nothing to do", run.name, run.wait)
        return UpResult(run.name, False, tuple(before.hosts[n] for n in wanted),
                        timings={"total": round(time.monotonic() - run.t0, 1)},
                        warnings=run.checked, waited=run.wait, where=run.where)
    return None


def _record(run: _Up, before: EnvState | None) -> str | None:
    """The environment's key pair and its state (spec, key, kind) written; the nonce an
    interrupted `up` left, to resume with the same certificates."""
    keys = ssh.ensure_keypair(run.edir / "ssh", f"fabperf-{run.name}")
    if before is None:
        run.store.save(EnvState(environment=run.name, provider=run.spec.provider.value,
                                network={}))
    run.store.forget_removed()
    if run.spec.avoid_addresses:
        # the plan's addresses depend on them: a later `up` plans with the same ones
        cur = run.store.load()
        assert cur is not None
        run.store.update(network={**cur.network,
                                  "avoided": sorted(run.spec.avoid_addresses)})
    run.store.update(spec_path=str(Path(run.spec_path).resolve()), spec_sha256=run.spec_sha,
                     ssh_key=str(keys.private_key), ssh_user=ssh.ADMIN_USER,
                     kind=run.spec.kind.value)
    return before.nonce if before is not None and before.nonce else None


def _reserve(run: _Up) -> None:
    """Addresses before certificates: the plan's addresses are reserved first."""
    t = time.monotonic()
    reserved = run.provider.reserve(run.requests)
    for r in run.requests:
        if r.address and reserved[r.name] != r.address:
            raise ExternalError(f"host {r.name}: the provider reserved "
                                f"{reserved[r.name]} but the plan (and its "
                                f"certificates) use {r.address}")
    run.timed("reserve", t)


def _render(run: _Up, nonce: str | None) -> Bundle:
    t = time.monotonic()
    bundle = bundle_mod.render(run.spec, run.edir / "bundle", nonce=nonce,
                               manifest_root=run.repo_root)
    run.store.update(nonce=bundle.nonce)
    run.timed("render", t)
    return bundle


def _create(run: _Up, bundle: Bundle, created: list[str]) -> None:
    """Every asked host that does not run, created (a bounded number at once); `created`
    names them as they start, for the rollback."""
    t = time.monotonic()
    todo = []
    state = run.store.load()
    hosts = state.hosts if state is not None else {}
    for r in run.requests:
        current = hosts.get(r.name)
        if current is not None and run.provider.alive(current):
            continue
        todo.append((r, bundle.user_data[r.name].data))

    def started(r: HostRequest) -> None:
        log.info("%s: creating %s (%s%s)", run.name, r.name, ",".join(r.roles),
                 f", {r.size}" if r.size else f", {r.memory_mb} MB, {r.cpus} vCPU")
        created.append(r.name)

    create_all(run.provider, todo, on_start=started)
    run.timed("create", t)


def _wait(run: _Up, bundle: Bundle, timeouts: Timeouts | None) -> list[HostReadiness]:
    """As far as `wait` says: every readiness layer, the VMs running, or nothing."""
    t = time.monotonic()
    reports: list[HostReadiness] = []
    if run.wait == "ready":
        log.info("%s: waiting for %s to be ready", run.name, ", ".join(run.wanted))
        reports = run.provider.wait_ready(run.wanted, bundle.nonce, timeouts)
    elif run.wait == "running":
        log.info("%s: waiting for %s to run (not for readiness)", run.name,
                 ", ".join(run.wanted))
        run.provider.wait_running(run.wanted)
    run.timed(f"wait_{run.wait}", t)
    return reports


def _bootstrap_phase(run: _Up, bundle: Bundle, timeouts: Timeouts | None) -> None:
    """The channel bootstrap followed on its node, when that node was part of this `up`."""
    node = run.plan.bootstrap
    if run.wait != "ready" or not run.provider.follows_hosts or node is None \
            or node.name not in run.wanted:
        return
    t = time.monotonic()
    done = _bootstrap(run.provider, run.store, node.name, bundle.nonce, timeouts or Timeouts())
    run.timed("bootstrap", t)
    run.timings["bootstrap_job"] = done.get("seconds", 0)


def _undo(run: _Up, before: EnvState | None, created: list[str],
          keep_on_failure: bool) -> None:
    """After a failure or an interruption: remove what this `up` created (unless
    keep_on_failure), and the environment's secrets when nothing of it is left."""
    if keep_on_failure:
        log.warning("%s: keeping what failed (--keep-on-failure); "
                    "`launch down %s` removes it", run.name, run.name)
        return
    _rollback(run.provider, run.store, before, created, run.name)
    if before is None or not before.hosts:
        # nothing of the environment is left: its secrets go too
        for sub in ("bundle", "ssh"):
            shutil.rmtree(run.edir / sub, ignore_errors=True)


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _trial_user_data(spec: Spec, edir: Path, nonce: str,
                     repo_root: Path) -> Mapping[str, UserData]:
    """Every host's user-data as this spec renders it on a copy of the current bundle."""
    with tempfile.TemporaryDirectory(prefix=".trial-", dir=edir) as tmp:
        trial = Path(tmp) / "bundle"
        if (edir / "bundle").is_dir():
            shutil.copytree(edir / "bundle", trial, symlinks=True)
        return dict(bundle_mod.render(spec, trial, nonce=nonce or None,
                                      manifest_root=repo_root).user_data)


def _check_kept(before: EnvState, recreated: Sequence[str], user_data: Mapping[str, Any],
                spec_path: Path) -> None:
    """The hosts a recreate keeps must be what the new spec would make of them."""
    changed = sorted(n for n, h in before.hosts.items()
                     if n not in recreated and h.user_data_sha256 and n in user_data
                     and _sha256_bytes(user_data[n].data) != h.user_data_sha256)
    if changed:
        raise InputError(f"{spec_path}: the change reaches hosts that keep running "
                         f"({', '.join(changed)} would get other user-data)",
                         hint="recreate them too, or `launch down` and `launch up`")


def _bootstrap(provider: Provider, store: StateStore, host: str, nonce: str,
               timeouts: Timeouts) -> dict[str, Any]:
    """The last readiness layer: the channel bootstrap on its node (relaying its progress)."""
    state = store.load()
    assert state is not None
    run = bootstrap.ssh_runner(provider.target(state.hosts[host]))
    log.info("%s: channel bootstrap on %s", state.environment, host)
    done = bootstrap.wait(run, host, nonce, timeout=timeouts.bootstrap, poll=timeouts.poll,
                          progress=lambda line: log.info("%s: %s", host, line))
    store.update(bootstrap={**bootstrap.summary(done), "host": host})
    return done


def _rollback(provider: Provider, store: StateStore, before: EnvState | None,
              created: Sequence[str], name: str) -> None:
    """Undo this `up`: everything when it started the environment, else its own hosts.

    A failed or interrupted rollback (a second Ctrl-C, SIGTERM) says how to finish it: the
    state still lists what is left, and `launch down` removes it."""
    try:
        if before is None or not before.hosts:
            log.warning("%s: rolling back (removing the environment)", name)
            report = provider.destroy()
        elif created:
            log.warning("%s: rolling back hosts %s", name, ", ".join(created))
            report = provider.destroy_hosts(created)
        else:
            return
        if report.errors:
            log.error("%s: rollback incomplete (%s); `launch down %s` removes what is left",
                      name, "; ".join(report.errors)[:2000], name)
    except KeyboardInterrupt:
        log.error("%s: rollback interrupted; what is left is in %s and carries the "
                  "environment's tags: `launch down %s` removes it", name, store.path, name)
        raise
    except Exception as exc:  # the original error matters more; the state still lists all
        log.error("%s: rollback incomplete (%s); `launch down %s` removes what is left",
                  name, exc, name)


def _avoiding_busy(spec: Spec, provider: Provider, store: StateStore) -> Spec:
    """The spec with the addresses something else holds in its network (the provider says)
    left out of the plan, plus those an earlier `up` of this environment left out (so the
    plan, and the certificates, stay what they were)."""
    busy_of = getattr(provider, "addresses_in_use", None)
    if not callable(busy_of):
        return spec
    try:
        before = store.load()
    except CorruptState:
        before = None
    avoided = before.network.get("avoided", []) if before is not None else []
    busy = set(busy_of()) | {a for a in avoided if isinstance(a, str)}
    return replace(spec, avoid_addresses=frozenset(busy)) if busy else spec


# --- down / status ---------------------------------------------------------------------

@dataclass(frozen=True)
class DownResult:
    """What `launch down` removed, and where it looked."""

    environment: str
    report: DestroyReport
    known: bool
    where: tuple[str, ...] = ()         # each provider asked, with its region / cloud
    warnings: tuple[str, ...] = ()


def _existing(arg: str, build_dir: Path) -> tuple[str, Path, StateStore, EnvState | None]:
    name, edir = resolve_env(arg, build_dir)
    store = StateStore(edir)
    return name, edir, store, store.load()


def _spec_arg(arg: str) -> Path | None:
    """ENV given as the path of its spec file (resolve_env's rule)."""
    return Path(arg) if arg.endswith((".yaml", ".yml")) or Path(arg).is_file() else None


def _recorded_provider(arg: str, name: str, edir: Path, store: StateStore,
                       state: EnvState | None,
                       overrides: Mapping[str, object] | None = None) -> Provider:
    """The provider of an existing environment: from its state, else from its spec file
    (a lost state file: the provider finds the resources by their tags), else the local
    default (launch.spec.providers.LOCAL_DEFAULT)."""
    if state is not None:
        subnet = state.network.get("subnet")
        return _provider(state.provider, name, edir, store, dict(overrides or {}),
                         cidr=str(subnet) if subnet else None)
    spec_path = _spec_arg(arg)
    if spec_path is not None and spec_path.is_file():
        spec = byof.load_any(spec_path)
        settings = check_settings(spec.provider.value, spec.settings, spec.source)
        return _provider(spec.provider.value, name, edir, store,
                         {**settings, **(overrides or {})}, cidr=spec.cidr)
    return _provider(LOCAL_DEFAULT.value, name, edir, store, {})


def where(provider: Provider) -> str:
    """Where a provider makes its machines ("aws eu-west-1"), for the user to read."""
    describe = getattr(provider, "where", None)
    return str(describe()) if callable(describe) else str(getattr(provider, "name", "?"))


def down(arg: str, *, build_dir: Path, spec_path: Path | None = None,
         region: str | None = None) -> DownResult:
    """Remove everything of an environment; idempotent. An environment never seen: exit 2.

    With its state: what the state lists plus what the provider's tags find. With a damaged
    or lost state: the provider and settings come from what the damaged file still says,
    the bundle's plan.json, the spec (``spec_path``, ENV given as a spec, or the spec_path
    the damaged file names) and ``region``; when they do not name the provider every
    provider that can be asked is asked. Whatever the tags find is removed; when nothing
    is found and a provider could not be asked (no region, no credentials), InputError
    says what to point it at, and the damaged file is kept: `down` never answers
    success while the environment may still run somewhere it did not look."""
    name, edir = resolve_env(arg, build_dir)
    # every option checked before anything is asked or removed
    pointed = _pointed_spec(spec_path or _spec_arg(arg), name)
    overrides: dict[str, object] = {"region": check_region(region)} if region else {}
    store = StateStore(edir)
    damaged: CorruptState | None = None
    try:
        state = store.load()
    except CorruptState as exc:
        state, damaged = None, exc
    try:
        if state is not None:
            provider = _recorded_provider(arg, name, edir, store, state, overrides)
            with store.lock():
                report = _destroy(name, provider, store)
                _forget_secrets(edir)
            return DownResult(name, report, True, (where(provider),))
        return _down_unrecorded(name, edir, damaged, pointed, overrides)
    finally:
        with contextlib.suppress(OSError):
            (edir / ".lock").unlink(missing_ok=True)


def _destroy(name: str, provider: Provider, store: StateStore) -> DestroyReport:
    report = provider.destroy()
    if report.errors:
        raise ExternalError(f"environment {name}: could not remove everything:\n  "
                            + "\n  ".join(report.errors),
                            hint=f"the state file {store.path} still lists them; "
                                 f"`launch down {name}` again")
    return report


def _forget_secrets(edir: Path) -> None:
    """Secrets of the environment go with it; logs stay for post-mortems."""
    for sub in ("bundle", "ssh"):
        shutil.rmtree(edir / sub, ignore_errors=True)


def _pointed_spec(spec_path: Path | None, name: str) -> Spec | None:
    """The spec `down` is pointed at (`--from`, or ENV given as a spec): read through the
    input boundary, and it must be the environment's."""
    if spec_path is None:
        return None
    spec = byof.load_any(spec_path)
    if spec.name != name:
        raise InputError.field(spec.source, "name", f"the environment {name}", spec.name)
    return spec


def _down_unrecorded(name: str, edir: Path, damaged: CorruptState | None,
                     pointed: Spec | None, overrides: Mapping[str, object]) -> DownResult:
    """`down` without a usable state (see down)."""
    store = StateStore(edir, tolerate_damage=True)
    what = "damaged" if damaged is not None else "lost"
    if damaged is None and not edir.exists() and pointed is None and not overrides:
        raise InputError(f"unknown environment {name!r}: nothing recorded in {edir}",
                         hint=f"`launch down {name} --from ENV.yaml` (or `--region REGION`) "
                              "looks for it by its tags; when its build directory is gone, "
                              "`launch gc` finds what it left")
    if damaged is not None:
        log.warning("%s; looking for the environment by its tags", damaged.message)
    candidates, known = _where_it_ran(name, edir, pointed, overrides)
    found: list[tuple[Provider, list[Leaked]]] = []
    asked: list[str] = []
    not_asked: list[str] = []
    for pname, settings, cidr in candidates:
        try:
            provider = _provider(pname, name, edir, store, settings, cidr=cidr)
            leaked = provider.find_leaked()
        except FabperfError as exc:
            if known:
                raise InputError(
                    f"environment {name}: its state is {what}, it ran on {pname}, and "
                    f"{pname} cannot be asked: {exc.message}",
                    hint=f"point it: `launch down {name} --from ENV.yaml` (the spec it was "
                         f"launched from) or `--region REGION`") from exc
            not_asked.append(f"{pname} ({exc.message.splitlines()[0]})")
            continue
        asked.append(where(provider))
        if leaked or known:
            found.append((provider, leaked))
    if not found:
        if not_asked:
            raise InputError(
                f"environment {name}: its state is {what} and does not say where it ran; "
                f"nothing of it was found on {', '.join(asked) or 'no provider'}, and these "
                f"could not be asked: {'; '.join(not_asked)}",
                hint=f"point it: `launch down {name} --from ENV.yaml` (the spec it was "
                     f"launched from) or `--region REGION` (AWS); the damaged state "
                     f"{store.path} is kept" if damaged else
                     f"point it: `launch down {name} --from ENV.yaml` or `--region REGION`")
        if damaged is None and not edir.exists():
            raise InputError(f"unknown environment {name!r}: nothing recorded in {edir} and "
                             f"nothing carries its tag on {', '.join(asked)}")
    removed: list[str] = []
    leaked_all: list[Leaked] = []
    with store.lock():
        for provider, leaked in found:
            report = _destroy(name, provider, store)
            removed += report.removed
            leaked_all += list(report.leaked_found) or leaked
        _forget_secrets(edir)
        if damaged is not None and store.exists():
            store.remove()
            removed.append(f"{store.path} (damaged)")
        if len(found) == 1:
            provider = found[0][0]
            store.mark_removed(str(getattr(provider, "name", "")),
                               dict(getattr(provider, "settings", {}) or {}))
    warnings = tuple(f"not asked: {x}" for x in not_asked)
    return DownResult(name, DestroyReport(tuple(removed), tuple(leaked_all)),
                      damaged is not None, tuple(asked), warnings)


def _where_it_ran(name: str, edir: Path, spec: Spec | None,
                  overrides: Mapping[str, object]
                  ) -> tuple[list[tuple[str, dict[str, object], str | None]], bool]:
    """(provider, settings, cidr) to ask, and whether the provider is known: from the spec,
    else from what the damaged state and the bundle's plan.json still say, else every
    provider (settings: the overrides only)."""
    saved = salvage(edir / "state.json")
    if spec is None and saved.spec_path:
        try:               # the spec the damaged state names, when it is still there
            spec = _pointed_spec(Path(saved.spec_path), name)
        except InputError as exc:
            log.warning("the spec the damaged state names is no help: %s", exc.message)
    if spec is not None:
        settings = check_settings(spec.provider.value, spec.settings, spec.source)
        explicit = dict(spec.settings or {})
        return [(spec.provider.value, {**settings, **saved.settings, **explicit,
                                       **overrides}, spec.cidr)], True
    if saved.provider not in PROVIDERS:
        saved = replace(saved, provider=_plan_provider(edir))
    if saved.provider not in PROVIDERS:
        # an environment `down` already removed: where it ran
        saved = salvage(edir / REMOVED)
    if saved.provider in PROVIDERS:
        return [(saved.provider, {**saved.settings, **overrides}, None)], True
    # every provider that makes machines (`none` renders for machines it does not run)
    return [(p, dict(overrides), None) for p in PROVIDERS
            if getattr(provider_class(p), "follows_hosts", True)], False


def _plan_provider(edir: Path) -> str:
    """The provider the bundle's plan.json names ("" when there is none to read)."""
    path = edir / "bundle" / "plan.json"
    try:
        doc = inputs.load_json_file(path, what="plan") if path.is_file() else None
    except InputError:
        return ""
    value = doc.get("provider") if isinstance(doc, Mapping) else None
    return value if isinstance(value, str) and value in PROVIDERS else ""


@dataclass(frozen=True)
class HostStatus:
    """One row of `launch status`."""

    name: str
    address: str
    roles: tuple[str, ...]
    phase: str
    alive: bool
    pid: int | None
    ports: Mapping[str, int]
    error: str
    resources: Mapping[str, str] = field(default_factory=dict)


def recorded(arg: str, *, build_dir: Path) -> EnvState:
    """The recorded state of an environment, read from disk only (no machine, no cloud is
    asked); unknown environment: exit 2."""
    name, edir, _, state = _existing(arg, build_dir)
    if state is None:
        raise InputError(f"unknown environment {name!r}: no state in {edir}",
                         hint="`launch up ENV.yaml` creates it")
    return state


def status(arg: str, *, build_dir: Path) -> tuple[EnvState, list[HostStatus]]:
    """The recorded state with a live check of every host; unknown environment: exit 2."""
    name, edir, store, _ = _existing(arg, build_dir)
    state = recorded(arg, build_dir=build_dir)
    provider = _recorded_provider(arg, name, edir, store, state)
    rows = [HostStatus(h.name, h.address, h.roles, h.phase.value, provider.alive(h), h.pid,
                       dict(h.ports), h.error.splitlines()[0] if h.error else "",
                       dict(h.resources))
            for h in sorted(state.hosts.values(), key=_address_key)]
    return state, rows


@dataclass(frozen=True)
class NodeStatus:
    """One Fabric node of `launch status`: its role, state and height on one channel."""

    node: str
    role: str
    channel: str
    state: str
    height: int | None


def channel_status(state: EnvState, *, build_dir: Path) -> tuple[str, list[NodeStatus]]:
    """Every Fabric node's channel height, asked of the bootstrap job on its node
    ("" and no rows when the environment has no bootstrapped network to ask)."""
    if state.kind == SpecKind.BYOF:
        return ("byof: the user's network (fabperf does not ask it; `launch bench` reads "
                "its operations metrics)"), []
    host = state.bootstrap.get("host")
    hs = state.hosts.get(host) if host else None
    if hs is None or state.bootstrap.get("nonce") != state.nonce:
        return "not bootstrapped", []
    edir = env_dir(build_dir, state.environment)
    provider = _provider(state.provider, state.environment, edir, StateStore(edir), {})
    if not provider.alive(hs):
        return f"bootstrap node {host} is down", []
    try:
        found = bootstrap.heights(bootstrap.ssh_runner(provider.target(hs)))
    except ExternalError as exc:
        return f"cannot ask {host}: {exc.message.splitlines()[0]}", []
    rows = [NodeStatus(node, str(info.get("role", "")), channel, str(info.get("status", "")),
                       info.get("height"))
            for channel, nodes in sorted(found.items()) for node, info in nodes.items()]
    return "bootstrapped", rows


def _address_key(h: HostState) -> tuple[int, str]:
    try:
        return int(ipaddress.ip_address(h.address)), h.name
    except ValueError:
        return 0, h.name


def target(arg: str, host: str, *, build_dir: Path) -> ssh.Target:
    """Where `launch ssh ENV HOST` connects."""
    name, edir, _, state = _existing(arg, build_dir)
    if state is None:
        raise InputError(f"unknown environment {name!r}: no state in {edir}")
    h = state.hosts.get(host)
    if h is None:
        raise InputError.field(None, "HOST", f"one of {sorted(state.hosts)}", host)
    return _recorded_provider(arg, name, edir, StateStore(edir), state).target(h)
