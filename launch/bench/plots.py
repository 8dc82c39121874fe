"""The run's plots (matplotlib, Agg, PNG) and index.html, which shows them with the summary
table: a bundle is readable in any browser without Grafana.

    plots/rates.png    per round: Caliper's send rate, finished rate by status, and the
                       ledger's committed rate (what Fabric actually validated)
    plots/latency.png  per round: p50 / p95 / p99 and mean latency of successful tx
    plots/cpu.png      per round: CPU of the worker VMs' Caliper processes next to the
                       peers, orderers and chaincode (share of each VM's vCPUs)
"""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Sequence
from pathlib import Path

from launch.bench.results import TABLE_HEAD, Staging, Summary, table_rows
from launch.bench.signals import Point, RoundSignals

PLOTS = ("rates", "latency", "cpu")
TITLES = {"rates": "Send rate vs committed throughput (TPS)",
          "latency": "Latency of successful transactions (s)",
          "cpu": "CPU: Caliper workers vs Fabric (share of the VM's vCPUs)"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rel(points: Sequence[Point], t0: float) -> tuple[list[float], list[float]]:
    return [t - t0 for t, _ in points], [v for _, v in points]


def _lines(name: str, sig: RoundSignals) -> list[tuple[str, Sequence[Point]]]:
    s = sig.series
    if name == "rates":
        out: list[tuple[str, Sequence[Point]]] = [
            ("sent", pts) for pts in s.get("send_rate", {}).values()]
        out += [(f"finished {k}", pts) for k, pts in s.get("finish_rate", {}).items()]
        out += [("committed (ledger)", pts) for pts in s.get("committed_rate", {}).values()]
        return out
    if name == "latency":
        out = [(q, pts) for q in ("latency_p50", "latency_p95", "latency_p99")
               for pts in s.get(q, {}).values()]
        out = [(q.replace("latency_", ""), pts) for q, pts in out]
        return out + ([("mean", sig.latency)] if sig.latency else [])
    return sorted(s.get("cpu_by_group", {}).items())


def render_plots(out_dir: Path, rounds: Sequence[tuple[str, float, RoundSignals]]) -> list[Path]:
    """One PNG per plot kind, one panel per round ((label, window start, signals))."""
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
        evidence.append(f"<h3>{e(r.label)}: {e(str(r.verdict.get('verdict')))}</h3>"
                        f"<ul>{items or '<li>no rule fired</li>'}</ul>"
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
{len(summary.caliper.get("worker_vms", []))} VMs. Caliper counts failed transactions in its
send rate and throughput: failures are shown next to every TPS figure; "ledger" is what the
peers committed as valid.</p>
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
    paths = render_plots(st.dir / "plots", rounds)
    rel = [str(p.relative_to(st.dir)) for p in paths]
    st.write("index.html", index_html(summary, rel))
