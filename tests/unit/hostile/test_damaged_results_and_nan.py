"""Issue 25, items 3, 4 and 5 through the real command line: a damaged summary.json, NaN
where a number is expected, a FIFO where a file is expected. Each ends in < 5 s with exit 2
and an error naming what is wrong; none is an internal error."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hostile_testlib import REPO, assert_refused, big_file, fifo, run_cli

from launch.cli import cli

BUNDLE = REPO / "tests/data/compare/v3.0.0/local/20261201T211500Z"
GROUP = REPO / "tests/data/compare/v2.5.12/local"
SPEC = REPO / "environments/local.yaml"
CALIBRATION = REPO / "tests/data/size/calibration-local.json"


def _bundle(tmp_path: Path, change: Any = None, raw: str | None = None) -> Path:
    """A copy of a recorded bundle's summary.json, changed by ``change(doc)`` or replaced."""
    b = tmp_path / "local" / BUNDLE.name
    b.mkdir(parents=True)
    doc = json.loads((BUNDLE / "summary.json").read_text())
    if change is not None:
        change(doc)
    (b / "summary.json").write_text(raw if raw is not None else json.dumps(doc))
    return b


def _set(path: str, value: Any) -> Any:
    def change(doc: Any) -> None:
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[int(last) if isinstance(node, list) else last] = value
    return change


# --- item 3: results show / results compare read summary.json through the boundary --------

@pytest.mark.parametrize(("change", "named"), [
    (_set("rounds.0.throughput_tps", "fast"), "rounds[0].throughput_tps"),
    (_set("rounds.0.latency.p50", "0.2 s"), "rounds[0].latency.p50"),
    (_set("rounds.0.succeeded", -3), "rounds[0].succeeded"),
    (_set("rounds.0.ledger.difference", "none"), "rounds[0].ledger.difference"),
    (_set("rounds.0.verdict.verdict", "banana"), "rounds[0].verdict.verdict"),
    (_set("rounds.0.goodput_tps", -1), "rounds[0].goodput_tps"),
    (_set("rounds.0.ledger_goodput_tps", "many"), "rounds[0].ledger_goodput_tps"),
    (_set("rounds", {"0": "x"}), "rounds"),
    (_set("rounds.0", ["x"]), "rounds[0]"),
    (_set("timings.rounds", "long"), "timings.rounds"),
    (_set("notes", [{"x": 1}]), "notes[0]"),
    (_set("rounds.0.throughput_tps", float("nan")), "NaN"),
])
def test_results_show_refuses_a_damaged_summary(tmp_path, capsys, change, named) -> None:
    b = _bundle(tmp_path, change)
    assert_refused(run_cli(cli, ["results", "show", str(b)], capsys), str(b / "summary.json"),
                   named)


def test_results_show_refuses_a_huge_a_deep_and_a_directory_summary(tmp_path, capsys) -> None:
    huge = _bundle(tmp_path / "a")
    big_file(huge / "summary.json")
    ran = run_cli(cli, ["results", "show", str(huge)], capsys)
    assert_refused(ran, "larger than")
    assert len(ran.out) < 1000          # it was printed in full (52 MB) before
    deep = _bundle(tmp_path / "b", raw="[" * 100_000 + "]" * 100_000)
    assert_refused(run_cli(cli, ["results", "show", str(deep)], capsys), "nesting")
    nested = _bundle(tmp_path / "c", _set("rounds.0.rate_control", json.loads(
        "[" * 40 + "]" * 40)))
    assert_refused(run_cli(cli, ["results", "show", str(nested)], capsys), "nesting")
    directory = tmp_path / "d" / "local" / BUNDLE.name
    (directory / "summary.json").mkdir(parents=True)
    assert_refused(run_cli(cli, ["results", "show", str(directory)], capsys), "a directory")


def test_results_show_refuses_a_fifo_and_a_device_without_blocking(tmp_path, capsys) -> None:
    b = tmp_path / "local" / BUNDLE.name
    b.mkdir(parents=True)
    f = fifo(b / "summary.json")
    assert_refused(run_cli(cli, ["results", "show", str(b)], capsys, fifos=(f,)), "FIFO")
    assert_refused(run_cli(cli, ["results", "show", str(f)], capsys, fifos=(f,)), "FIFO")
    os.unlink(f)
    os.symlink("/dev/zero", b / "summary.json")
    assert_refused(run_cli(cli, ["results", "show", str(b)], capsys), "character device")


