"""A run's Summary from what it measured: Caliper's numbers, the manager log's windows,
Prometheus' answers, the thresholds. Pure; the live run and recorded tests both use it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from launch.bench import ledger as ledger_mod
from launch.bench.prometheus import RoundResponses
from launch.bench.report import ManagerLog, RoundLog, RoundResult
from launch.bench.results import Latency, RoundSummary, Summary
from launch.bench.signals import RoundSignals, from_responses
from launch.bench.verdict import RoundNumbers, judge
from launch.spec.thresholds import Thresholds

PERCENTILE_SOURCE = (
    "p50/p95/p99 are Prometheus histogram_quantile over the round window of the workers' "
    "pushed caliper_tx_e2e_latency histogram (successful transactions, interpolated "
    "within buckets; bounds in prometheus/round-<i>.json); the last push interval "
    "(<= 5 s) before a round ends may be missing. avg/min/max are Caliper's own (report.html).")


@dataclass(frozen=True)
class RoundPlan:
    """A round as asked: the benchmark config's view of it."""

    index: int
    label: str
    workload: str
    requested_tps: float | None
    rate_control: Mapping[str, Any]
    duration: float | None = None


def round_plans(benchmark: Mapping[str, Any]) -> list[RoundPlan]:
    """The rounds of a rendered benchmark config (launch.render.caliper.benchmark)."""
    out = []
    for i, r in enumerate(benchmark["test"]["rounds"]):
        rc = r.get("rateControl", {})
        tps = rc.get("opts", {}).get("tps") if rc.get("type") == "fixed-rate" else None
        out.append(RoundPlan(i, r["label"], r.get("workload", {}).get("module", ""),
                             float(tps) if tps is not None else None, dict(rc),
                             r.get("txDuration")))
    return out


def summarize_round(plan: RoundPlan, result: RoundResult | None, log: RoundLog | None,
                    responses: RoundResponses | None, thresholds: Thresholds,
                    interrupted: bool = False, ledger_expected: bool = True
                    ) -> tuple[RoundSummary, RoundSignals]:
    """One RoundSummary (and the signals, for the plots). `ledger_expected` False: no
    operations metrics are scraped (a BYOF spec without them), the cross-check is skipped."""
    signals = from_responses(responses) if responses is not None else RoundSignals()
    if log is not None and log.error:
        status = "failed"
    elif result is not None:
        status = "completed"
    else:
        status = "interrupted" if interrupted else "missing"
    succeeded = result.succeeded if result else 0
    failed = result.failed if result else 0
    numbers = RoundNumbers(plan.requested_tps, result.send_rate if result else None,
                           result.throughput if result else None, succeeded, failed)
    verdict = judge(numbers, signals, thresholds)
    if responses is not None and result is not None:
        check = ledger_mod.cross_check(responses.ledger_before, responses.ledger_after,
                                       succeeded, tolerance=thresholds.crosscheck_tolerance,
                                       read_only=ledger_mod.is_read_only(plan.workload),
                                       expected=ledger_expected)
        ledger = check.to_json()
    else:
        ledger = {"committed": None, "succeeded": succeeded, "per_peer": {},
                  "difference": None,
                  "flagged": result is not None and not ledger_mod.is_read_only(plan.workload),
                  "applicable": not ledger_mod.is_read_only(plan.workload),
                  "note": "no Prometheus data for the round"}
    window = None
    if responses is not None:
        w = responses.window
        window = {"start": w.start, "end": w.end, "seconds": round(w.end - w.start, 3)}
    pct = signals.percentiles
    return RoundSummary(
        index=plan.index, label=plan.label, workload=plan.workload,
        requested_tps=plan.requested_tps, rate_control=dict(plan.rate_control),
        status=status,
        send_rate_tps=result.send_rate if result else None,
        throughput_tps=result.throughput if result else None,
        succeeded=succeeded, failed=failed,
        latency=Latency(avg=result.avg_latency if result else None,
                        min=result.min_latency if result else None,
                        max=result.max_latency if result else None,
                        p50=pct.get("p50"), p95=pct.get("p95"), p99=pct.get("p99")),
        window=window, ledger=ledger, verdict=verdict.to_json(),
        source=result.source if result else "none",
        error=log.error if log is not None else "",
    ), signals


def results_by_label(report: Sequence[RoundResult] | None, mlog: ManagerLog | None
                     ) -> dict[str, RoundResult]:
    """report.html's rows when there is one, else the tables the manager logged."""
    if report:
        return {r.label: r for r in report}
    if mlog is not None:
        return {r.label: r.result for r in mlog.rounds if r.result is not None}
    return {}


def summarize(*, environment: str, stamp: str, status: str, started_at: str,
              finished_at: str, plans: Sequence[RoundPlan],
              report: Sequence[RoundResult] | None, mlog: ManagerLog | None,
              responses: Mapping[int, RoundResponses], thresholds: Thresholds,
              caliper: Mapping[str, Any], timings: Mapping[str, float] | None = None,
              notes: Sequence[str] = (), ledger_expected: bool = True
              ) -> tuple[Summary, list[tuple[str, float, RoundSignals]]]:
    """The Summary of a run and (label, window start, signals) per round for the plots."""
    by_label = results_by_label(report, mlog)
    logs = {r.index: r for r in mlog.rounds} if mlog is not None else {}
    rounds = []
    plotted = []
    all_notes = list(notes)
    if not report and by_label:
        all_notes.append("Caliper did not write report.html: the counts come from the tables "
                         "the manager logged per round")
    for p in plans:
        rs, sig = summarize_round(p, by_label.get(p.label), logs.get(p.index),
                                  responses.get(p.index), thresholds,
                                  interrupted=status == "interrupted",
                                  ledger_expected=ledger_expected)
        rounds.append(rs)
        plotted.append((p.label, rs.window["start"] if rs.window else 0.0, sig))
        if rs.ledger.get("flagged"):
            all_notes.append(f"round {p.label}: the ledger cross-check is off by more than "
                             f"{thresholds.crosscheck_tolerance:.0%}")
    return Summary(environment=environment, stamp=stamp, status=status,
                   started_at=started_at, finished_at=finished_at, rounds=tuple(rounds),
                   thresholds=thresholds.to_json(), caliper=dict(caliper),
                   percentile_source=PERCENTILE_SOURCE, timings=dict(timings or {}),
                   notes=tuple(all_notes)), plotted
