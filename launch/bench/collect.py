"""From what a run fetched to a published results bundle.

The last step of `launch bench`, and the same function re-judges recorded runs in tests:
Caliper's report.html (or the manager log's tables when Caliper did not get to write it),
the manager log's round windows, Prometheus' answers per round, the thresholds ->
summary.json, plots, index.html, and every fetched file in its place
(launch.bench.results lists the layout).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from launch.bench import plots, report, results, summarize, workloads
from launch.bench.prometheus import RoundResponses
from launch.spec.thresholds import Thresholds


@dataclass(frozen=True)
class Fetched:
    """Everything a run brought back (any part may be missing after an interruption)."""

    environment: str
    stamp: str
    started_at: str
    finished_at: str
    status: str                                   # complete | interrupted | failed
    benchmark: Mapping[str, Any]                  # the benchmark config the manager ran
    report_html: str | None = None
    manager_log: str = ""
    responses: Mapping[int, RoundResponses] = field(default_factory=dict)
    logs: Mapping[str, str] = field(default_factory=dict)        # logs/<name>
    configs: Mapping[str, str] = field(default_factory=dict)     # configs/<name>, redacted
    versions: Mapping[str, Any] = field(default_factory=dict)
    snapshot: Path | None = None                  # the TSDB snapshot archive (tar.gz)
    caliper: Mapping[str, Any] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    notes: Sequence[str] = ()
    ledger_expected: bool = True                  # False: no operations metrics (BYOF)
    fabric_exporters: bool = True                 # False: no exporter on Fabric hosts (BYOF)
    channels: Mapping[str, str] = field(default_factory=dict)   # contract id -> channel


def network_config_text(text: str) -> str:
    """A network config as the bundle keeps it: YAML without the private keys."""
    return yaml.safe_dump(results.redact_network_config(yaml.safe_load(text)), sort_keys=False)


def write(results_root: Path, fetched: Fetched, thresholds: Thresholds
          ) -> tuple[Path, results.Summary]:
    """Summarize and publish the bundle; returns its path and summary."""
    rows = report.parse_report_html(fetched.report_html) if fetched.report_html else None
    mlog = report.parse_manager_log(fetched.manager_log.splitlines()) \
        if fetched.manager_log else None
    notes = list(fetched.notes)
    if fetched.report_html is None:
        notes.append("no report.html: Caliper writes it only when the whole benchmark ends")
    if fetched.snapshot is None:
        notes.append("no Prometheus snapshot in this bundle")
    summary, plotted = summarize.summarize(
        environment=fetched.environment, stamp=fetched.stamp, status=fetched.status,
        started_at=fetched.started_at, finished_at=fetched.finished_at,
        plans=summarize.round_plans(fetched.benchmark, fetched.channels), report=rows,
        mlog=mlog, responses=fetched.responses, thresholds=thresholds,
        caliper=fetched.caliper, timings=fetched.timings, notes=notes,
        ledger_expected=fetched.ledger_expected, fabric_exporters=fetched.fabric_exporters,
        logs=fetched.logs)
    files: dict[str, results.Content] = {}
    if fetched.report_html is not None:
        files["report.html"] = fetched.report_html
    files["configs/benchmark.yaml"] = yaml.safe_dump(dict(fetched.benchmark), sort_keys=False)
    for name, text in fetched.configs.items():
        files[f"configs/{name}"] = text
    for name, text in fetched.logs.items():
        files[f"logs/{name}"] = text
    if fetched.manager_log:
        files["logs/manager.log"] = fetched.manager_log
    for i, resp in fetched.responses.items():
        files[f"prometheus/round-{i}.json"] = json.dumps(resp.to_json(), indent=1,
                                                         sort_keys=True)
    if fetched.snapshot is not None:
        files["prometheus/snapshot.tar.gz"] = fetched.snapshot
    files["versions.json"] = json.dumps(dict(fetched.versions), indent=2, sort_keys=True)
    path = results.write_bundle(results_root, summary, files,
                                lambda st, s: plots.render(st, s, plotted))
    return path, summary


def rejudge(bundle: Path, thresholds: Thresholds | None = None) -> results.Summary:
    """A bundle judged again by this fabperf, from what `launch bench` kept: summary.json
    (the rounds as asked and Caliper's numbers), prometheus/round-<i>.json (the raw
    answers), logs/manager.log and the workers' logs. `thresholds`: default, the ones the
    bundle was judged with. Nothing is written; the re-judging tests and a person who
    wants today's verdict on an old run use it."""
    old = results.load(bundle)
    where = str(bundle / results.SUMMARY)
    t = thresholds or Thresholds.from_mapping(old.thresholds, source=where, path="thresholds")
    plans = [summarize.RoundPlan(r.index, r.label, r.workload, r.requested_tps,
                                 r.rate_control, None, r.channel,
                                 workloads.read_only(r.workload)) for r in old.rounds]
    rows = [report.RoundResult(r.label, r.succeeded, r.failed, r.send_rate_tps,
                               r.latency.max, r.latency.min, r.latency.avg, r.throughput_tps,
                               r.source)
            for r in old.rounds if r.source != "none"]
    mlog_path = bundle / "logs" / "manager.log"
    mlog = report.parse_manager_log(mlog_path.read_text().splitlines()) \
        if mlog_path.is_file() else None
    responses = {}
    for r in old.rounds:
        p = bundle / "prometheus" / f"round-{r.index}.json"
        if p.is_file():
            responses[r.index] = RoundResponses.from_json(json.loads(p.read_text()))
    logs = {str(p.relative_to(bundle / "logs")): p.read_text(errors="replace")
            for p in sorted((bundle / "logs").rglob("*.log"))} if (bundle / "logs").is_dir() \
        else {}
    # the notes a summary derives from its rounds are derived again
    notes = [n for n in old.notes if not (n.startswith("round ") and "ledger cross-check" in n)]
    byof = any(n.startswith("BYOF:") for n in old.notes)
    summary, _ = summarize.summarize(
        environment=old.environment, stamp=old.stamp, status=old.status,
        started_at=old.started_at, finished_at=old.finished_at, plans=plans, report=rows,
        mlog=mlog, responses=responses, thresholds=t, caliper=old.caliper,
        timings=old.timings, notes=notes,
        ledger_expected=not any(n.startswith("BYOF: no operations endpoint") for n in notes),
        fabric_exporters=not byof, logs=logs)
    return summary
