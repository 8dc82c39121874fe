"""The run's plots (matplotlib, Agg, PNG) and index.html, which shows them with the summary
table: a bundle is readable in any browser without Grafana.

    plots/rates.png    per round: Caliper's send rate, finished rate by status, and the
                       ledger's committed rate (what Fabric actually validated)
    plots/latency.png  per round: p50 / p95 / p99 and mean latency of successful tx
    plots/cpu.png      per round: what the verdict's CPU rules read, with their thresholds
                       drawn: each worker VM's total (its container's under nspawn), the
                       busiest worker process as a share of its one core, each Fabric VM's
                       total and its peer / orderer / chaincode process groups (share of
                       the VM's vCPUs)
"""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Mapping, Sequence
from pathlib import Path

from launch.bench.results import TABLE_HEAD, TABLE_NOTE, Staging, Summary, table_rows
from launch.bench.signals import Point, RoundSignals

PLOTS = ("rates", "latency", "cpu")
TITLES = {"rates": "Send rate vs committed throughput (TPS)",
          "latency": "Latency of successful transactions (s)",
          "cpu": "CPU as the verdict judged it (VMs and Fabric groups: share of the VM's vCPUs; "
                 "the busiest worker process: share of one core)"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rel(points: Sequence[Point], t0: float) -> tuple[list[float], list[float]]:
    return [t - t0 for t, _ in points], [v for _, v in points]


def _lines(name: str, sig: RoundSignals) -> list[tuple[str, Sequence[Point]]]:
    s = sig.series
    out: list[tuple[str, Sequence[Point]]]
    if name == "rates":
        out = [
            ("sent", pts) for pts in s.get("send_rate", {}).values()]
        out += [(f"finished {k}", pts) for k, pts in s.get("finish_rate", {}).items()]
        out += [("committed (ledger)", pts) for pts in s.get("committed_rate", {}).values()]
        return out
    if name == "latency":
        out = [(q, pts) for q in ("latency_p50", "latency_p95", "latency_p99")
               for pts in s.get(q, {}).values()]
        out = [(q.replace("latency_", ""), pts) for q, pts in out]
        return out + ([("mean", sig.latency)] if sig.latency else [])
    return cpu_lines(sig)


def cpu_lines(sig: RoundSignals) -> list[tuple[str, Sequence[Point]]]:
    """The series the CPU rules judged: worker VM totals, the busiest worker process (the
    one the verdict names), Fabric VM totals and Fabric process groups."""
    s = sig.series
    out: list[tuple[str, Sequence[Point]]] = [
        (f"worker VM {k}", pts) for k, pts in sorted(s.get("worker_vm_cpu", {}).items())]
    busiest = max(sig.worker_process_cpu.items(), key=lambda kv: kv[1], default=None)
    procs = s.get("worker_process_cpu", {})
    if busiest is not None:
        index = busiest[0].removeprefix("worker ")
        pts = procs.get(index, ())
        if pts:
            out.append((f"busiest worker process ({busiest[0]}, of 1 core)", pts))
    out += [(f"Fabric VM {k}", pts) for k, pts in sorted(s.get("fabric_vm_cpu", {}).items())]
    out += [(k, pts) for k, pts in sorted(s.get("cpu_by_group", {}).items())
            if not k.endswith(" caliper")]
    return out


def render_plots(out_dir: Path, rounds: Sequence[tuple[str, float, RoundSignals]],
                 thresholds: Mapping[str, float] | None = None) -> list[Path]:
    """One PNG per plot kind, one panel per round ((label, window start, signals)); the
    CPU plot draws the CPU thresholds the verdict used."""
    t = thresholds or {}
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    n = max(1, len(rounds))
    for name in PLOTS:
        fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 3.6), squeeze=False)
        for ax, (label, t0, sig) in zip(axes[0], rounds or [("no rounds", 0.0,
                                                              RoundSignals())], strict=False):
            drawn = False
            for legend, pts in _lines(name, sig):
                if pts:
                    xs, ys = _rel(pts, t0)
                    ax.plot(xs, ys, label=legend, linewidth=1.4)
                    drawn = True
            if name == "cpu" and drawn:
                for key, style in (("worker_cpu", ":"), ("fabric_cpu", "--")):
                    if key in t:
                        ax.axhline(t[key], color="#b00", linestyle=style, linewidth=1,
                                   label=f"threshold {key} {t[key]:.0%}")
            ax.set_title(f"{label}", fontsize=10)
            ax.set_xlabel("seconds into the round")
            ax.grid(alpha=0.3)
            if drawn:
                ax.set_ylim(bottom=0)
                ax.legend(fontsize=7, loc="best")
            else:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        written.append(save_figure(fig, TITLES[name], out_dir / f"{name}.png"))
    return written


