"""The comparison as a page: DIR/index.html, DIR/comparison.json and DIR/plots/*.png.

    plots/throughput.png  per round (one panel each): every repeat of every group as a dot,
                          its median as a bar, min-max as the whisker
    plots/latency.png     the same for latency p50 and p95
    plots/send_rate.png   the same for Caliper's send rate (is the load what was asked?)

Below the table, each group's own run plots (rates.png of its latest bundle) side by side,
and a link to every bundle's index.html. matplotlib through launch.bench.plots (Agg, PNG).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
from collections.abc import Sequence
from pathlib import Path

from fabkit.atomic import write_atomic
from launch.bench import plots as bench_plots
from launch.compare import table

PLOTS = {"goodput": (("goodput",), "Goodput over the repeats (TPS, succeeded per second)"),
         "latency": (("p50", "p95"), "Latency of successful transactions over the repeats (s)"),
         "send_rate": (("send_rate",), "Send rate over the repeats (TPS)")}


def render_plots(c: table.Comparison, out_dir: Path) -> list[Path]:
    """One PNG per PLOTS entry, one panel per round label."""
    plt = bench_plots._pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    n = max(1, len(c.rounds))
    for name, (keys, title) in PLOTS.items():
        fig, axes = plt.subplots(1, n, figsize=(max(4.5, 1.6 * len(c.groups)) * n, 3.6),
                                 squeeze=False)
        for ax, r in zip(axes[0], c.rounds, strict=False):
            width = 0.8 / len(keys)
            for k, key in enumerate(keys):
                for i, g in enumerate(r.groups):
                    s = g.figures[key]
                    x = i + (k - (len(keys) - 1) / 2) * width
                    if s.median is None or s.min is None or s.max is None:
                        continue
                    ax.bar(x, s.median, width=width * 0.9, alpha=0.35,
                           color=f"C{k}", label=key if i == 0 and len(keys) > 1 else None)
                    ax.errorbar(x, s.median, yerr=[[s.median - s.min], [s.max - s.median]],
                                fmt="none", ecolor="black", capsize=4, linewidth=1)
                    ax.plot([x] * s.n, s.values, "o", color=f"C{k}", markersize=4)
            ax.set_xticks(range(len(r.groups)), [g.group for g in r.groups], fontsize=8)
            ax.set_title(r.label, fontsize=10)
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3, axis="y")
            if len(keys) > 1:
                ax.legend(fontsize=7, loc="best")
        written.append(bench_plots.save_figure(fig, title, out_dir / f"{name}.png"))
    return written


def _rel(target: Path, start: Path) -> str:
    return os.path.relpath(target.resolve(), start.resolve())


def index_html(c: table.Comparison, out_dir: Path, plots: Sequence[str]) -> str:
    """The page: the table, the rule, the details, the comparison plots, each group's own."""
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in table.HEAD)
    body = []
    for row in table.table_rows(c):
        cells = []
        for h, cell in zip(table.HEAD, row, strict=True):
            flag = h.startswith("Δ") and " different" in cell
            cells.append(f"<td class=\"flag\">{e(cell)}</td>" if flag else f"<td>{e(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    details = "".join(f"<li>{e(line)}</li>" for line in table.details(c))
    notes = "".join(f"<li>{e(n)}</li>" for n in c.notes)
    imgs = "".join(f"<h2>{e(PLOTS[Path(p).stem][1])}</h2><img src=\"{e(p)}\" "
                   f"alt=\"{e(Path(p).stem)}\">" for p in plots)
    own = []
    for g in c.groups:
        latest = g.bundles[-1]
        pic = latest / "plots" / "rates.png"
        img = (f"<img src=\"{e(_rel(pic, out_dir))}\" alt=\"rates {e(g.label)}\">"
               if pic.is_file() else "<p class=\"small\">(no plots in this bundle)</p>")
        links = " ".join(f"<a href=\"{e(_rel(b / 'index.html', out_dir))}\">{e(b.name)}</a>"
                         for b in g.bundles)
        own.append(f"<td><h3>{e(g.label)}</h3>{img}<p class=\"small\">runs: {links}</p></td>")
    generated = _dt.datetime.now(tz=_dt.UTC).isoformat(timespec="seconds")
    labels = ", ".join(g.label for g in c.groups)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>fabperf comparison: {e(labels)}</title>
<style>{bench_plots._CSS}
.side td{{vertical-align:top;text-align:left;border:none}}</style></head><body>
<h1>fabperf comparison: {e(labels)}</h1>
<p>Baseline <b>{e(c.baseline.label)}</b>. Figures are medians over the repeats, [min-max]
beside them; "n" is the number of repeats whose round completed. Caliper counts failed
transactions in its rates: the failures are in their own column.</p>
<table><tr>{head}</tr>{''.join(body)}</table>
<p class="small">Method: {e(c.method)}.</p>
<ul class="small">{details}</ul>
<ul class="small">{notes}</ul>
{imgs}
<h2>Each group's latest run (send rate vs committed throughput)</h2>
<table class="side"><tr>{''.join(own)}</tr></table>
<p class="small">The numbers: comparison.json. Generated {generated}.</p>
</body></html>
"""


def write(c: table.Comparison, out_dir: Path) -> Path:
    """plots/, comparison.json and index.html into out_dir (created); returns index.html."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = render_plots(c, out_dir / "plots")
    rel = [str(p.relative_to(out_dir)) for p in paths]
    write_atomic(out_dir / "comparison.json",
                 json.dumps(c.to_json(), indent=2, sort_keys=True) + "\n", mode=0o644)
    index = out_dir / "index.html"
    write_atomic(index, index_html(c, out_dir, rel), mode=0o644)
    return index
