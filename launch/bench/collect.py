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

from launch.bench import plots, report, results, summarize
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
        plans=summarize.round_plans(fetched.benchmark), report=rows, mlog=mlog,
        responses=fetched.responses, thresholds=thresholds, caliper=fetched.caliper,
        timings=fetched.timings, notes=notes, ledger_expected=fetched.ledger_expected)
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