def test_the_new_fields_and_verdicts_load_and_old_bundles_still_do(tmp_path, capsys) -> None:
    def newer(doc: Any) -> None:
        doc["rounds"][0].update(goodput_tps=12.5, ledger_goodput_tps=None)
        doc["rounds"][0]["verdict"]["verdict"] = "failing"
        doc["rounds"][1]["verdict"]["verdict"] = "inconclusive"
    b = _bundle(tmp_path, newer)
    ran = run_cli(cli, ["results", "show", str(b), "--output", "json"], capsys)
    assert ran.code == 0, ran.err
    doc = json.loads(ran.out)
    assert doc["rounds"][0]["goodput_tps"] == 12.5
    assert doc["rounds"][0]["ledger_goodput_tps"] is None
    for summary in sorted((REPO / "tests/data").rglob("summary.json")):
        assert run_cli(cli, ["results", "show", str(summary.parent)], capsys).code == 0, summary


def test_results_compare_refuses_a_damaged_group_and_writes_no_page(tmp_path, capsys) -> None:
    bad = tmp_path / "bad"
    for i, b in enumerate(sorted(GROUP.iterdir())):
        shutil.copytree(b, bad / b.name)
        if i == 1:
            doc = json.loads((b / "summary.json").read_text())
            doc["rounds"][0]["throughput_tps"] = "12"
            (bad / b.name / "summary.json").write_text(json.dumps(doc))
    page = tmp_path / "page"
    ran = run_cli(cli, ["results", "compare", str(GROUP), str(bad), "--html", str(page)],
                  capsys)
    assert_refused(ran, "rounds[0].throughput_tps")
    assert not page.exists()


# --- item 4: NaN (and infinity) refused wherever a number enters --------------------------

@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf"])
def test_a_threshold_of_nan_is_refused_on_the_command_line(tmp_path, capsys, value) -> None:
    argv = ["compare", str(SPEC), "--ref", "v2.5.12", "--ref", "v3.0.0", "--dry-run",
            "--threshold", f"worker_cpu={value}", "--out", str(tmp_path / "o"),
            "--build-dir", str(tmp_path / "b")]
    assert_refused(run_cli(cli, argv, capsys), "--threshold.worker_cpu")
    assert not (tmp_path / "o").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_a_spec_threshold_of_nan_is_refused(tmp_path, capsys, value) -> None:
    text = SPEC.read_text() + f"\nbench:\n  thresholds:\n    worker_cpu: {value}\n"
    spec = tmp_path / "env.yaml"
    spec.write_text(text)
    assert yaml.safe_load(text)["bench"]["thresholds"]["worker_cpu"] != 0.85
    ran = run_cli(cli, ["render", str(spec), "--out", str(tmp_path / "out")], capsys)
    assert_refused(ran, "bench.thresholds.worker_cpu")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_size_target_tps_nan_is_refused(tmp_path, capsys, value) -> None:
    argv = ["size", str(SPEC), "--target-tps", value, "--from-calibration", str(CALIBRATION)]
    assert_refused(run_cli(cli, argv, capsys), "--target-tps")


@pytest.mark.parametrize("field", ["send_rate_tps", "throughput_tps", "requested_tps"])
def test_a_calibration_with_nan_is_refused(tmp_path, capsys, field) -> None:
    doc = json.loads(CALIBRATION.read_text())
    doc["steps"][0][field] = float("nan")
    cal = tmp_path / "calibration.json"
    cal.write_text(json.dumps(doc))        # Python writes NaN, which is not JSON
    argv = ["size", str(SPEC), "--target-tps", "100", "--from-calibration", str(cal)]
    assert_refused(run_cli(cli, argv, capsys), str(cal), "NaN")


@pytest.mark.parametrize("rates", ["nan", "5,nan", "inf", "5,10,-inf"])
def test_size_rates_nan_is_refused_before_anything_is_written(tmp_path, capsys, rates) -> None:
    out = tmp_path / "out"
    argv = ["size", str(SPEC), "--target-tps", "100", "--rates", rates, "--out", str(out),
            "--build-dir", str(tmp_path / "b")]
    assert_refused(run_cli(cli, argv, capsys), "--rates")
    assert not out.exists()
