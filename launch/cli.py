"""The `launch` command line: parses options, calls the library, prints. Nothing else prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from bake import catalog
from fabkit import layout, runner
from fabkit.clikit import (
    emit_json,
    exits,
    finite_float,
    finite_float_list,
    input_file,
    input_path,
    output_option,
    progress,
    verbosity_options,
)
from fabkit.errors import ExternalError, InputError
from launch.bench import results, run, watch
from launch.compare import ab, bisect, git, lab, page, sizing, table
from launch.lifecycle import gc, preflight, up, validate
from launch.machines import ssh
from launch.machines.providers.base import check_settings
from launch.machines.ready import Timeouts
from launch.machines.state import check_env_name
from launch.render import bundle
from launch.spec import byof
from launch.spec import env as spec
from launch.spec.common import SpecKind
from launch.spec.thresholds import Thresholds


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@verbosity_options
def cli() -> None:
    """Launch fabperf benchmark environments from the baked images.

    An environment file (environments/*.yaml) describes organisations, orderers, Caliper
    workers, the monitor and where each host runs.
    """


@cli.command("render")
@click.argument("env_file", metavar="ENV.yaml", type=input_file())
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Bundle directory (created; an earlier bundle there is replaced).")
@click.option("--rotate", is_flag=True,
              help="Issue all keys and certificates anew instead of reusing DIR/crypto.")
@verbosity_options
@output_option
def render_cmd(env_file: Path, out: Path, rotate: bool, output: str) -> None:
    """Render the whole bundle of an environment (crypto, Fabric, Caliper, monitor,
    per-host user-data, plan.json), or of a BYOF spec (worker VMs and monitor); nothing is
    launched."""

    env = byof.load_any(env_file)
    check_settings(env.provider.value, env.settings, env.source)
    progress(f"rendering {env.name} ({env.kind}, {env.provider.value}) into {out}")
    result = bundle.render(env, out, rotate=rotate)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    hosts: list[dict[str, Any]] = [
        {"host": h.name, "address": h.address, "roles": [r.value for r in h.roles],
         "user_data_bytes": result.user_data[h.name].size,
         "gzip": result.user_data[h.name].gzipped}
        for h in result.plan.hosts
    ]
    if output == "json":
        emit_json({"environment": env.name, "out": str(out), "hosts": hosts,
                   "warnings": list(result.warnings)})
        return
    for h in hosts:
        gz = " (gzip)" if h["gzip"] else ""
        click.echo(f"{h['host']:<24} {h['address']:<15} {','.join(h['roles']):<20} "
                   f"user-data {h['user_data_bytes']} bytes{gz}")
    click.echo(f"bundle: {out}")


# --- up / status / ssh / validate / down (launch.lifecycle.up) ------------------------------------

def _build_dir(override: Path | None) -> tuple[Path, Path]:
    root = layout.find_repo_root()
    return root, layout.build_dir(root, override)


_build_dir_option = click.option(
    "--build-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Build directory holding environments/ [default: $FABPERF_BUILD_DIR or <repo>/build].")


@cli.command("up")
@click.argument("env_file", metavar="ENV.yaml", type=input_file())
@click.option("--only", "only", multiple=True, metavar="HOST",
              help="Bring up only these hosts of the plan (repeatable).")
@click.option("--recreate", is_flag=True,
              help="Destroy the --only hosts and create them anew from ENV.yaml, even when "
                   "it changed (the other hosts must not be affected by the change).")
@click.option("--keep-on-failure", is_flag=True,
              help="Leave failed hosts running for inspection (`launch down` removes them).")
@click.option("--wait", "wait", type=click.Choice(["ready", "running", "none"]),
              default="ready", show_default=True,
              help="How far to wait: every readiness layer, the machines running, or not at all.")
@click.option("--ready-timeout", type=int, default=None, metavar="SECONDS",
              help="Seconds for cloud-init to finish on every host [default: 1800].")
@click.option("--provider", "provider", default=None, metavar="P",
              help="Run the spec on provider P instead of its own, when P boots the same "
                   "images (qemu <-> nspawn: the same spec as VMs or as containers).")
@_build_dir_option
@output_option
@verbosity_options
def up_cmd(env_file: Path, only: tuple[str, ...], recreate: bool, keep_on_failure: bool,
           wait: str, ready_timeout: int | None, provider: str | None,
           build_dir: Path | None, output: str) -> None:
    """Reserve addresses, render the bundle, create the hosts and wait until they are ready.

    A second `up` of a running environment changes nothing.
    """

    root, bdir = _build_dir(build_dir)
    timeouts = Timeouts(cloud_init=ready_timeout) if ready_timeout else None
    progress(f"launch up {env_file}")
    result = up.up(env_file, build_dir=bdir, repo_root=root, only=only,
                   keep_on_failure=keep_on_failure, timeouts=timeouts, wait=wait,
                   recreate=recreate, run_on=provider)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    for rep in result.readiness:
        for warning in rep.warnings:
            click.echo(f"warning: {rep.host}: {warning}", err=True)
    if output == "json":
        emit_json({"environment": result.environment, "changed": result.changed,
                   "waited": result.waited, "where": result.where, "timings": dict(result.timings),
                   "hosts": [_host_json(h) for h in result.hosts],
                   "readiness": [{"host": r.host, "seconds": r.seconds}
                                 for r in result.readiness]})
        return
    verb = "up" if result.changed else "already up (nothing changed)"
    how = {"ready": "", "running": " (running; readiness not waited for)",
           "none": " (created; not waited for)"}[result.waited]
    click.echo(f"environment {result.environment}: {verb}{how} in "
               f"{result.timings.get('total', 0)}s")
    if result.where:
        click.echo(f"  on {result.where}")
    for h in result.hosts:
        where = f"ssh 127.0.0.1:{h.ports['ssh']}" if "ssh" in h.ports else \
            " ".join(f"{k} {v}" for k, v in sorted(h.resources.items()))
        click.echo(f"  {h.name:<20} {h.address:<15} {where}")


# --- byof (launch.spec.byof, launch.lifecycle.preflight; launched by launch.lifecycle.up) --

@cli.command(SpecKind.BYOF.value)
@click.argument("byof_file", metavar="BYOF.yaml",
                type=input_file())
@click.option("--check", "check_only", is_flag=True,
              help="Only the preflight: files, identities, TLS of reachable endpoints.")
@click.option("--keep-on-failure", is_flag=True,
              help="Leave failed hosts running for inspection (`launch down` removes them).")
@click.option("--ready-timeout", type=int, default=None, metavar="SECONDS",
              help="Seconds for cloud-init to finish on every host [default: 1800].")
@_build_dir_option
@output_option
@verbosity_options
def byof_cmd(byof_file: Path, check_only: bool, keep_on_failure: bool,
             ready_timeout: int | None, build_dir: Path | None, output: str) -> None:
    """Caliper workers and the monitor only, against a Fabric network you already run.

    The preflight runs first (and alone with --check); a failure creates nothing (exit 2).
    Then `launch status/bench/down NAME` work as for any environment.
    """

    spec = byof.load(byof_file)
    if check_only:
        report = preflight.run(spec)
        if output == "json":
            emit_json(report.to_json())
        report.raise_for_failures()     # the error first; it lists the warnings after it
        if output != "json":
            for line in report.ok:
                click.echo(f"ok: {line}")
            for skip in report.skipped:
                click.echo(f"skipped: {skip}")
        for warning in report.warnings:
            click.echo(f"warning: {warning}", err=True)
        if output != "json":
            click.echo(f"preflight of {byof_file}: passed ({len(report.ok)} checks, "
                       f"{len(report.warnings)} warnings)")
        return
    # click types a command's callback as optional; up_cmd's is its own function
    up_cmd.callback(env_file=byof_file, only=(), recreate=False,  # type: ignore[misc]
                    keep_on_failure=keep_on_failure,
                    wait="ready", ready_timeout=ready_timeout, provider=None, build_dir=build_dir,
                    output=output)


def _host_json(h) -> dict:
    return {"name": h.name, "address": h.address, "roles": list(h.roles),
            "phase": str(h.phase), "pid": h.pid, "ports": dict(h.ports),
            "resources": dict(h.resources)}


@cli.command("status")
@click.argument("env", metavar="ENV")
@_build_dir_option
@output_option
@verbosity_options
def status_cmd(env: str, build_dir: Path | None, output: str) -> None:
    """Show an environment's hosts: address, roles, phase, process, forwarded ports."""

    _, bdir = _build_dir(build_dir)
    state, rows = up.status(env, build_dir=bdir)
    fabric, nodes = up.channel_status(state, build_dir=bdir)
    if output == "json":
        emit_json({"environment": state.environment, "provider": state.provider,
                   "network": dict(state.network), "updated_at": state.updated_at,
                   "hosts": [{"name": r.name, "address": r.address, "roles": list(r.roles),
                              "phase": r.phase, "alive": r.alive, "pid": r.pid,
                              "ports": dict(r.ports), "resources": dict(r.resources),
                              "error": r.error} for r in rows],
                   "fabric": {"state": fabric,
                              "package_ids": dict(state.bootstrap.get("package_ids") or {}),
                              "nodes": [{"node": n.node, "role": n.role, "channel": n.channel,
                                         "state": n.state, "height": n.height}
                                        for n in nodes]}})
        return
    click.echo(f"environment {state.environment} ({state.provider})")
    click.echo(f"  {'HOST':<20} {'ADDRESS':<15} {'ROLES':<16} {'PHASE':<9} {'PROC':<6} PORTS")
    for r in rows:
        ports = " ".join(f"{k}->{v}" for k, v in sorted(r.ports.items())) or \
            " ".join(f"{k} {v}" for k, v in sorted(r.resources.items()))
        proc = "up" if r.alive else "down"
        click.echo(f"  {r.name:<20} {r.address:<15} {','.join(r.roles):<16} {r.phase:<9} "
                   f"{proc:<6} {ports}")
        if r.error:
            click.echo(f"    error: {r.error}")
    click.echo(f"fabric: {fabric}")
    if nodes:
        click.echo(f"  {'NODE':<32} {'ROLE':<8} {'CHANNEL':<16} {'STATE':<10} HEIGHT")
        for n in nodes:
            click.echo(f"  {n.node:<32} {n.role:<8} {n.channel:<16} {n.state:<10} "
                       f"{'-' if n.height is None else n.height}")


@cli.command("ssh", context_settings={"ignore_unknown_options": True})
@click.argument("env", metavar="ENV")
@click.argument("host", metavar="HOST")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@_build_dir_option
@verbosity_options
def ssh_cmd(env: str, host: str, command: tuple[str, ...], build_dir: Path | None) -> None:
    """Open a shell on HOST, or run `-- CMD...` there (exit code passed through)."""
    import os
    import shlex


    _, bdir = _build_dir(build_dir)
    target = up.target(env, host, build_dir=bdir)
    if not command:
        argv = ssh.ssh_argv(target, tty=True)
        # An interactive session replaces this process (nothing to capture or log).
        os.execvp(argv[0], argv)
    res = runner.run(ssh.ssh_argv(target, shlex.join(command)), check=False,
                     what=f"ssh {host}")
    click.echo(res.stdout, nl=False)
    click.echo(res.stderr, nl=False, err=True)
    raise SystemExit(res.returncode)


@cli.command("validate")
@click.argument("env", metavar="ENV")
@click.option("--no-goss", is_flag=True,
              help="Skip the images' goss specs (one SSH round trip per check: slow under TCG).")
@_build_dir_option
@output_option
@verbosity_options
def validate_cmd(env: str, no_goss: bool, build_dir: Path | None, output: str) -> None:
    """Run the images' runtime checks on every live host of an environment."""

    _, bdir = _build_dir(build_dir)
    results = validate.validate(env, build_dir=bdir, goss_specs=not no_goss)
    failed = [r for r in results if not r.ok]
    if output == "json":
        emit_json({"ok": not failed, "hosts": [r.to_json() for r in results]})
    else:
        for r in results:
            for c in r.checks:
                mark = "ok  " if c.ok else "FAIL"
                click.echo(f"{mark} {r.host:<20} {c.name}" + ("" if c.ok else f": {c.detail}"))
    if failed:
        raise ExternalError(f"validate: {len(failed)} of {len(results)} hosts failed: "
                            + ", ".join(r.host for r in failed))


_region_option = click.option(
    "--region", "region", default=None, metavar="REGION",
    help="AWS region to ask [default: the spec's, else $AWS_REGION, $AWS_DEFAULT_REGION, "
         "the AWS profile's].")


@cli.command("down")
@click.argument("env", metavar="ENV")
@click.option("--from", "spec_path", type=input_file(),
              default=None, metavar="ENV.yaml",
              help="The spec it was launched from: where to look when the state is lost "
                   "or damaged.")
@_region_option
@_build_dir_option
@output_option
@verbosity_options
def down_cmd(env: str, spec_path: Path | None, region: str | None, build_dir: Path | None,
             output: str) -> None:
    """Stop the VMs (also those the state lost), remove overlays, seeds and the state.

    With a lost or damaged state it finds the machines by their tags, where `--from` or
    `--region` (or the damaged state, or the AWS variables) say; it fails rather than
    answer success when it could not look everywhere the environment may run."""

    _, bdir = _build_dir(build_dir)
    result = up.down(env, build_dir=bdir, spec_path=spec_path, region=region)
    rep = result.report
    for w in result.warnings:
        click.echo(f"warning: {w}", err=True)
    if output == "json":
        emit_json({"environment": result.environment, "removed": list(rep.removed),
                   "where": list(result.where),
                   "leaked": [{"kind": x.kind, "id": x.ident, "detail": x.detail}
                              for x in rep.leaked_found]})
        return
    if result.where:
        click.echo(f"looked on {', '.join(result.where)}")
    if not rep.removed:
        click.echo(f"environment {result.environment}: nothing to remove")
    for x in rep.leaked_found:
        click.echo(f"found leaked {x.kind} {x.ident} ({x.detail})")
    for item in rep.removed:
        click.echo(f"removed {item}")


# --- bench / results (launch.bench) ----------------------------------------------------

def _results_root(override: Path | None) -> Path:
    return override if override is not None else layout.find_repo_root() / "results"


_threshold_option = click.option(
    "--threshold", "thresholds", multiple=True, metavar="NAME=VALUE",
    help="Override a verdict threshold (launch.spec.thresholds.Thresholds; repeatable), after "
         "the spec's bench.thresholds.")

_results_option = click.option(
    "--results-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Where results bundles live [default: <repo>/results].")


def _workers_per_vm(_ctx: click.Context, _param: click.Parameter, value: str | None):
    if value is None or value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise click.BadParameter("a positive integer or 'auto' (1.5 x the VM's vCPUs)")
    return int(value)


@cli.command("bench")
@click.argument("env", metavar="ENV")
@click.option("--round", "rounds", multiple=True, metavar="LABEL",
              help="Run only these rounds of the spec (repeatable; spec order).")
@click.option("--tps", type=click.IntRange(min=1), default=None,
              help="Run every selected round at this fixed total rate.")
@click.option("--duration", type=click.IntRange(min=1), default=None, metavar="SECONDS",
              help="Run every selected round for this long.")
@click.option("--workers-per-vm", callback=_workers_per_vm, default=None, metavar="N|auto",
              help="Worker processes per worker VM [default: the spec's "
                   "caliper.workers.processes; auto: 1.5 x the VM's vCPUs].")
@_threshold_option
@click.option("--register-timeout", type=click.IntRange(min=1), default=300,
              show_default=True, metavar="SECONDS",
              help="How long the workers may take to register with the manager.")
@_results_option
@_build_dir_option
@output_option
@verbosity_options
def bench_cmd(env: str, rounds: tuple[str, ...], tps: int | None, duration: int | None,
              workers_per_vm: int | str | None, thresholds: tuple[str, ...],
              register_timeout: int, results_dir: Path | None, build_dir: Path | None,
              output: str) -> None:
    """Run the spec's Caliper rounds on a launched, bootstrapped environment and write a
    results bundle (results/<env>/<stamp>/) with a verdict per round."""

    root, bdir = _build_dir(build_dir)
    options = run.Options(rounds=rounds, tps=tps, duration=duration,
                          threshold_pairs=thresholds,
                          timeouts=watch.Timeouts(register=register_timeout))
    result = run.bench(env, options, build_dir=bdir, repo_root=root,
                       results_root=_results_root(results_dir),
                       workers_per_vm=workers_per_vm, on_progress=progress)
    if output == "json":
        emit_json({"bundle": str(result.bundle), "summary": result.summary.to_json()})
    else:
        click.echo(results.format_table(result.summary))
        for note in result.summary.notes:
            click.echo(f"note: {note}")
        click.echo(f"results: {result.bundle}")
    failed = [r.label for r in result.summary.rounds if r.status != "completed"]
    if failed:
        raise ExternalError(f"rounds {', '.join(failed)} did not complete (see "
                            f"{result.bundle}/logs/manager.log)")


@cli.group("results")
def results_group() -> None:
    """What the benchmark runs measured (results bundles)."""


@results_group.command("list")
@click.option("--env", "environment", default=None, help="Only this environment's runs.")
@_results_option
@output_option
@verbosity_options
def results_list_cmd(environment: str | None, results_dir: Path | None, output: str) -> None:
    """Every results bundle, oldest first: status, rounds and their verdicts."""

    found = results.list_bundles(_results_root(results_dir), environment)
    if output == "json":
        emit_json([{"path": str(b.path), "error": b.error,
                    "environment": b.summary.environment if b.summary else None,
                    "status": b.summary.status if b.summary else None,
                    "rounds": [{"label": r.label, "verdict": r.verdict.get("verdict"),
                                "goodput_tps": r.goodput(),
                                "ledger_goodput_tps": r.ledger_goodput_tps,
                                "throughput_tps": r.throughput_tps, "failed": r.failed}
                               for r in (b.summary.rounds if b.summary else ())]}
                   for b in found])
        return
    if not found:
        click.echo("no results bundles")
    for b in found:
        if b.summary is None:
            click.echo(f"{b.path}  unreadable: {b.error}")
            continue
        verdicts = ", ".join(f"{r.label}={r.verdict.get('verdict')} "
                             f"({results.tps_text(r.goodput())} TPS goodput)"
                             for r in b.summary.rounds)
        click.echo(f"{b.path}  {b.summary.status:<11} {verdicts}")


@results_group.command("show")
@click.argument("bundle", metavar="DIR", type=input_path())
@output_option
@verbosity_options
def results_show_cmd(bundle: Path, output: str) -> None:
    """One bundle's summary table, verdicts and evidence."""

    summary = results.load(bundle)
    if output == "json":
        emit_json(summary.to_json())
        return
    click.echo(f"{summary.environment} {summary.stamp} ({summary.status})")
    click.echo(results.format_table(summary))
    for note in summary.notes:
        click.echo(f"note: {note}")


_min_effect_option = click.option(
    "--min-effect", "min_effect", type=finite_float(0, 100, min_open=True, max_open=True),
    default=3.0, show_default=True, metavar="PCT",
    help="The smallest change worth a `different`: a figure is different only when its "
         "change is shown beyond this (launch.compare.stats).")


@results_group.command("compare")
@click.argument("dirs", metavar="DIR_A DIR_B [DIR...]", nargs=-1, required=True)
@click.option("--round", "rounds", multiple=True, metavar="LABEL",
              help="Only these round labels (repeatable).")
@click.option("--html", "html_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, metavar="DIR",
              help="Write the page here [default: <results>/compare/<UTC stamp>/].")
@click.option("--no-html", is_flag=True, help="Only the table; no page, no plots.")
@click.option("--looks", type=click.IntRange(1, 50), default=1, show_default=True,
              help="How many times the data was looked at while it was gathered (a "
                   "`launch compare` run records its looks): each costs its share of alpha.")
@_min_effect_option
@_results_option
@output_option
@verbosity_options
def results_compare_cmd(dirs: tuple[str, ...], rounds: tuple[str, ...], html_dir: Path | None,
                        no_html: bool, looks: int, min_effect: float,
                        results_dir: Path | None, output: str) -> None:
    """Compare groups of results bundles round by round, the first group the baseline.

    Each DIR is a bundle, or a directory of bundles (the repeats of one variant);
    LABEL=DIR names the group. Goodput and latency p50/p95 are judged by
    launch.compare.stats' rule: same, different (beyond --min-effect, Holm-corrected over
    the report) or unknown; rounds that are not headroom/fabric-bound, or fail too many
    transactions, are not comparable."""

    comparison = table.load(dirs, rounds, min_effect_pct=min_effect, looks=looks)
    index = None
    if not no_html:
        out = html_dir or _results_root(results_dir) / "compare" / _utc_stamp()
        index = page.write(comparison, out)
    if output == "json":
        emit_json({**comparison.to_json(), "page": str(index) if index else None})
        return
    click.echo(table.format_table(comparison))
    if index is not None:
        click.echo(f"page: {index}")


def _utc_stamp() -> str:
    import datetime as dt

    return dt.datetime.now(tz=dt.UTC).strftime("%Y%m%dT%H%M%SZ")


# --- compare / bisect / size (launch.compare) -------------------------------------------

def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key or not val:
            raise InputError.field(None, option, "REF=VALUE", v)
        out[key] = val
    return out


def _check_rounds(spec_path: Path, rounds: tuple[str, ...]) -> None:
    labels = [r.label for r in spec.load(spec_path).caliper.rounds]
    for label in rounds:
        if label not in labels:
            raise InputError.field(spec_path, "--round", f"one of the spec's rounds {labels}",
                                   label)


@cli.command("compare")
@click.argument("env_file", metavar="ENV.yaml", type=input_file())
@click.option("--ref", "refs", multiple=True, required=True, metavar="REF",
              help="A Fabric tag, branch or commit (repeatable; the first is the baseline).")
@click.option("--source", "sources", multiple=True, metavar="REF=PATH",
              help="Bake REF from this source tarball or checkout (FABRIC_SOURCE; "
                   "air-gapped machines).")
@click.option("--fabric-version", "versions", multiple=True, metavar="REF=X.Y.Z",
              help="The spec's fabric.version for REF [default: the ref's release when it "
                   "names one (v2.5.12 -> 2.5.12), else the spec's].")
@click.option("--repeat", "repeats", type=click.IntRange(3, 50), default=5, show_default=True,
              help="The first batch of runs per ref, interleaved (A B A B ...).")
@click.option("--max-repeat", "max_repeats", type=click.IntRange(3, 50), default=20,
              show_default=True, help="The cap: batches of --repeat more runs per ref are "
                                      "added while a compared figure is unknown.")
@_min_effect_option
@click.option("--round", "rounds", multiple=True, metavar="LABEL",
              help="Only these rounds of the spec (repeatable).")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The run directory [default: <results>/compare/<UTC stamp>]; an existing "
                   "one of the same request resumes.")
@click.option("--dry-run", is_flag=True,
              help="Print each ref's image (fingerprint) and the steps; run nothing.")
@_threshold_option
@_results_option
@_build_dir_option
@output_option
@verbosity_options
def compare_cmd(env_file: Path, refs: tuple[str, ...], sources: tuple[str, ...],
                versions: tuple[str, ...], repeats: int, max_repeats: int, min_effect: float,
                rounds: tuple[str, ...],
                out: Path | None, dry_run: bool, thresholds: tuple[str, ...],
                results_dir: Path | None, build_dir: Path | None, output: str) -> None:
    """Bake each Fabric ref, put the Fabric hosts on it (workers and monitor stay), run the
    rounds N times interleaving the refs, and compare them (launch results compare)."""
    import os


    root, bdir = _build_dir(build_dir)
    # Relative to the repository root, as bake reads it: the fingerprint covers the path as
    # written, so `../shared/x.tar.gz` and `/work/shared/x.tar.gz` would be two images.
    given = _pairs(sources, "--source")
    src = {k: Path(os.path.relpath(Path(v).resolve(), root)) for k, v in given.items()}
    ver = _pairs(versions, "--fabric-version")
    for key in [*src, *ver]:
        if key not in refs:
            raise InputError.field(None, "--source/--fabric-version", f"one of the refs {refs}",
                                   key)
    for key, path in src.items():
        if not ((root / path).is_file() or (root / path).is_dir()):   # a FIFO would block
            raise InputError.field(None, f"--source {key}", "an existing tarball (a regular "
                                   "file) or checkout (a directory)", given[key])
    _check_rounds(env_file, rounds)
    request = ab.Request(tuple(lab.variant(r, src.get(r), fabric_version=ver.get(r))
                               for r in refs), repeats, rounds, max_repeats, min_effect)
    request.check()
    run_dir = out or _results_root(results_dir) / "compare" / _utc_stamp()
    real = lab.RealLab(env_file, build_dir=bdir, repo_root=root, work_dir=run_dir,
                       progress=progress, threshold_pairs=thresholds)
    real.check_variants(request.variants)
    if dry_run:
        for line in ab.preview(real, request):
            click.echo(line)
        click.echo(f"run directory: {run_dir}")
        return
    progress(f"launch compare {env_file}: {', '.join(refs)} x {repeats} (up to "
             f"{max_repeats}) -> {run_dir}")
    result = ab.run(real, request, run_dir, progress=progress)
    if output == "json":
        emit_json({**result.comparison.to_json(), "run": str(result.run_dir),
                   "page": str(result.page), "failed_steps": list(result.failed_steps),
                   "repeats_used": result.repeats, "looks_taken": result.looks})
        return
    click.echo(f"repeats needed: {result.repeats} per ref ({result.looks} of "
               f"{request.looks} looks)")
    click.echo(table.format_table(result.comparison))
    for s in result.failed_steps:
        click.echo(f"failed: {s['label']} repeat {s['repeat']}: "
                   f"{s['error'].splitlines()[0]}")
    click.echo(f"page: {result.page}")


@cli.command("bisect")
@click.argument("env_file", metavar="ENV.yaml", type=input_file())
@click.option("--good", required=True, metavar="REF", help="A commit whose round is fine.")
@click.option("--bad", required=True, metavar="REF", help="A later commit whose round is slow.")
@click.option("--round", "round_label", required=True, metavar="LABEL",
              help="The spec's round whose throughput is compared.")
@_min_effect_option
@click.option("--repeat", "repeats", type=click.IntRange(3, 50), default=5, show_default=True,
              help="The first batch of runs of good and of each candidate, interleaved.")
@click.option("--max-repeat", "max_repeats", type=click.IntRange(3, 50), default=20,
              show_default=True, help="The cap of runs per side while the answer is unknown.")
@click.option("--source", "gitdir", type=click.Path(file_okay=False, path_type=Path),
              default=None, metavar="GITDIR",
              help="A Fabric git repository [default: a bare clone of the image's "
                   "FABRIC_REPO in <build>/bisect/fabric.git].")
@click.option("--name", default=None, help="State directory name [default: the environment's].")
@_build_dir_option
@output_option
@verbosity_options
def bisect_cmd(env_file: Path, good: str, bad: str, round_label: str, min_effect: float,
               repeats: int, max_repeats: int, gitdir: Path | None, name: str | None,
               build_dir: Path | None, output: str) -> None:
    """Bake and measure commits between --good and --bad (first-parent line) until the
    first one whose round's goodput is lower than good's beyond --min-effect, good measured
    afresh and interleaved at each step. Resumable: run the same command again; a commit
    whose compile fails is skipped, any other error stops the bisect."""

    _check_rounds(env_file, (round_label,))
    root, bdir = _build_dir(build_dir)
    env_name = spec.load(env_file).name
    state_dir = bdir / "bisect" / check_env_name(name or env_name)
    if gitdir is None:
        repo_url = catalog.load_catalog(root, [lab.IMAGE])[0].versions_dict["FABRIC_REPO"]
        progress(f"no --source: cloning {repo_url}")
        gitdir = git.clone(repo_url, bdir / "bisect" / "fabric.git")
    git.check_repo(gitdir)
    g, b = git.resolve(gitdir, good), git.resolve(gitdir, bad)
    question = bisect.Question(g, b, round_label, tuple(git.first_parent_range(gitdir, g, b)),
                               min_effect, repeats, max_repeats)
    question.check()
    progress(f"launch bisect {env_name}: {len(question.commits)} commits after {g[:12]} "
             f"up to {b[:12]} (first-parent), round {round_label}; state {state_dir}")
    real = lab.RealLab(env_file, build_dir=bdir, repo_root=root, work_dir=state_dir,
                       progress=progress)
    measure = bisect.LabMeasure(real, gitdir, state_dir, round_label, progress)
    out = bisect.run(question, measure, state_dir, progress=progress)
    if output == "json":
        emit_json({"status": out.status, "first_bad": out.first_bad,
                   "candidates": list(out.candidates), "explanation": out.explanation,
                   "measured_now": list(out.measured), "runs_now": out.runs,
                   "record": out.record, "state": str(out.state_path)})
        return
    for c in (g, *question.commits):
        rec = out.record.get(c)
        if rec is None:
            continue
        what = (rec.get("why", "") if rec["kind"] == "measured"
                else f"skipped (compile failed): {rec['reason']}")
        click.echo(f"{c[:12]}  {git.subject(gitdir, c)[:50]:<50}  {what}")
    click.echo(out.explanation)
    click.echo(f"state: {out.state_path}")


@cli.command("size")
@click.argument("env_file", metavar="ENV.yaml", type=input_file())
@click.option("--target-tps", type=finite_float(min=0, min_open=True), required=True,
              help="The total rate the fleet must send without being the limit.")
@click.option("--round", "round_label", default=None, metavar="LABEL",
              help="The spec's round (its workload) to calibrate with [default: the first].")
@click.option("--rates", type=finite_float_list(min=1), default=None, metavar="R,R,...",
              help="The calibration's rates [default: --start x --factor^k, --steps of them].")
@click.option("--start", type=finite_float(min=1), default=50, show_default=True)
@click.option("--factor", type=finite_float(min=1, min_open=True), default=1.5,
              show_default=True)
@click.option("--steps", type=click.IntRange(1, 30), default=8, show_default=True)
@click.option("--duration", type=click.IntRange(min=1), default=None, metavar="SECONDS",
              help="Seconds per step [default: the round's].")
@click.option("--headroom", type=finite_float(0, 1, min_open=True), default=0.7,
              show_default=True,
              help="Plan each VM at this share of its measured capacity.")
@click.option("--vcpus", type=click.IntRange(1, 1024), default=None,
              help="vCPUs of the proposed worker VMs [default: the calibration VM's].")
@click.option("--from-calibration", "from_file", default=None,
              type=input_file(), metavar="FILE",
              help="Propose from a recorded calibration.json; nothing is run.")
@click.option("--verify", is_flag=True,
              help="With --from-calibration, on the environment with the proposal applied: "
                   "run the proposal's `launch bench` at the target and say whether the "
                   "target was met with headroom (verify.json in --out).")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where calibration.json, proposal.yaml and the bundles go "
                   "[default: <results>/size/<UTC stamp>].")
@_threshold_option
@_results_option
@_build_dir_option
@output_option
@verbosity_options
def size_cmd(env_file: Path, target_tps: float, round_label: str | None,
             rates: tuple[float, ...] | None,
             start: float, factor: float, steps: int, duration: int | None, headroom: float,
             vcpus: int | None, from_file: Path | None, verify: bool, out: Path | None,
             thresholds: tuple[str, ...], results_dir: Path | None, build_dir: Path | None,
             output: str) -> None:
    """Calibrate one worker VM at rising rates until it is load-generator-bound, then
    propose worker VMs x processes for --target-tps (planned at 70 % of the measured
    capacity) as a spec patch (proposal.yaml)."""

    env = spec.load(env_file)
    # checked on both paths, before anything runs (a calibration from a file judges nothing
    # anew, but a bad --threshold is still a mistake to report)
    Thresholds.parse_pairs(thresholds, base=Thresholds.from_mapping(env.bench_thresholds,
                                                                    source=env_file))
    out_dir = out or _results_root(results_dir) / "size" / _utc_stamp()
    if verify and from_file is None:
        raise InputError.field(None, "--verify", "--from-calibration FILE (the calibration "
                               "whose proposal the environment now carries)", "none")
    if from_file is not None:
        cal = sizing.load_calibration(from_file)
        proposal = sizing.propose(cal, target_tps, headroom=headroom, vcpus_per_vm=vcpus,
                                  environment=env.name, duration=duration)
        if out is not None or verify:
            sizing.write_proposal(proposal, out_dir)
        if verify:
            root, bdir = _build_dir(build_dir)
            real = lab.RealLab(env_file, build_dir=bdir, repo_root=root, work_dir=out_dir,
                               progress=progress, threshold_pairs=thresholds)
            checked = sizing.verify(real, proposal, cal.round, out_dir, duration=duration,
                                    progress=progress)
            if output == "json":
                emit_json({"proposal": proposal.to_json(), "verify": checked.to_json(),
                           "out": str(out_dir)})
                return
            click.echo(proposal.patch_text(), nl=False)
            click.echo(f"verify: {checked.answer} ({checked.bundle})")
            return
    else:
        label = round_label or env.caliper.rounds[0].label
        _check_rounds(env_file, (label,))
        steps_at = rates or sizing.step_rates(start, factor, steps)
        if env.caliper.processes is None:
            raise InputError.field(env.source, "caliper.workers.processes",
                                   "a number of worker processes per VM to calibrate with "
                                   "(auto is decided per VM at bench time)", "auto")
        root, bdir = _build_dir(build_dir)
        real = lab.RealLab(env_file, build_dir=bdir, repo_root=root, work_dir=out_dir,
                           progress=progress, threshold_pairs=thresholds)
        progress(f"launch size {env.name}: calibrating round {label} at "
                 f"{', '.join(f'{r:g}' for r in steps_at)} TPS -> {out_dir}")
        cal, proposal = sizing.run(real, out_dir, round_label=label,
                                   processes=env.caliper.processes, rates=steps_at,
                                   target_tps=target_tps, duration=duration,
                                   headroom=headroom, vcpus_per_vm=vcpus, progress=progress)
    if output == "json":
        emit_json({"calibration": cal.to_json(), "proposal": proposal.to_json(),
                   "out": str(out_dir) if from_file is None or out else None})
        return
    click.echo(proposal.patch_text(), nl=False)
    if from_file is None or out is not None:
        click.echo(f"proposal: {out_dir / sizing.PROPOSAL}")


@cli.command("gc")
@click.option("--older-than", "older_than", default="0", metavar="DURATION",
              help="Only resources older than this (90m, 6h, 2d, 1w) [default: 0].")
@click.option("--provider", "providers", multiple=True, metavar="P",
              help="aws, openstack or nspawn (repeatable) "
                   "[default: every provider that can be asked].")
@click.option("--from", "spec_path", type=input_file(),
              default=None, metavar="ENV.yaml",
              help="Take the cloud settings (region, endpoint, cloud) from this spec.")
@click.option("--region", "regions", multiple=True, metavar="REGION",
              help="AWS region to ask (repeatable) [default: the spec's, else $AWS_REGION, "
                   "$AWS_DEFAULT_REGION, the AWS profile's].")
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@_build_dir_option
@output_option
@verbosity_options
def gc_cmd(older_than: str, providers: tuple[str, ...], spec_path: Path | None,
           regions: tuple[str, ...], dry_run: bool, build_dir: Path | None,
           output: str) -> None:
    """Remove fabperf cloud resources whose environment is gone or whose TTL passed."""

    hours = gc.parse_duration(older_than)
    _, bdir = _build_dir(build_dir)
    result = gc.gc(bdir, providers=providers, older_than_hours=hours, dry_run=dry_run,
                   spec_path=spec_path, regions=regions)
    for s in result.skipped:
        click.echo(f"warning: skipped {s}", err=True)
    if output == "json":
        emit_json({"dry_run": dry_run, "removed": list(result.removed),
                   "asked": list(result.asked),
                   "garbage": [{"provider": g.provider, "kind": g.kind, "id": g.ident,
                                "environment": g.environment, "reason": g.reason,
                                "age_hours": g.age_hours} for g in result.garbage]})
        return
    if result.asked:
        click.echo(f"asked {', '.join(result.asked)}")
    if not result.garbage:
        click.echo("nothing to collect")
    for g in result.garbage:
        click.echo(f"{g.provider:<10} {g.kind:<12} {g.ident:<24} {g.environment:<20} "
                   f"{g.reason} ({g.age_hours:g} h)")
    if dry_run and result.garbage:
        click.echo(f"{len(result.garbage)} resources would be removed (--dry-run)")
    for item in result.removed:
        click.echo(f"removed {item}")


main = exits(cli)
