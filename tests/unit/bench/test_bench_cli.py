"""`launch bench` and `launch results` through the CLI: exit codes and output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fabkit.clikit import run_main
from launch.bench import collect, prometheus
from launch.cli import cli
from launch.spec import env as spec
from launch.spec.thresholds import Thresholds

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "tests/data/bench/fabric-bound"


def bundle(root: Path) -> Path:
    bench = {"test": {"workers": {"number": 2}, "rounds": [{
        "label": "saturate", "txDuration": 60,
        "rateControl": {"type": "fixed-rate", "opts": {"tps": 100}},
        "workload": {"module": "workloads/create-asset.js"}}]}}
    resp = prometheus.RoundResponses.from_json(json.loads((DATA / "round-0.json").read_text()))
    f = collect.Fetched(environment="local", stamp="20261201T203000Z", started_at="a",
                        finished_at="b", status="complete", benchmark=bench,
                        report_html=(DATA / "report.html").read_text(),
                        responses={0: resp})
    path, _ = collect.write(root, f, Thresholds())
    return path


@pytest.mark.subprocess   # matplotlib's font cache (fc-list)
def test_results_list_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = bundle(tmp_path)
    assert run_main(cli, ["results", "list", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert str(path) in out and "saturate=fabric-bound" in out
    assert run_main(cli, ["results", "list", "--results-dir", str(tmp_path), "--output",
                          "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc[0]["rounds"][0]["verdict"] == "fabric-bound"
    # goodput first: what succeeded per second of the window, and what the ledger committed
    assert doc[0]["rounds"][0]["goodput_tps"] == pytest.approx(5970 / 60, rel=0.01)
    assert doc[0]["rounds"][0]["ledger_goodput_tps"] == pytest.approx(70, rel=0.02)
    assert run_main(cli, ["results", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "99.5 (0 failed)" in out and "fabric-bound:" in out
    assert "goodput TPS" in out and "throughput TPS (incl. failed)" in out
    assert "p99 s (Prom.)" in out and "max s (Caliper)" in out
    assert run_main(cli, ["results", "show", str(path), "--output", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["schema"] == "fabperf.bench.summary/1"


def test_results_show_of_a_non_bundle_is_exit_2(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(cli, ["results", "show", str(tmp_path)]) == 2
    assert "a results bundle" in capsys.readouterr().err


def test_bench_of_an_unknown_environment_is_exit_2(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(cli, ["bench", "nosuchenv", "--build-dir", str(tmp_path)]) == 2
    assert "unknown environment" in capsys.readouterr().err


def test_bench_bad_options_are_exit_2(tmp_path: Path) -> None:
    assert run_main(cli, ["bench", "x", "--workers-per-vm", "0"]) == 2
    assert run_main(cli, ["bench", "x", "--tps", "-5"]) == 2


def test_spec_bench_thresholds(tmp_path: Path) -> None:
    doc = yaml.safe_load((REPO / "environments/local.yaml").read_text())
    doc["bench"] = {"thresholds": {"worker_cpu": 0.9}}
    env = spec.parse(doc, Path("env.yaml"))
    assert Thresholds.from_mapping(env.bench_thresholds, source=None).worker_cpu == 0.9
    from fabkit.errors import InputError

    doc["bench"] = {"thresholds": {"worker_cpu": 2}}
    with pytest.raises(InputError, match=r"env.yaml: bench.thresholds.worker_cpu: expected a "
                                         r"share between 0 and 1, found 2"):
        spec.parse(doc, Path("env.yaml"))
    doc["bench"] = {"thresholds": {"fabric_cpuu": 0.5}}
    with pytest.raises(InputError, match=r"bench.thresholds.fabric_cpuu: expected one of"):
        spec.parse(doc, Path("env.yaml"))
    doc["bench"] = {"thresold": {}}
    with pytest.raises(InputError, match="bench.thresold"):
        spec.parse(doc, Path("env.yaml"))


def test_bench_of_an_environment_that_is_not_up_is_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from launch.machines.state import EnvState, HostState, Phase, StateStore

    store = StateStore(tmp_path / "environments" / "local")
    store.save(EnvState(environment="local", provider="none", spec_path="/nonexistent.yaml",
                        hosts={"fabric": HostState("fabric", "10.0.0.1", ("peer",),
                                                   phase=Phase.FAILED)}))
    assert run_main(cli, ["bench", "local", "--build-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "environment local is not up: fabric (failed" in err and "launch up" in err
