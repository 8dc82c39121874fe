"""A run's Summary from what it measured: Caliper's numbers, the manager log's windows,
Prometheus' answers, the thresholds. Pure; the live run and recorded tests both use it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from launch.bench import failures as failures_mod
from launch.bench import ledger as ledger_mod
from launch.bench import workloads
from launch.bench.prometheus import RoundResponses
from launch.bench.report import ManagerLog, RoundLog, RoundResult
from launch.bench.results import Latency, RoundSummary, Summary
from launch.bench.signals import RoundSignals, absent, from_responses
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
    channel: str | None = None       # the channel of the round's contract (None: unknown)
    read_only: bool | None = None    # launch.bench.workloads (None: unknown)


def round_plans(benchmark: Mapping[str, Any], channels: Mapping[str, str] | None = None
                ) -> list[RoundPlan]:
    """The rounds of a rendered benchmark config (launch.render.caliper.benchmark). `channels`:
    Caliper contract id -> its channel (the network config's), so each round knows the
    channel its transactions go to."""
    out = []
    for i, r in enumerate(benchmark["test"]["rounds"]):
        rc = r.get("rateControl", {})
        tps = rc.get("opts", {}).get("tps") if rc.get("type") == "fixed-rate" else None
        workload = r.get("workload", {})
        module = workload.get("module", "")
        contract = (workload.get("arguments") or {}).get("contractId")
        out.append(RoundPlan(i, r["label"], module,
                             float(tps) if tps is not None else None, dict(rc),
                             r.get("txDuration"),
                             (channels or {}).get(contract) if contract else None,
                             workloads.read_only(module)))
    return out


def _signals(responses: RoundResponses | None, log: RoundLog | None,
             fabric_exporters: bool, fetch_note: str) -> RoundSignals:
    """The round's signals: Prometheus' (or every one missing, saying why), with the
    manager log's in-flight counts when they have at least as many points as the pushed
    ones, and what a BYOF network cannot have marked as such.

    The manager logs Caliper's own count of unfinished transactions every second (fabperf
    sets caliper-progress-reporting-interval; older bundles every 5 s) from the round's
    start, at the time it counted; the pushed counters reach Prometheus a scrape (up to
    5 s) after each push, every 5 s, so their series has no point in the round's first
    5-10 s (issue 24's matrix: 15 s rounds got 2 pushed samples, too few for the backlog
    test)."""
    if responses is not None:
        sig = from_responses(responses)
    else:
        sig = absent("no Prometheus answers for the round" +
                     (f" ({fetch_note})" if fetch_note else
                      " (the monitor did not answer or its queries failed: see the notes)"))
    missing = dict(sig.missing)
    logged = log.inflight() if log is not None else ()
    if len(logged) >= 2 and len(logged) >= len(sig.inflight):
        sig = replace(sig, inflight=logged, inflight_source="manager log")
        missing.pop("inflight", None)
    unavailable: dict[str, str] = {}
    if not fabric_exporters:
        why = "a BYOF network: fabperf runs no exporter on the user's Fabric hosts"
        unavailable = {"fabric_vm_cpu": why, "disk_busy": why}
        if "fabric_cpu" in missing and responses is not None:
            missing["fabric_cpu"] = ("no operations endpoint of the BYOF spec gives its host's "
                                     "cpus (operations[].cpus), so fabperf cannot see "
                                     "Fabric's CPU")
        for k in unavailable:
            missing.pop(k, None)
    return replace(sig, missing=missing, unavailable=unavailable)


def _ledger(plan: RoundPlan, result: RoundResult | None, responses: RoundResponses | None,
            thresholds: Thresholds, expected: bool) -> ledger_mod.LedgerCheck:
    succeeded = result.succeeded if result else 0
    if not expected:
        return ledger_mod.skipped(succeeded, ledger_mod.SKIPPED_BYOF, read_only=plan.read_only)
    if responses is None or result is None:
        return ledger_mod.skipped(succeeded, "no Prometheus data for the round",
                                  flagged=result is not None and plan.read_only is not True,
                                  read_only=plan.read_only)
    w = responses.window
    if responses.ledger_samples is not None:
        until = responses.ledger_at if responses.ledger_at is not None else w.end
        # a read-only round commits nothing of its own: its first step is all preparation
        bound = ledger_mod.round_bound(w.start, 0.0 if plan.read_only else result.send_rate,
                                       result.min_latency)
        counts = ledger_mod.counts_from_samples(responses.ledger_samples, w.start, until,
                                                bound)
    else:
        counts = ledger_mod.counts_from_edges(responses.ledger_before, responses.ledger_after)
    return ledger_mod.cross_check(counts, succeeded, channel=plan.channel,
                                  tolerance=thresholds.crosscheck_tolerance,
                                  read_only=plan.read_only)


def summarize_round(plan: RoundPlan, result: RoundResult | None, log: RoundLog | None,
                    responses: RoundResponses | None, thresholds: Thresholds,
                    interrupted: bool = False, ledger_expected: bool = True, *,
                    fabric_exporters: bool = True,
                    worker_failures: Sequence[failures_mod.LoggedFailure] = (),
                    worker_logs: int = 0, fetch_note: str = ""
                    ) -> tuple[RoundSummary, RoundSignals]:
    """One RoundSummary (and the signals, for the plots). `ledger_expected` False: no
    operations metrics are scraped (a BYOF spec without them), the cross-check is skipped;
    `fabric_exporters` False: no node_exporter/process-exporter on the Fabric hosts (BYOF);
    `worker_failures`: the failed transactions the workers logged (every round's; this
    round's are picked by its window) out of `worker_logs` logs."""
    signals = _signals(responses, log, fabric_exporters, fetch_note)
    if log is not None and log.error:
        status = "failed"
    elif result is not None:
        status = "completed"
    else:
        status = "interrupted" if interrupted else "missing"
    succeeded = result.succeeded if result else 0
    failed = result.failed if result else 0
    window = None
    if responses is not None:
        w = responses.window
        window = {"start": w.start, "end": w.end, "seconds": round(w.end - w.start, 3)}
    elif log is not None and log.window:
        window = {"start": log.window[0], "end": log.window[1],
                  "seconds": round(log.window[1] - log.window[0], 3)}
    numbers = RoundNumbers(plan.requested_tps, result.send_rate if result else None,
                           result.throughput if result else None, succeeded, failed,
                           result.avg_latency if result else None,
                           window["start"] if window else None)
    ledger = _ledger(plan, result, responses, thresholds, ledger_expected)
    why = failures_mod.group(worker_failures,
                             (window["start"], window["end"]) if window else None,
                             logs_read=worker_logs)
    why = replace(why, invalid_by_code=dict(ledger.invalid_by_code),
                  unreachable=dict(signals.fabric_down))
    verdict = judge(numbers, signals, thresholds, why)
    seconds = window["seconds"] if window and window["seconds"] > 0 else None
    goodput = round(succeeded / seconds, 3) if seconds and result else None
    ledger_goodput = round(ledger.committed / seconds, 3) \
        if seconds and ledger.applicable and ledger.committed is not None \
        and not ledger.read_only else None
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
        window=window, ledger=ledger.to_json(), verdict=verdict.to_json(),
        source=result.source if result else "none",
        error=log.error if log is not None else "",
        goodput_tps=goodput, ledger_goodput_tps=ledger_goodput, channel=ledger.channel,
    ), signals


