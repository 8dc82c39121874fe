"""`launch bench ENV`: run the spec's rounds with Caliper spread over the worker VMs.

    check   the environment is up (every host ready) and bootstrapped (the bootstrap node
            holds contract.BOOTSTRAP_DONE); else InputError (exit 2) saying to run `launch up`
    clean   the Pushgateway's caliper-workers groups of earlier runs are deleted
    workers caliper-worker@1..N restarted on every worker VM (remote workers over MQTT to
            the monitor's Mosquitto; each VM's network config names its own gateway peer)
    manager `caliper launch manager --caliper-flow-only-test` as a transient systemd unit on
            the first worker VM, with this run's benchmark config (workers.number = all
            worker processes); its journal is polled for registration, rounds, progress
    watch   registration within Timeouts.register, else the workers that never came are
            named (unit state on each VM, connections Mosquitto logged per address);
            a progress line per poll; Ctrl-C stops the manager and the workers and goes on
            to save what was measured (status "interrupted"), then re-raises
    collect report.html, the manager's and workers' logs, Prometheus' answers per round
            window, a TSDB snapshot (admin API) as one archive, configs without private
            keys, versions -> launch.bench.collect -> results/<env>/<stamp>/

Why the manager runs on the first worker VM: the monitor image has no Node.js, while every
worker VM already has the pinned Caliper CLI bound at bake time, and the manager must be
the same Caliper as the workers. It costs little CPU: it sends a few MQTT messages per
round, merges the workers' 5 s updates and runs its Prometheus resource queries once per
round (a few % of one core at the rates a lab reaches; its process is in the `caliper`
process group of that VM, so the worker-VM CPU the verdict reads includes it - the safe
side for a load-generator verdict).

The steps live in their own modules: lab (check), control (workers, manager), watch,
gather and collect (the bundle); this module runs them in order. Every remote command goes
through a Door (launch.bench.door); unit tests give a fake one. Clocks: round windows are
the manager VM's journal times, Prometheus' are the monitor's; the lab's VMs share the host
clock (qemu) or NTP (clouds).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from fabkit.atomic import write_atomic
from fabkit.errors import ExternalError, InputError
from launch.bench import collect, report
from launch.bench.control import RUN_ROOT, start_manager, start_workers, stop_manager, stop_workers
from launch.bench.door import Door, SshDoor
from launch.bench.gather import fabperf_version, gather, safely
from launch.bench.lab import (
    Lab,
    byof_notes,
    check_bootstrapped,
    check_byof,
    open_lab,
    recorded_spec,
    resolve_workers,
)
from launch.bench.prometheus import Prometheus, Pushgateway
from launch.bench.results import Summary
from launch.bench.watch import Timeouts, watch
from launch.render import caliper as caliper_cfg
from launch.spec.byof import Spec
from launch.spec.common import Round
from launch.spec.thresholds import Thresholds

log = logging.getLogger("fabperf.bench")


@dataclass(frozen=True)
class Options:
    """What `launch bench` was asked."""

    rounds: tuple[str, ...] = ()          # labels, in spec order; empty: all
    tps: int | None = None                # every selected round at this fixed rate
    duration: int | None = None           # every selected round for this many seconds
    workers_per_vm: int | None = None     # default: the spec's caliper.workers.processes
    thresholds: Thresholds = field(default_factory=Thresholds)
    timeouts: Timeouts = field(default_factory=Timeouts)
    threshold_pairs: tuple[str, ...] = ()  # --threshold NAME=VALUE (bench() applies them)


@dataclass(frozen=True)
class BenchResult:
    """What a run produced."""

    bundle: Path
    summary: Summary
    interrupted: bool


def select_rounds(spec: Spec, options: Options) -> tuple[Round, ...]:
    """The spec's rounds to run, with --tps / --duration applied."""
    rounds = spec.caliper.rounds
    labels = [r.label for r in rounds]
    for label in options.rounds:
        if label not in labels:
            raise InputError.field(spec.source, "--round", f"one of the spec's rounds {labels}",
                                   label)
    chosen = [r for r in rounds if not options.rounds or r.label in options.rounds]
    out = []
    for r in chosen:
        if options.tps is not None:
            r = replace(r, tps=options.tps, rate_control=None)
        if options.duration is not None:
            r = replace(r, duration=options.duration, tx_number=None)
        out.append(r)
    return tuple(out)


