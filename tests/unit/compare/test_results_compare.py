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


# --- the recorded comparison, judged by the rule ------------------------------------------

def test_spread_median_quartiles_and_missing_values() -> None:
    s = stats.spread([3.0, 1.0, None, 2.0, 10.0])
    assert (s.n, s.median, s.min, s.max) == (4, 2.5, 1.0, 10.0)
    assert s.q1 == 1.75 and s.q3 == 4.75
    assert stats.spread([None]).median is None


def test_groups_from_directories_of_bundles() -> None:
    g = table.load_group(Path(A))
    assert g.label == "v2.5.12" and len(g.bundles) == 3
    assert [s.stamp for s in g.summaries] == sorted(s.stamp for s in g.summaries)
    one = table.load_group(Path(ONE) / "local" / "20261201T230000Z", "mine")
    assert one.label == "mine" and len(one.bundles) == 1


def test_recorded_v2_5_12_vs_v3_0_0_rejudged() -> None:
    """The recorded compare (3 runs of v2.5.12, 4 of v3.0.0, 2 rounds) under the rule:
    `different`. create: goodput -8.5 % (its interval [-10.9, -5.9] % lies beyond the 3 %
    floor after Holm over the report's 6 tests), latency p50 +52 % and p95 +36 %; read:
    goodput `same` ([-0.8, +0.9] % inside +-3 %), its latencies `unknown` (0.05-0.06 s
    measured to 10 ms: a 20 % step between repeats)."""
    c = table.load([A, B])
    assert c.answer() == "different" and c.tests == 6 and c.looks == 1
    create = c.round("create")
    base, v3 = create.groups
    assert base.repeats == 3 and v3.repeats == 4 and base.comparable and v3.comparable
    assert v3.verdicts == {"fabric-bound": 4} and base.verdicts == {"headroom": 3}
    g = v3.differences["goodput"]
    assert g.answer == stats.DIFFERENT and g.delta_pct == pytest.approx(-8.46, abs=0.01)
    assert g.interval_pct is not None and g.interval_pct[1] < -3
    assert v3.differences["p50"].answer == v3.differences["p95"].answer == stats.DIFFERENT
    assert "throughput" not in v3.differences        # Caliper's (failures in): shown only
    read = c.round("read").groups[1]
    assert read.repeats == 3 and read.incomplete == ("20261201T223000Z: interrupted",)
    assert read.differences["goodput"].answer == stats.SAME
    assert read.differences["p50"].answer == read.differences["p95"].answer == stats.UNKNOWN
    assert c.unknown() == ["read v3.0.0 p50", "read v3.0.0 p95"]
    # as the data of an adaptive `launch compare` (4 looks): the same answers
    assert [d.answer for *_, d in table.load([A, B], looks=4).differences()] == \
        [d.answer for *_, d in c.differences()]


def test_a_single_run_is_unknown() -> None:
    c = table.load([A, B, ONE])
    single = c.round("create").groups[2]
    assert all(d.answer == stats.UNKNOWN and "fewer than 3 repeats" in d.why
               for d in single.differences.values())
    assert c.tests == 6                         # what could not be tested is not in Holm


def _copy_with(tmp_path: Path, name: str, change) -> str:
    shutil.copytree(B, tmp_path / name)
    for i, p in enumerate(sorted((tmp_path / name).rglob("summary.json"))):
        doc = json.loads(p.read_text())
        change(i, doc["rounds"][0])
        p.write_text(json.dumps(doc))
    return f"{name}={tmp_path / name}"


def test_rounds_that_are_not_headroom_or_fabric_bound_are_not_comparable(
        tmp_path: Path) -> None:
    def lg(i: int, r: dict) -> None:
        if i == 1:
            r["verdict"]["verdict"] = "load-generator-bound"
    c = table.load([A, _copy_with(tmp_path, "lg", lg)])
    v3 = c.round("create").groups[1]
    assert not v3.comparable and v3.differences == {}
    assert v3.reason() == "1 of 4 repeats: verdict load-generator-bound"
    assert c.round("read").groups[1].differences          # the other round still compared
    text = table.format_table(c)
    assert "create lg: not comparable: 1 of 4 repeats: verdict load-generator-bound" in text
    assert "answer: unknown (not comparable: create lg);" in text
    assert "not comparable" in table.table_rows(c)[1][4]
    # the baseline itself not comparable: the round is not compared at all
    c = table.load([_copy_with(tmp_path, "lg2", lg), A])
    assert c.round("create").not_comparable.startswith("baseline lg2: 1 of 4 repeats")


def test_failures_over_the_bound_are_not_comparable(tmp_path: Path) -> None:
    def failing(i: int, r: dict) -> None:
        r["failed"] = r["succeeded"] // 10
    c = table.load([A, _copy_with(tmp_path, "f", failing)])
    v3 = c.round("create").groups[1]
    assert not v3.comparable and "transactions failed" in v3.reason()
    assert "> 1 %" in v3.reason()


def test_goodput_prefers_the_summary_field_and_falls_back(tmp_path: Path) -> None:
    def with_field(i: int, r: dict) -> None:
        r["goodput_tps"] = 10.0 + i
    # a bundle of issue 20's schema carries goodput_tps: it is used as is
    from launch.bench.results import RoundSummary
    if "goodput_tps" in RoundSummary.__dataclass_fields__:
        c = table.load([A, _copy_with(tmp_path, "g", with_field)])
        assert c.round("create").groups[1].figures["goodput"].values == (10.0, 11.0, 12.0, 13.0)
    # bundles written before it: succeeded / window.seconds
    base = table.load([A, B]).round("create").groups[0]
    assert base.figures["goodput"].values == pytest.approx(
        ((48.9 * 60) // 1 / 60, (49.3 * 60) // 1 / 60, ((49.1 * 60) // 1 - 1) / 60))
    assert base.figures["throughput"].median == 49.1


def test_text_table_says_method_and_details() -> None:
    text = table.format_table(table.load([A, B, ONE]))
    assert "-8.5% different (worse)" in text and "+51.8% different (worse)" in text
    assert "+0.0% same" in text and "unknown (fewer than 3 repeats (3 and 1))" in text
    assert "answer: different" in text and "Holm over 6 tests" in text
    assert "create v3.0.0 vs v2.5.12 goodput: -8.5 %, interval [-10.9, -5.9] %" in text
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
    assert "different (worse)" in text and f"page: {out / 'index.html'}" in text
    for name in ("goodput", "latency", "send_rate"):
        assert (out / "plots" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "index.html").read_text()
    assert "plots/goodput.png" in page and "class=\"flag\"" in page
    assert json.loads((out / "comparison.json").read_text())["baseline"] == "v2.5.12"

    assert run_main(cli, ["results", "compare", A, B, "--no-html", "--output", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == table.SCHEMA and doc["page"] is None
    v3 = doc["rounds"][0]["groups"][1]
    assert v3["differences"]["goodput"]["answer"] == "different"
    assert doc["answer"] == "different" and doc["min_effect_pct"] == 3.0
    # a higher floor: the -8.5 % goodput drop is no longer shown beyond it
    assert run_main(cli, ["results", "compare", A, B, "--no-html", "--output", "json",
                          "--min-effect", "9"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["rounds"][0]["groups"][1]["differences"]["goodput"]["answer"] != "different"


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "page"
    assert run_main(cli, ["results", "compare", A, str(tmp_path / "none"),
                          "--html", str(out)]) == 2
    assert "DIR" in capsys.readouterr().err and not out.exists()
