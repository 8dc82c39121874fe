"""index.html of a results bundle opened in a real headless browser (Debian's chromium):
the page renders (the screenshot is not blank) and every plot <img> loaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from bench_scenarios import SCENARIOS, report_html, totals

from fabkit import runner
from launch.bench import collect, prometheus
from launch.spec.thresholds import Thresholds

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests/data/bench"
BROWSER = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]
# Marks <body> once every image has loaded (or failed): the DOM dump then says which.
CHECK = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute('data-images', ok + '/' + imgs.length);
});
</script>"""


def bundle(tmp_path: Path) -> Path:
    """A bundle of the two recorded rounds (overdrive: load-generator-bound, saturate:
    fabric-bound), as collect.write publishes it."""
    benchmark: dict = {"test": {"workers": {"number": 2}, "rounds": []}}
    responses, rows = {}, []
    recorded = [s for s in SCENARIOS.values()
                if s.name in ("load-generator-bound", "fabric-bound")]
    for i, s in enumerate(recorded):
        doc = json.loads((DATA / s.name / "round-0.json").read_text())
        responses[i] = prometheus.RoundResponses.from_json({**doc, "round_index": i})
        succ, fail, send, tput, avg = totals(s)
        rows.append((s.label, succ, fail, send, s.latency_end + 0.4, s.latency_start / 2,
                     avg, tput))
        benchmark["test"]["rounds"].append({
            "label": s.label, "txDuration": 60,
            "rateControl": {"type": "fixed-rate", "opts": {"tps": s.requested}},
            "workload": {"module": "workloads/create-asset.js"}})
    f = collect.Fetched(environment="local", stamp="20261201T203000Z", started_at="s",
                        finished_at="f", status="complete", benchmark=benchmark,
                        report_html=report_html(rows), responses=responses,
                        caliper={"workers": 2, "worker_vms": [{"host": "caliper"}]})
    path, summary = collect.write(tmp_path / "results", f, Thresholds())
    assert [r.verdict["verdict"] for r in summary.rounds] == [s.name for s in recorded]
    return path


@pytest.mark.skipif(BROWSER is None, reason="chromium is not installed (apt-get install chromium)")
def test_index_html_renders_its_table_and_every_plot(tmp_path: Path) -> None:
    path = bundle(tmp_path)
    page = (path / "index.html").read_text()
    assert page.count("<img ") == 3
    probe = path / "probe.html"       # the same page plus the image check, beside it
    probe.write_text(page.replace("</body>", CHECK + "</body>"))
    profile = tmp_path / "profile"
    dom = runner.run([BROWSER, *FLAGS, f"--user-data-dir={profile}",
                      "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                     timeout=120, log_path=tmp_path / "chromium.log", what="chromium")
    assert 'data-images="3/3"' in dom.stdout, dom.stdout[-2000:]
    assert "overdrive" in dom.stdout and "fabric-bound" in dom.stdout
    shot = tmp_path / "shot.png"
    runner.run([BROWSER, *FLAGS, f"--user-data-dir={profile}-2", "--window-size=1280,1800",
                "--virtual-time-budget=10000", f"--screenshot={shot}",
                (path / "index.html").as_uri()], timeout=120,
               log_path=tmp_path / "chromium.log", what="chromium")
    import matplotlib.image

    px = matplotlib.image.imread(str(shot))[..., :3]
    not_white = (px.sum(axis=2) < 2.9).mean()
    colours = len({tuple(p) for p in (px[::7, ::7].reshape(-1, 3) * 32).astype(int)})
    assert not_white > 0.02, f"screenshot looks blank ({not_white:.3%} non-white)"
    assert colours > 20, f"screenshot has only {colours} colours: no plots drawn?"
