"""What a run left, gathered for its results bundle: the manager's and workers' logs,
report.html, Prometheus' answers per round window, a TSDB snapshot, the versions and the
configs (each optional part a note when it fails, never a lost bundle)."""

from __future__ import annotations

import datetime as _dt
import functools
import json
import logging
import math
import shlex
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from fabkit import runner
from fabkit.errors import FabperfError
from launch.bench import collect, prometheus, report
from launch.bench.control import manager_journal, worker_units
from launch.bench.door import Door
from launch.bench.lab import Lab
from launch.bench.prometheus import Prometheus, Window
from launch.machines import ssh
from launch.render import caliper as caliper_cfg
from launch.spec import contract

log = logging.getLogger("fabperf.bench")


PROMETHEUS_SNAPSHOTS = "/var/lib/prometheus/metrics2/snapshots"   # Debian's storage path


def safely(notes: list[str], what: str, fn: Callable[[], Any]) -> Any:
    """Run an optional collection step: a failure becomes a note, not a lost bundle."""
    try:
        return fn()
    except (FabperfError, OSError, ValueError) as exc:
        notes.append(f"{what}: {str(exc).splitlines()[0]}")
        log.warning("%s failed: %s", what, exc)
        return None


def _iso(now: float) -> str:
    return _dt.datetime.fromtimestamp(now, tz=_dt.UTC).isoformat(timespec="seconds")


def unit_log(door: Door, host: str, unit: str, since: float) -> str:
    """A systemd unit's journal on a host since the run started."""
    return door.run(host, f"sudo -n journalctl -u {unit} -o short-iso-precise --no-pager "
                          f"--since @{int(since) - 1}").stdout


def fetch_snapshot(door: Door, lab: Lab, prom: Prometheus, stamp: str, into: Path) -> Path:
    """A TSDB snapshot, archived on the monitor, copied to `into`, removed there."""
    name = prom.snapshot()
    mon = lab.plan.monitor.name
    remote = f"/tmp/fabperf-snapshot-{stamp}.tar.gz"
    door.run(mon, f"sudo -n tar -C {PROMETHEUS_SNAPSHOTS} -czf {remote} {shlex.quote(name)} && "
                  f"sudo -n chown {ssh.ADMIN_USER} {remote}; "
                  f"sudo -n rm -rf {PROMETHEUS_SNAPSHOTS}/{shlex.quote(name)}", timeout=600)
    local = into / "snapshot.tar.gz"
    door.fetch(mon, remote, local)
    door.run(mon, f"rm -f {remote}", check=False)
    return local


def fetch_versions(door: Door, lab: Lab, local: Mapping[str, Any]) -> dict[str, Any]:
    """image.json of one host per image, the plan's image ids, fabperf's own version."""
    images: dict[str, Any] = {}
    for h in lab.plan.hosts:
        if h.image in images or h.image is None:
            continue
        res = door.run(h.name, f"cat {contract.IMAGE_JSON}", check=False)
        try:
            images[h.image] = {"host": h.name, "image_id": h.image_id,
                               **json.loads(res.stdout)}
        except ValueError:
            images[h.image] = {"host": h.name, "image_id": h.image_id,
                               "error": f"no readable {contract.IMAGE_JSON}"}
    out = {"images": images, "fabric_version": lab.plan.spec.fabric.version, **local}
    if lab.byof is not None:
        out["fabric_version_source"] = "declared in the BYOF spec (the user's network)"
    return out


def fabperf_version() -> dict[str, str]:
    """fabperf's package version (and its git commit when run from a checkout)."""
    out = {"fabperf": metadata.version("fabperf")}
    try:
        res = runner.run(["git", "rev-parse", "HEAD"], check=False, timeout=10,
                         cwd=Path(__file__).resolve().parents[2])
        if res.ok:
            out["fabperf_commit"] = res.stdout.strip()
    except (FabperfError, runner.SubprocessForbidden):
        pass
    return out