def _stamp(now: float) -> str:
    return _dt.datetime.fromtimestamp(now, tz=_dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def run(lab: Lab, door: Door, options: Options, *, results_root: Path,
        on_progress: Callable[[str], None] = lambda _: None,
        prom: Prometheus | None = None, pushgateway: Pushgateway | None = None,
        clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
        local_versions: Callable[[], Mapping[str, Any]] = fabperf_version) -> BenchResult:
    """One benchmark run on a checked Lab (see the module docstring). Ctrl-C: everything
    is stopped, what was measured is saved, then KeyboardInterrupt is raised again."""
    t_begin = clock()
    prom = prom or Prometheus(lab.prometheus_url)
    pushgateway = pushgateway or Pushgateway(lab.pushgateway_url)
    byof = lab.byof
    bootstrap = check_byof(prom, byof) if byof else check_bootstrapped(door, lab)
    rounds = select_rounds(lab.plan.spec, options)
    stamp = _stamp(t_begin)
    bench = caliper_cfg.benchmark(lab.plan, rounds=rounds, workers=lab.total_workers,
                                  run_id=stamp)
    bench_text = yaml.safe_dump(bench, sort_keys=False)
    round_channels = caliper_cfg.round_channels(lab.plan, bench)
    run_dir = f"{RUN_ROOT}/{stamp}"
    notes: list[str] = byof_notes(lab, bootstrap) if byof else []
    expected = sum(2 * (r.duration or (r.tx_number or 0) / max(r.tps, 1)) for r in rounds) \
        + options.timeouts.round_slack * max(1, len(rounds)) + options.timeouts.register
    status = "complete"
    interrupted = False
    failure: ExternalError | None = None
    mlog: report.ManagerLog | None = None
    since = t_begin
    on_progress(f"{lab.name}: {len(rounds)} rounds, {lab.total_workers} workers on "
                f"{len(lab.workers)} VMs, manager on {lab.manager_host}")
    try:
        wiped = safely(notes, "Pushgateway clean-up", pushgateway.wipe)
        if wiped:
            log.info("deleted %d Pushgateway groups of earlier runs", wiped)
        since = start_workers(door, lab)
        start_manager(door, lab, run_dir, bench_text)
        mlog = watch(door, lab, since, options.timeouts, expected, on_progress, prom,
                     round_channels=round_channels,
                     clock=clock, sleep=sleep)
        if not mlog.finished:
            status = "failed"
            notes.append("the manager exited before the benchmark finished: see "
                         "logs/manager.log")
    except KeyboardInterrupt:
        interrupted, status = True, "interrupted"
        on_progress("interrupted: stopping the manager and the workers, saving what was "
                    "measured")
    except ExternalError as exc:
        status, failure = "failed", exc
        notes.append(str(exc))
    finally:
        if status != "complete":
            stop_manager(door, lab)
            stop_workers(door, lab)
    tmp = Path(tempfile.mkdtemp(prefix="fabperf-bench-"))
    try:
        fetched = gather(lab, door, prom, stamp=stamp, run_dir=run_dir, since=since,
                           bench=bench, round_channels=round_channels, status=status,
                           mlog=mlog, notes=notes,
                           bootstrap=bootstrap, t_begin=t_begin, tmp=tmp, clock=clock,
                           sleep=sleep, local_versions=local_versions)
        path, summary = collect.write(results_root, fetched, options.thresholds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    last_end = max((r.window["end"] for r in summary.rounds if r.window), default=None)
    if last_end is not None:
        # the bundle is published: its timings are completed in place (atomic replace)
        timings = {**summary.timings, "last_tx_to_bundle": round(clock() - last_end, 1)}
        summary = replace(summary, timings=timings)
        write_atomic(path / "summary.json", json.dumps(summary.to_json(), indent=2,
                                                       sort_keys=True, default=str) + "\n")
    if interrupted:
        on_progress(f"interrupted; what was measured is in {path}")
        raise KeyboardInterrupt
    if failure is not None:
        raise ExternalError(f"{failure.message}\n  what was fetched: {path}", hint=failure.hint)
    if status == "failed":
        raise ExternalError(f"the Caliper manager on {lab.manager_host} exited before the "
                            f"benchmark finished; what was fetched: {path}",
                            hint=f"see {path}/logs/manager.log")
    return BenchResult(path, summary, interrupted)


def bench(env: str, options: Options, *, build_dir: Path, repo_root: Path, results_root: Path,
          workers_per_vm: int | str | None = None,
          on_progress: Callable[[str], None] = lambda _: None) -> BenchResult:
    """`launch bench ENV`: open the lab, reach it over SSH, run (see run()). The spec's
    `bench.thresholds` apply under options.thresholds' explicit overrides
    (--threshold NAME=VALUE pairs); `workers_per_vm`: a number, "auto" or None (the spec's)."""
    # every option is checked against the recorded spec before any machine is asked
    try:
        spec_path, spec = recorded_spec(env, build_dir=build_dir)
    except InputError:
        # what open_lab says comes first (the environment not up, then its spec gone)
        open_lab(env, build_dir=build_dir, repo_root=repo_root)
        raise
    select_rounds(spec, options)
    base = Thresholds.from_mapping(spec.bench_thresholds, source=spec_path)
    options = replace(options, thresholds=Thresholds.parse_pairs(options.threshold_pairs,
                                                                 base=base))
    lab, targets = open_lab(env, build_dir=build_dir, repo_root=repo_root,
                            workers_per_vm=workers_per_vm if isinstance(workers_per_vm, int)
                            else None)
    door = SshDoor(targets, lab.env_dir / "logs" / "bench-ssh.log")
    lab = resolve_workers(door, lab, workers_per_vm)
    return run(lab, door, options, results_root=results_root, on_progress=on_progress)
