"""Grafana dashboards: valid JSON, unique panel ids, one datasource uid, and every PromQL
metric name in the metric lists of tests/data/metric-names/ (each cites its source)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from launch.spec import contract

REPO = Path(__file__).resolve().parents[3]
DASHBOARDS = sorted((REPO / "dashboards").glob("*.json"))
LISTS = REPO / "tests/data/metric-names"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMQL_WORDS = {
    # aggregation operators, keywords and functions (Prometheus docs: querying/operators, functions)
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "rate", "irate", "increase", "delta", "idelta",
    "deriv", "histogram_quantile", "label_values", "abs", "clamp_min", "clamp_max", "time",
    "vector", "scalar", "avg_over_time", "max_over_time", "min_over_time", "sum_over_time",
    "changes", "resets", "absent", "inf", "nan",
}


def _metric_lists() -> dict[str, str]:
    names: dict[str, str] = {}
    for f in sorted(LISTS.glob("*.txt")):
        lines = f.read_text().splitlines()
        assert lines[0].startswith("#") and "Source:" in "\n".join(lines[:6]), \
            f"{f.name}: the header must cite its source"
        for line in lines:
            if line and not line.startswith("#"):
                name, kind = line.split()
                names[name] = kind
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names of a PromQL expression (selectors, not functions, labels or keywords)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # strings
    e = re.sub(r"\{[^}]*\}", "", e)                        # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                       # range durations
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\w+", " ", e)                           # dashboard variables
    found = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word in PROMQL_WORDS:
            continue
        found.add(word)
    return found


def _exprs(dash: dict) -> list[str]:
    out = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for v in dash["templating"]["list"]:
        if v.get("type") == "query":
            # Grafana's label_values(SELECTOR, LABEL): only SELECTOR is PromQL
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", v["query"]["query"])
            out.append(m.group(1) if m else v["query"]["query"])
    return out


def _uids(node: object) -> set[str]:
    if isinstance(node, dict):
        found = {node["datasource"]["uid"]} if isinstance(node.get("datasource"), dict) else set()
        return found.union(*(_uids(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_uids(v) for v in node)) if node else set()
    return set()


def test_the_three_dashboards_exist() -> None:
    assert {p.stem for p in DASHBOARDS} == {"fabric", "hosts", "caliper"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_valid_json_unique_ids_one_datasource(path: Path) -> None:
    dash = json.loads(path.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
    assert dash["uid"].startswith("fabperf-")
    assert _uids(dash) == {contract.GRAFANA_DATASOURCE_UID}
    for p in dash["panels"]:
        if p["type"] != "row":
            assert p["targets"], f"{path.name}: panel {p['title']!r} has no query"


def test_dashboard_uids_are_unique() -> None:
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_metric_name_is_exported(path: Path) -> None:
    known = _metric_lists()
    dash = json.loads(path.read_text())
    unknown = []
    for expr in _exprs(dash):
        for name in metric_names(expr):
            base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
            if name in known and known[name] != "histogram":
                continue
            if base is not None and known.get(base) == "histogram":
                continue
            unknown.append((name, expr))
    assert not unknown, f"{path.name}: metric names in no cited list: {unknown}"


def test_the_dashboards_cover_what_the_lab_needs() -> None:
    text = {p.stem: p.read_text() for p in DASHBOARDS}
    for name in ("endorser_proposal_duration_bucket", "ledger_block_processing_time_bucket",
                 "broadcast_processed_count", "consensus_etcdraft_is_leader",
                 "consensus_smartbft_view_leader_id", "ledger_blockchain_height",
                 "grpc_server_unary_request_duration_bucket"):
        assert name in text["fabric"], name
    for name in ("caliper_tx_submitted", "caliper_tx_finished", "caliper_tx_e2e_latency_bucket",
                 "namedprocess_namegroup_cpu_seconds_total", "namedprocess_namegroup_memory_bytes",
                 "ledger_transaction_count"):
        assert name in text["caliper"], name
    assert "Load generator saturated" in text["caliper"]
    assert "node_cpu_seconds_total" in text["hosts"]


def test_metric_name_extraction() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, instance) (rate(foo_bucket{job="x", a=~"b|c"}'
            '[1m]))) / on (host) bar_total + max(baz) and $var')
    assert metric_names(expr) == {"foo_bucket", "bar_total", "baz"}


def test_provisioning_points_grafana_at_the_dashboards() -> None:
    prov = yaml.safe_load((REPO / "dashboards/provisioning/dashboards/fabperf.yaml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/fabperf"
    assert "/var/lib/grafana/dashboards/fabperf" in (
        REPO / "packer/scripts/monitor/monitor.sh").read_text()