def local_configs(lab: Lab) -> dict[str, str]:
    """configs/: network configs (redacted), caliper.yaml, spec, plan.json."""
    cal = lab.env_dir / "bundle" / "caliper"
    out = {}
    for p in sorted(cal.glob("networkconfig-*.yaml")):
        out[p.name] = collect.network_config_text(p.read_text())
    if (cal / "caliper.yaml").is_file():
        out["caliper.yaml"] = (cal / "caliper.yaml").read_text()
    plan_json = lab.env_dir / "bundle" / "plan.json"
    if plan_json.is_file():
        out["plan.json"] = plan_json.read_text()
    out[f"spec-{lab.spec_path.name}"] = lab.spec_path.read_text()
    return out


def gather(lab: Lab, door: Door, prom: Prometheus, *, stamp: str, run_dir: str,
             since: float, bench: Mapping[str, Any], round_channels: Mapping[int, str],
             status: str,
             mlog: report.ManagerLog | None, notes: list[str], bootstrap: Mapping[str, Any],
             t_begin: float, tmp: Path, clock: Callable[[], float],
             sleep: Callable[[float], None],
             local_versions: Callable[[], Mapping[str, Any]]) -> collect.Fetched:
    """Everything the run left, each optional part a note when it fails. `round_channels`:
    round index -> its channel (render.caliper.round_channels of `bench`)."""
    text = safely(notes, "manager log", lambda: manager_journal(door, lab, since)) or ""
    if text:
        mlog = report.parse_manager_log(text.splitlines())
    res = safely(notes, "report.html", lambda: door.run(
        lab.manager_host, f"sudo -n cat {shlex.quote(run_dir + '/report.html')}", check=False))
    report_html = res.stdout if res is not None and res.ok and res.stdout.strip() else None
    byof = lab.byof
    logs: dict[str, str] = {"byof-check.json" if byof else "bootstrap.done.json":
                            json.dumps(dict(bootstrap), indent=2)}
    for host, n in lab.workers.items():
        for unit in worker_units(n):
            out = safely(notes, f"log of {unit} on {host}",
                         functools.partial(unit_log, door, host, unit, since))
            if out is not None:
                logs[f"{host}/{unit.removesuffix('.service')}.log"] = out
    logged = list(mlog.rounds) if mlog else []
    windows = {r.index: Window(*r.window) for r in logged if r.window}
    # read the ledger after a round two scrapes after its end, but before the next round
    # starts (its preparation may commit: the read workload creates its assets)
    next_start = {r.index: nxt.started for r, nxt in zip(logged, logged[1:], strict=False)
                  if nxt.started is not None}
    if windows:
        # the last commits are scraped two intervals after a round's end
        wait = max(w.end for w in windows.values()) + 2 * prometheus.SCRAPE_INTERVAL_S - clock()
        if wait > 0:
            sleep(wait)
    responses = {}
    for i, w in windows.items():
        until = min(w.end + 2 * prometheus.SCRAPE_INTERVAL_S, next_start.get(i, math.inf))
        got = safely(notes, f"Prometheus queries of round {i + 1}",
                     functools.partial(prometheus.fetch_round, prom, w, i, ledger_until=until,
                                       channel=round_channels.get(i)))
        if got is not None:
            responses[i] = got
    snapshot = safely(notes, "Prometheus snapshot",
                     lambda: fetch_snapshot(door, lab, prom, stamp, tmp))
    versions = safely(notes, "versions", lambda: fetch_versions(door, lab, local_versions())) \
        or {}
    first = min((w.start for w in windows.values()), default=None)
    timings = {"to_first_tx": round(first - t_begin, 1)} if first else {}
    return collect.Fetched(
        environment=lab.name, stamp=stamp, started_at=_iso(t_begin), finished_at=_iso(clock()),
        status=status, benchmark=bench, report_html=report_html, manager_log=text,
        responses=responses, logs=logs, configs=local_configs(lab), versions=versions,
        snapshot=snapshot,
        caliper={"workers": lab.total_workers, "manager_host": lab.manager_host,
                 "worker_vms": [{"host": w.host, "processes": lab.workers[w.host],
                                 "gateway": w.gateway.endpoint, "msp_id": w.gateway.msp_id}
                                for w in lab.plan.workers]},
        timings=timings, notes=tuple(notes),
        ledger_expected=byof is None or bool(byof.operations),
        fabric_exporters=byof is None,
        channels=caliper_cfg.contract_channels(lab.plan))
