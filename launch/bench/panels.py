"""Every Grafana panel's PromQL, run against a Prometheus: does the live view have data?

The dashboards (dashboards/*.json) stay the live view of a run; after a run every panel's
query must return at least one series. `panel_queries` extracts the expressions (dashboard
variables replaced by match-all), `check` runs them as instant queries, and
`assert_panels_have_data` fails naming each panel (dashboard / title / query) that came
back empty. The e2e test calls it against the monitor's Prometheus after `launch bench`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fabkit.errors import FabperfError
from launch.bench.prometheus import Prometheus

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel."""

    dashboard: str
    panel: str
    ref: str
    expr: str

    @property
    def name(self) -> str:
        return f"{self.dashboard} / {self.panel} [{self.ref}]"


@dataclass(frozen=True)
class PanelResult:
    query: PanelQuery
    series: int
    error: str = ""


def _variables(dash: dict) -> list[str]:
    return [v["name"] for v in dash.get("templating", {}).get("list", [])]


def substitute(expr: str, variables: Iterable[str]) -> str:
    """Replace dashboard variables ($round, ${round}) with a match-all regex."""
    for name in variables:
        expr = re.sub(r"\$\{" + re.escape(name) + r"(:[a-z]+)?\}|\$" + re.escape(name) + r"\b",
                      ".*", expr)
    return expr


def panel_queries(directory: Path = DASHBOARDS) -> list[PanelQuery]:
    """Every panel target (rows' nested panels included) and every query variable's
    selector, variables substituted."""
    out: list[PanelQuery] = []
    for f in sorted(directory.glob("*.json")):
        dash = json.loads(f.read_text())
        names = _variables(dash)
        title = dash.get("title", f.stem)
        stack = list(dash.get("panels", []))
        while stack:
            p = stack.pop(0)
            stack[:0] = p.get("panels", [])
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append(PanelQuery(title, p.get("title", "?"), t.get("refId", "?"),
                                          substitute(t["expr"], names)))
        for v in dash.get("templating", {}).get("list", []):
            q = v.get("query")
            text = q.get("query") if isinstance(q, dict) else q
            if v.get("type") == "query" and text:
                m = re.fullmatch(r"label_values\((.*),\s*\w+\)", text)
                out.append(PanelQuery(title, f"variable ${v['name']}", "var",
                                      substitute(m.group(1) if m else text, names)))
    return out


def check(prom: Prometheus, queries: Sequence[PanelQuery], at: float | None = None
          ) -> list[PanelResult]:
    """Each query as an instant query at `at` (default now): how many series came back."""
    out = []
    for q in queries:
        try:
            data = prom.query(q.expr, at)
            out.append(PanelResult(q, len(data.get("result", []))
                                   if data.get("resultType") != "scalar" else 1))
        except FabperfError as exc:
            out.append(PanelResult(q, 0, exc.message))
    return out


def empty(results: Sequence[PanelResult]) -> list[PanelResult]:
    """The results without a single series."""
    return [r for r in results if r.series == 0]


@dataclass(frozen=True)
class Topology:
    """What the panels watch: some only exist for some networks."""

    consensus: str = "etcdraft"     # etcdraft | BFT
    orderers: int = 1


# panels (by title prefix) that a network of another kind legitimately leaves empty
_ONLY_WHEN = (
    ("BFT ", lambda t: t.consensus.lower() == "bft", "BFT channels only"),
    ("Cluster comm", lambda t: t.orderers > 1, "orderer clusters (more than one orderer) only"),
)


def not_applicable(panel: str, topology: Topology) -> str:
    """Why a panel has no data to show on this topology ('' when it must have data)."""
    for prefix, applies, why in _ONLY_WHEN:
        if panel.startswith(prefix) and not applies(topology):
            return why
    return ""


def assert_panels_have_data(prometheus_url: str, *, directory: Path = DASHBOARDS,
                            at: float | None = None, allow_empty: Iterable[str] = (),
                            topology: Topology | None = None) -> None:
    """AssertionError naming every panel query (other than `allow_empty` panel titles and,
    with a topology, the panels it leaves empty by design) that returned no series."""
    allowed = set(allow_empty)
    queries = [q for q in panel_queries(directory)
               if topology is None or not not_applicable(q.panel, topology)]
    res = check(Prometheus(prometheus_url), queries, at)
    bad = [r for r in empty(res) if r.query.panel not in allowed]
    if bad:
        raise AssertionError("panels without data:\n" + "\n".join(
            f"  {r.query.name}: {r.query.expr}" + (f" ({r.error})" if r.error else "")
            for r in bad))