def worker_failures(logs: Mapping[str, str]) -> tuple[list[failures_mod.LoggedFailure], int]:
    """The failed transactions of every worker log (logs/<host>/caliper-worker@N.log) and
    how many such logs there were."""
    found: list[failures_mod.LoggedFailure] = []
    n = 0
    for name, text in logs.items():
        if "caliper-worker@" in name:
            n += 1
            found += failures_mod.parse_worker_log(text.splitlines())
    return found, n


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
              notes: Sequence[str] = (), ledger_expected: bool = True,
              fabric_exporters: bool = True, logs: Mapping[str, str] | None = None
              ) -> tuple[Summary, list[tuple[str, float, RoundSignals]]]:
    """The Summary of a run and (label, window start, signals) per round for the plots.
    `logs`: the bundle's logs/ (name -> text): the workers' say why transactions failed."""
    failed_tx, n_logs = worker_failures(logs or {})
    by_label = results_by_label(report, mlog)
    round_logs = {r.index: r for r in mlog.rounds} if mlog is not None else {}
    rounds = []
    plotted = []
    all_notes = list(notes)
    if not report and by_label:
        all_notes.append("Caliper did not write report.html: the counts come from the tables "
                         "the manager logged per round")
    for p in plans:
        fetch_note = next((n for n in notes
                           if n.startswith(f"Prometheus queries of round {p.index + 1}:")), "")
        rs, sig = summarize_round(p, by_label.get(p.label), round_logs.get(p.index),
                                  responses.get(p.index), thresholds,
                                  interrupted=status == "interrupted",
                                  ledger_expected=ledger_expected,
                                  fabric_exporters=fabric_exporters,
                                  worker_failures=failed_tx, worker_logs=n_logs,
                                  fetch_note=fetch_note)
        rounds.append(rs)
        plotted.append((p.label, rs.window["start"] if rs.window else 0.0, sig))
        if rs.ledger.get("flagged"):
            all_notes.append(f"round {p.label}: the ledger cross-check is flagged: "
                             f"{rs.ledger.get('note')} (tolerance "
                             f"{thresholds.crosscheck_tolerance:.0%})")
    return Summary(environment=environment, stamp=stamp, status=status,
                   started_at=started_at, finished_at=finished_at, rounds=tuple(rounds),
                   thresholds=thresholds.to_json(), caliper=dict(caliper),
                   percentile_source=PERCENTILE_SOURCE, timings=dict(timings or {}),
                   notes=tuple(all_notes)), plotted