def save_figure(fig, title: str, path: Path) -> Path:
    """Title, layout, PNG at 90 dpi, close: how every fabperf plot is written."""
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _pyplot().close(fig)
    return path


_CSS = """body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
th,td{border:1px solid #999;padding:4px 8px;text-align:right}
th{background:#eee}td:first-child,td:last-child{text-align:left}
.flag{color:#b00;font-weight:bold}img{max-width:100%;border:1px solid #ccc;margin:.5em 0}
.small{font-size:12px;color:#555}"""


def index_html(summary: Summary, plots: Sequence[str]) -> str:
    """index.html: title, status, the summary table, each verdict's evidence, the plots."""
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in TABLE_HEAD)
    body = []
    for row, r in zip(table_rows(summary), summary.rounds, strict=True):
        cells = []
        for i, c in enumerate(row):
            flag = (TABLE_HEAD[i] == "fail" and r.failed) or \
                (TABLE_HEAD[i] == "ledger" and r.ledger.get("flagged"))
            cells.append(f"<td class=\"flag\">{e(c)}</td>" if flag else f"<td>{e(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    evidence = []
    for r in summary.rounds:
        items = "".join(f"<li>{e(c['detail'])}</li>" for c in r.verdict.get("checks", [])
                        if c.get("fired"))
        missing = "".join(f"<li class=\"flag\">{e(rule)}: {e(why)}</li>"
                          for rule, why in (r.verdict.get("missing") or {}).items())
        why = r.verdict.get("failures") or {}
        reasons = "".join(f"<li>{e(str(n))} x {e(reason)}</li>"
                          for reason, n in (why.get("by_reason") or {}).items())
        reasons += "".join(f"<li>{e(str(n))} committed invalid: {e(code)}</li>"
                           for code, n in (why.get("invalid_by_code") or {}).items())
        reasons += "".join(f"<li>{e(node)} down for about {e(str(sec))} s</li>"
                           for node, sec in (why.get("unreachable") or {}).items())
        ledger = r.ledger.get("note")
        evidence.append(f"<h3>{e(r.label)}: {e(str(r.verdict.get('verdict')))}</h3>"
                        f"<p>{e(str(r.verdict.get('summary', '')))}</p>"
                        f"<ul>{items or '<li>no rule fired</li>'}</ul>"
                        + (f"<p>Why transactions failed:</p><ul>{reasons}</ul>"
                           if reasons else "")
                        + (f"<p>Missing data:</p><ul>{missing}</ul>" if missing else "")
                        + (f"<p>Ledger: {e(str(ledger))}</p>" if ledger else "")
                        + (f"<p class=\"flag\">{e(r.error)}</p>" if r.error else ""))
    imgs = "".join(f"<h2>{e(TITLES.get(Path(p).stem, p))}</h2><img src=\"{e(p)}\" "
                   f"alt=\"{e(Path(p).stem)}\">" for p in plots)
    notes = "".join(f"<li>{e(n)}</li>" for n in summary.notes)
    generated = _dt.datetime.now(tz=_dt.UTC).isoformat(timespec="seconds")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>fabperf {e(summary.environment)} {e(summary.stamp)}</title>
<style>{_CSS}</style></head><body>
<h1>fabperf benchmark: {e(summary.environment)}, {e(summary.stamp)}</h1>
<p>status <b>{e(summary.status)}</b>; started {e(summary.started_at)}, finished
{e(summary.finished_at)}; {e(str(summary.caliper.get("workers", "?")))} Caliper workers on
{len(summary.caliper.get("worker_vms", []))} VMs. Goodput first: {e(TABLE_NOTE)} "ledger" is
the cross-check of Caliper's succeeded count against what the round's channel's peers
committed as valid.</p>
<table><tr>{head}</tr>{''.join(body)}</table>
<p class="small">Percentiles: {e(summary.percentile_source)}</p>
{''.join(evidence)}
{imgs}
<ul class="small">{notes}</ul>
<p class="small">Caliper's own report: <a href="report.html">report.html</a>; the raw data:
summary.json, prometheus/. Generated {generated}.</p>
</body></html>
"""


def render(st: Staging, summary: Summary,
           rounds: Sequence[tuple[str, float, RoundSignals]]) -> None:
    """plots/*.png and index.html into a staging bundle."""
    paths = render_plots(st.dir / "plots", rounds, summary.thresholds)
    rel = [str(p.relative_to(st.dir)) for p in paths]
    st.write("index.html", index_html(summary, rel))
