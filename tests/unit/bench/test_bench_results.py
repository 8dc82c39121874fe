"""The results bundle: layout, summary.json schema, atomic publish, no private key, list/show."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from fabkit.errors import ExternalError, InputError
from launch.bench import collect, prometheus, results
from launch.spec.thresholds import Thresholds

# matplotlib's font manager runs fc-list once to build its font cache
pytestmark = pytest.mark.subprocess
DATA = Path(__file__).resolve().parents[2] / "data/bench"
PEM_KEY = ("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n"
           "-----END PRIVATE KEY-----\n")
BENCH = {"test": {"name": "fabperf-local", "workers": {"number": 2}, "rounds": [
    {"label": "saturate", "txDuration": 60, "rateControl": {"type": "fixed-rate",
                                                            "opts": {"tps": 100}},
     "workload": {"module": "workloads/create-asset.js", "arguments": {}}}]}}
NETWORK = {"name": "n", "version": "2.0.0", "organizations": [{"mspid": "Org1MSP",
           "identities": {"certificates": [{"name": "User1",
                                            "clientPrivateKey": {"pem": PEM_KEY},
                                            "clientSignedCert": {"pem": "CERT"}}]}}]}


def fetched(stamp: str = "20261201T203000Z", **kw) -> collect.Fetched:
    doc = json.loads((DATA / "fabric-bound/round-0.json").read_text())
    base = dict(
        environment="local", stamp=stamp, started_at="2026-12-01T20:30:00+00:00",
        finished_at="2026-12-01T20:32:00+00:00", status="complete", benchmark=BENCH,
        report_html=(DATA / "fabric-bound/report.html").read_text(),
        manager_log=(DATA / "fabric-bound/manager.log").read_text(),
        responses={0: prometheus.RoundResponses.from_json(doc)},
        logs={"caliper/caliper-worker@1.log": "worker log\n"},
        configs={"networkconfig-caliper.yaml": collect.network_config_text(
            yaml.safe_dump(NETWORK))},
        versions={"fabperf": "0.1.0"}, caliper={"workers": 2, "worker_vms": [{"host": "c"}]})
    base.update(kw)
    return collect.Fetched(**base)


def test_bundle_layout_and_summary(tmp_path: Path) -> None:
    path, summary = collect.write(tmp_path, fetched(), Thresholds())
    assert path == tmp_path / "local" / "20261201T203000Z"
    names = {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}
    assert {"summary.json", "index.html", "report.html", "plots/rates.png",
            "plots/latency.png", "plots/cpu.png", "prometheus/round-0.json",
            "configs/benchmark.yaml", "configs/networkconfig-caliper.yaml", "versions.json",
            "logs/manager.log", "logs/caliper/caliper-worker@1.log"} <= names
    doc = json.loads((path / "summary.json").read_text())
    assert doc["schema"] == results.SCHEMA and doc["status"] == "complete"
    r = doc["rounds"][0]
    assert r["label"] == "saturate" and r["succeeded"] == 5970 and r["failed"] == 0
    assert r["send_rate_tps"] == 99.5 and r["verdict"]["verdict"] == "fabric-bound"
    assert r["latency"]["p95"] is not None and r["ledger"]["flagged"] is True
    # the summary agrees with report.html's table
    assert results.load(path) == summary
    assert not list((tmp_path / "local").glob(".*partial*"))
    for png in path.glob("plots/*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    html = (path / "index.html").read_text()
    assert "fabric-bound" in html and 'src="plots/rates.png"' in html
    assert "99.5 (0 failed)" in html


def test_network_configs_lose_their_private_keys(tmp_path: Path) -> None:
    path, _ = collect.write(tmp_path, fetched(), Thresholds())
    text = (path / "configs/networkconfig-caliper.yaml").read_text()
    assert "PRIVATE KEY" not in text and "private key removed" in text and "CERT" in text


def test_a_key_anywhere_stops_the_bundle(tmp_path: Path) -> None:
    with pytest.raises(ExternalError, match="private key material found in logs/leak.log"):
        collect.write(tmp_path, fetched(logs={"leak.log": PEM_KEY}), Thresholds())
    assert not (tmp_path / "local" / "20261201T203000Z").exists()
    assert not list((tmp_path / "local").iterdir())


def test_interrupt_while_writing_leaves_no_half_bundle(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from launch.bench import plots

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "render_plots", boom)
    with pytest.raises(KeyboardInterrupt):
        collect.write(tmp_path, fetched(), Thresholds())
    assert not list((tmp_path / "local").iterdir())


def test_interrupted_run_keeps_what_the_manager_logged(tmp_path: Path) -> None:
    path, summary = collect.write(tmp_path, fetched(report_html=None, status="interrupted"),
                                  Thresholds())
    assert summary.status == "interrupted" and not (path / "report.html").exists()
    r = summary.rounds[0]
    assert r.source == "manager log" and r.succeeded == 5970
    assert any("report.html" in n for n in summary.notes)


def test_list_and_show(tmp_path: Path) -> None:
    collect.write(tmp_path, fetched("20261201T203000Z"), Thresholds())
    collect.write(tmp_path, fetched("20261201T213000Z"), Thresholds())
    (tmp_path / "local" / ".20261201T223000Z.partial-1").mkdir()
    broken = tmp_path / "local" / "20261201T233000Z"
    broken.mkdir()
    (broken / "summary.json").write_text("{}")
    found = results.list_bundles(tmp_path)
    assert [b.path.name for b in found] == ["20261201T203000Z", "20261201T213000Z",
                                            "20261201T233000Z"]
    assert found[2].summary is None and "schema" in found[2].error
    assert results.list_bundles(tmp_path, "other") == []
    table = results.format_table(found[0].summary)
    assert "saturate" in table and "99.5 (0 failed)" in table and "fabric-bound" in table
    with pytest.raises(InputError, match="a results bundle"):
        results.load(tmp_path / "nothing")


def test_existing_bundle_is_not_overwritten(tmp_path: Path) -> None:
    collect.write(tmp_path, fetched(), Thresholds())
    with pytest.raises(InputError, match="exists already"):
        collect.write(tmp_path, fetched(), Thresholds())


def test_files_are_not_world_writable(tmp_path: Path) -> None:
    path, _ = collect.write(tmp_path, fetched(), Thresholds())
    for p in path.rglob("*"):
        assert not os.stat(p).st_mode & 0o002


def test_check_bundle_names_what_is_wrong(tmp_path: Path) -> None:
    path, _ = collect.write(tmp_path, fetched(), Thresholds())
    problems = results.check_bundle(path)
    # this recorded round is fabric-bound with a ledger 30 % short, and has no snapshot
    assert "missing prometheus/snapshot.tar.gz" in problems
    assert any(p.startswith("round saturate: ledger cross-check 4") for p in problems)
    assert not [p for p in problems if "report.html" in p or "private key" in p]
    doc = json.loads((path / "summary.json").read_text())
    doc["rounds"][0]["succeeded"] = 1
    (path / "summary.json").write_text(json.dumps(doc))
    assert any("summary.json (1, 0" in p for p in results.check_bundle(path))


def test_older_bundles_still_load_and_get_goodput_computed(tmp_path: Path) -> None:
    """summary.json of the live bundles, written before goodput_tps existed: readers
    compute succeeded / window seconds (the contract for older bundles)."""
    for case in ("fabric-bound-live", "load-generator-bound-live"):
        old = results.load(DATA / case)
        r = old.rounds[0]
        assert r.window is not None
        assert r.goodput_tps is None and r.goodput() == pytest.approx(
            r.succeeded / r.window["seconds"], abs=0.001)
        assert results.format_table(old)        # shows without the new fields


def test_the_cpu_plot_shows_what_the_verdict_judged_with_its_thresholds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: per-process-group shares only (the worker process at 2-8 % while the
    verdict's evidence was the worker VM at 96-100 %)."""
    from launch.bench import plots, signals

    doc = json.loads((DATA / "fabric-bound/round-0.json").read_text())
    sig = signals.from_responses(prometheus.RoundResponses.from_json(doc))
    legends = [legend for legend, pts in plots.cpu_lines(sig) if pts]
    busiest = max(sig.worker_process_cpu, key=lambda k: sig.worker_process_cpu[k])
    assert legends[0] == "worker VM caliper"
    assert f"busiest worker process ({busiest}, of 1 core)" in legends
    assert "Fabric VM fabric" in legends and "fabric peer" in legends
    assert not [x for x in legends if x.endswith(" caliper") and "VM" not in x]
    drawn: list[tuple[float, str]] = []

    import matplotlib.axes

    real = matplotlib.axes.Axes.axhline

    def spy(self: Any, y: float = 0, *a: Any, **kw: Any) -> Any:
        drawn.append((y, kw.get("label", "")))
        return real(self, y, *a, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "axhline", spy)
    plots.render_plots(tmp_path, [("saturate", 0.0, sig)], Thresholds(worker_cpu=0.8).to_json())
    assert (0.8, "threshold worker_cpu 80%") in drawn
    assert (0.85, "threshold fabric_cpu 85%") in drawn


def test_index_html_shows_why_a_round_failed_and_what_is_missing() -> None:
    from launch.bench import plots

    failing = collect.rejudge(DATA / "peer-stopped-synthetic")
    page = plots.index_html(failing, [])
    assert "Why transactions failed:" in page and "peer unavailable" in page
    assert "fabric/peer down for about 30" in page and "goodput TPS" in page
    assert "restarted during the round" in page
    unsure = collect.rejudge(DATA / "fabric-bound-live", Thresholds(eventloop_lag_s=0.5))
    page = plots.index_html(unsure, [])
    assert "Missing data:" in page and "nodejs_eventloop_lag_seconds" in page
