"""Caliper's report.html and the manager's log as numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabkit.errors import InputError
from launch.bench import report

DATA = Path(__file__).resolve().parents[2] / "data/bench"


def test_report_html_summary_table_as_numbers() -> None:
    rows = report.parse_report_html((DATA / "fabric-bound/report.html").read_text())
    assert len(rows) == 1
    r = rows[0]
    assert (r.label, r.succeeded, r.failed) == ("saturate", 5970, 0)
    assert r.send_rate == 99.5 and r.throughput is not None and r.throughput < r.send_rate
    assert r.avg_latency == pytest.approx(1.75) and r.source == "report.html"


def test_report_with_failures_and_dashes() -> None:
    html = (DATA / "fabric-bound/report.html").read_text()
    html = html.replace("<td>saturate</td> <td>5970</td> <td>0</td>",
                        "<td>saturate</td> <td>0</td> <td>12</td>", 1)
    html = html.replace("<td>3.40</td> <td>0.25</td> <td>1.75</td>",
                        "<td>-</td> <td>-</td> <td>-</td>", 1)
    r = report.parse_report_html(html)[0]
    assert (r.succeeded, r.failed, r.avg_latency, r.max_latency) == (0, 12, None, None)


def test_not_a_caliper_report() -> None:
    with pytest.raises(InputError, match="no Caliper result table"):
        report.parse_report_html("<html><table><tr><th>x</th></tr></table></html>")
    with pytest.raises(InputError, match="lacks the columns"):
        report.parse_report_html("<table><tr><th>Name</th><th>Succ</th></tr>"
                                 "<tr><td>a</td><td>1</td></tr></table>")
    with pytest.raises(InputError, match="column .Succ.: expected a number"):
        report.parse_report_html(
            "<table><tr>" + "".join(f"<th>{c}</th>" for c in report.COLUMNS) + "</tr><tr>"
            + "".join(f"<td>{c}</td>" for c in ("a", "x", "0", "1", "1", "1", "1", "1"))
            + "</tr></table>")


def test_manager_log_windows_progress_and_tables() -> None:
    log = report.parse_manager_log((DATA / "fabric-bound/manager.log").read_text().splitlines())
    assert log.expected_workers == 2 and log.connected and log.ready and log.finished
    (r,) = log.rounds
    assert r.label == "saturate" and r.index == 0
    start, end = r.window
    assert end - start == pytest.approx(60.0)
    assert r.progress is not None and r.progress.submitted > 0
    assert r.result is not None and r.result.succeeded == 5970
    assert r.result.source == "manager log"


def test_a_progress_line_whose_counts_fell_is_no_measurement() -> None:
    """Live, `make lab` with progress every second and 2 workers: one tick summed only the
    worker whose update had reached the manager (977 submitted, then 501, then 1052). The
    line is dropped: from the in-flight series (it read as a fall of the backlog) and from
    the progress line a user sees."""
    head = "1800000000.{} c caliper[1]: x info [caliper] [{}] "
    info = "[create Round 0 Transaction Info] - Submitted: {} Succ: {} Fail:0 Unfinished:{}"
    lines = [head.format(0, "round-orchestrator") + "Started round 1 (create)",
             head.format(1, "round-orchestrator") + "Monitors successfully started"]
    counts = ((927, 894), (977, 943), (501, 484), (1052, 1020), (1127, 1097))
    lines += [f"18000000{10 + k}.0 c caliper[1]: x info [caliper] [default-observer] "
              + info.format(sub, ok, sub - ok) for k, (sub, ok) in enumerate(counts)]
    (r,) = report.parse_manager_log(lines).rounds
    assert [p.submitted for p in r.history] == [927, 977, 1052, 1127]
    assert [v for _, v in r.inflight()] == [33.0, 34.0, 32.0, 30.0]
    assert r.progress is not None and r.progress.submitted == 1127


def test_manager_log_of_a_failed_and_an_unfinished_round() -> None:
    lines = [
        "1800000000.0 c caliper[1]: x info [caliper] [worker-orchestrator] Waiting for 6 "
        "workers to be connected...",
        "1800000001.0 c caliper[1]: x info [caliper] [round-orchestrator] Started round 1 (a)",
        "1800000002.0 c caliper[1]: x error [caliper] [round-orchestrator] Failed round 1 (a): "
        "Error: endorsement failed",
        "1800000003.0 c caliper[1]: x info [caliper] [round-orchestrator] Started round 2 (b)",
        "1800000004.0 c caliper[1]: x info [caliper] [round-orchestrator] Monitors "
        "successfully started",
    ]
    log = report.parse_manager_log(lines)
    assert log.expected_workers == 6 and not log.connected and not log.finished
    a, b = log.rounds
    assert a.error == "Error: endorsement failed" and a.window is None
    assert b.measured_start == 1800000004.0 and b.window is None
