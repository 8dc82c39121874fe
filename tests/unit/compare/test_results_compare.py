"""`launch results compare` on the recorded bundles of tests/data/compare: the statistics,
the table, the JSON, the page, the CLI's exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fabkit.clikit import run_main
from fabkit.errors import InputError
from launch.cli import cli
from launch.compare import stats, table

DATA = Path(__file__).resolve().parents[2] / "data/compare"
A, B, ONE = (str(DATA / g) for g in ("v2.5.12", "v3.0.0", "single"))


# --- stats -------------------------------------------------------------------------------

def test_spread_median_quartiles_and_missing_values() -> None:
    s = stats.spread([3.0, 1.0, None, 2.0, 10.0])
    assert (s.n, s.median, s.min, s.max) == (4, 2.5, 1.0, 10.0)
    assert s.q1 == 1.75 and s.q3 == 4.75
    assert stats.spread([None]).median is None


def test_bootstrap_is_seeded_and_separates_disjoint_groups() -> None:
    a, b = [100.0, 101.0, 99.0], [90.0, 91.0, 89.5]
    assert stats.bootstrap_ci(a, b) == stats.bootstrap_ci(a, b)
    lo, hi = stats.bootstrap_ci(a, b)
    assert hi < 0 and lo >= -11.5
    d = stats.difference(stats.spread(a), stats.spread(b))
    assert d.verdict == "beyond noise" and d.significant and d.delta == -10.0
    assert d.delta_pct == pytest.approx(-10.0)


def test_overlapping_groups_are_within_noise() -> None:
    d = stats.difference(stats.spread([100, 104, 98, 101]), stats.spread([99, 103, 100, 97]))
    assert d.verdict == "within noise" and d.ci[0] < 0 < d.ci[1]


def test_fewer_than_three_repeats_make_no_claim() -> None:
    d = stats.difference(stats.spread([100, 101]), stats.spread([50, 51, 52]))
    assert d.verdict == "not enough repeats" and d.ci is None
    assert d.delta_pct == pytest.approx(-49.5 / 100.5 * 100)


def test_mann_whitney_exact_values() -> None:
    # 3 vs 3 fully separated: 2 of the 20 splits are as extreme -> 0.1 (why it is not the rule)
    assert stats.mann_whitney_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)
    assert stats.mann_whitney_p([1, 2, 3, 4], [5, 6, 7, 8]) == pytest.approx(2 / 70)
    assert stats.mann_whitney_p([1, 2, 3], [1, 2, 3]) == 1.0
    # beyond the exact limit: the normal approximation, still small for separated groups
    assert stats.mann_whitney_p(list(range(20)), list(range(100, 120))) < 1e-6


# --- the comparison of recorded bundles --------------------------------------------------

def test_groups_from_directories_of_bundles() -> None:
    g = table.load_group(Path(A))
    assert g.label == "v2.5.12" and len(g.bundles) == 3
    assert [s.stamp for s in g.summaries] == sorted(s.stamp for s in g.summaries)
    one = table.load_group(Path(ONE) / "local" / "20261201T230000Z", "mine")
    assert one.label == "mine" and len(one.bundles) == 1


def test_recorded_regression_is_beyond_noise_and_the_steady_round_is_not() -> None:
    c = table.load([A, B, ONE])
    create = c.round("create")
    base, v3, single = create.groups
    assert base.repeats == 3 and v3.repeats == 4 and single.repeats == 1
    assert base.figures["throughput"].median == 49.1
    assert v3.figures["throughput"].median == pytest.approx(45.05)
    assert v3.differences["throughput"].verdict == "beyond noise"
    assert v3.differences["throughput"].delta < 0
    assert v3.differences["p95"].verdict == "beyond noise"
    assert v3.verdicts == {"fabric-bound": 4} and base.verdicts == {"headroom": 3}
    assert v3.failed.max == 2
    assert single.differences["throughput"].verdict == "not enough repeats"
    read = c.round("read").groups[1]
    assert read.repeats == 3 and read.incomplete == ("20261201T223000Z: interrupted",)
    assert read.differences["throughput"].verdict == "within noise"


def test_text_table_says_method_and_details() -> None:
    text = table.format_table(table.load([A, B, ONE]))
    assert "-8.2% beyond noise (worse)" in text and "(not enough repeats)" in text
    assert "+35.4% beyond noise (worse)" in text
    assert "bootstrap" in text and "seed" in text
    assert "create v3.0.0 vs v2.5.12 throughput" in text and "(worse)" in text
    assert "not counted: 20261201T223000Z: interrupted" in text


def test_round_filter_and_bad_input() -> None:
    c = table.load([A, B], ["read"])
    assert [r.label for r in c.rounds] == ["read"]
    with pytest.raises(InputError, match="--round"):
        table.load([A, B], ["nope"])
    with pytest.raises(InputError, match="distinct labels"):
        table.load([A, A])
    with pytest.raises(InputError, match="at least two"):
        table.load([A])


def test_a_directory_without_bundles_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no results bundle"):
        table.load_group(tmp_path)
    bad = tmp_path / "b" / "summary.json"
    bad.parent.mkdir()
    bad.write_text('{"schema": "other"}')
    with pytest.raises(InputError, match="schema"):
        table.load_group(tmp_path)


def test_different_requested_rates_are_noted(tmp_path: Path) -> None:
    shutil.copytree(B, tmp_path / "b")
    for p in (tmp_path / "b").rglob("summary.json"):
        doc = json.loads(p.read_text())
        doc["rounds"][0]["requested_tps"] = 80.0
        p.write_text(json.dumps(doc))
    c = table.load([A, f"fast={tmp_path / 'b'}"])
    assert any("different rates" in n for n in c.notes)
    assert c.groups[1].label == "fast"


# --- page and CLI ------------------------------------------------------------------------

@pytest.mark.subprocess   # matplotlib's font cache (fc-list)
def test_cli_table_json_and_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "page"
    assert run_main(cli, ["results", "compare", A, B, "--html", str(out)]) == 0
    text = capsys.readouterr().out
    assert "beyond noise" in text and f"page: {out / 'index.html'}" in text
    for name in ("throughput", "latency", "send_rate"):
        assert (out / "plots" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "index.html").read_text()
    assert "plots/throughput.png" in page and "class=\"flag\"" in page
    assert json.loads((out / "comparison.json").read_text())["baseline"] == "v2.5.12"

    assert run_main(cli, ["results", "compare", A, B, "--no-html", "--output", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == table.SCHEMA and doc["page"] is None
    v3 = doc["rounds"][0]["groups"][1]
    assert v3["differences"]["throughput"]["verdict"] == "beyond noise"


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "page"
    assert run_main(cli, ["results", "compare", A, str(tmp_path / "none"),
                          "--html", str(out)]) == 2
    assert "DIR" in capsys.readouterr().err and not out.exists()
