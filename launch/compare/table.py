"""`launch results compare`: groups of results bundles side by side, round by round.

A group is what one variant (a Fabric ref, a patch, a setting) measured, repeated:

    DIR             a results bundle (DIR/summary.json): a group of one run
    DIR             a directory of bundles (every DIR/**/summary.json, three levels deep,
                    hidden staging directories skipped): the repeats of one variant, e.g.
                    what `launch compare` writes under results/compare/<stamp>/<ref>/
    LABEL=DIR       either of the above, named LABEL (default: the directory's name)

The first group is the baseline. Per round label: median throughput, send rate, latency
p50/p95 with min-max and quartiles over the repeats, failures, the verdicts, and every other
group's difference against the baseline judged by launch.compare.stats (the rule is printed
with the table). Only rounds that completed are counted; the others are listed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabkit.errors import InputError
from launch.bench import results
from launch.bench.results import RoundSummary, Summary
from launch.compare import stats

SCHEMA = "fabperf.compare/1"
MAX_DEPTH = 3


@dataclass(frozen=True)
class Metric:
    """One compared figure of a round."""

    key: str
    title: str
    unit: str
    higher_is_better: bool
    get: Callable[[RoundSummary], float | None]


METRICS = (
    Metric("throughput", "throughput", "TPS", True, lambda r: r.throughput_tps),
    Metric("send_rate", "send rate", "TPS", True, lambda r: r.send_rate_tps),
    Metric("p50", "latency p50", "s", False, lambda r: r.latency.p50),
    Metric("p95", "latency p95", "s", False, lambda r: r.latency.p95),
)
BY_KEY = {m.key: m for m in METRICS}


@dataclass(frozen=True)
class Group:
    """One variant: its label and the bundles of its repeats (oldest first)."""

    label: str
    path: Path
    bundles: tuple[Path, ...]
    summaries: tuple[Summary, ...]


def _bundles_under(root: Path) -> list[Path]:
    found: list[Path] = []

    def walk(d: Path, depth: int) -> None:
        if (d / results.SUMMARY).is_file():
            found.append(d)
            return
        if depth == MAX_DEPTH:
            return
        for sub in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
            walk(sub, depth + 1)

    walk(root, 0)
    return found


def parse_group_arg(arg: str) -> tuple[str | None, Path]:
    """'LABEL=DIR' or 'DIR'."""
    label, sep, rest = arg.partition("=")
    if sep and label and "/" not in label:
        return label, Path(rest)
    return None, Path(arg)


def load_group(path: Path, label: str | None = None) -> Group:
    """The bundles of one group (see the module docstring); InputError when there are none
    or one is not a fabperf summary."""
    if not path.is_dir():
        raise InputError.field(None, "DIR", "a results bundle or a directory of bundles",
                               str(path))
    bundles = _bundles_under(path)
    if not bundles:
        raise InputError(f"{path}: no results bundle (no summary.json within {MAX_DEPTH} "
                         "levels)", hint="give a bundle results/<env>/<stamp>/ or a "
                                         "directory holding several")
    summaries = [results.load(b) for b in bundles]
    order = sorted(range(len(bundles)), key=lambda i: (summaries[i].stamp, str(bundles[i])))
    return Group(label or path.resolve().name, path, tuple(bundles[i] for i in order),
                 tuple(summaries[i] for i in order))


@dataclass(frozen=True)
class GroupRound:
    """One round label of one group, over its repeats."""

    group: str
    repeats: int
    """completed rounds counted"""
    incomplete: tuple[str, ...]
    """'<stamp>: <status>' of the repeats whose round did not complete or is missing"""
    figures: Mapping[str, stats.Spread]
    failed: stats.Spread
    verdicts: Mapping[str, int]
    requested_tps: tuple[float, ...]
    differences: Mapping[str, stats.Difference] = field(default_factory=dict)
    """against the baseline (empty for the baseline itself)"""

    def to_json(self) -> dict[str, Any]:
        return {"group": self.group, "repeats": self.repeats,
                "incomplete": list(self.incomplete),
                "figures": {k: v.to_json() for k, v in self.figures.items()},
                "failed": self.failed.to_json(), "verdicts": dict(self.verdicts),
                "requested_tps": list(self.requested_tps),
                "differences": {k: v.to_json() for k, v in self.differences.items()}}


@dataclass(frozen=True)
class RoundComparison:
    label: str
    groups: tuple[GroupRound, ...]


@dataclass(frozen=True)
class Comparison:
    """The whole comparison: what `launch results compare` prints and plots."""

    groups: tuple[Group, ...]
    rounds: tuple[RoundComparison, ...]
    notes: tuple[str, ...] = ()

    @property
    def baseline(self) -> Group:
        return self.groups[0]

    def round(self, label: str) -> RoundComparison:
        return next(r for r in self.rounds if r.label == label)

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "method": stats.METHOD, "baseline": self.baseline.label,
                "groups": [{"label": g.label, "path": str(g.path),
                            "bundles": [str(b) for b in g.bundles]} for g in self.groups],
                "rounds": [{"label": r.label, "groups": [g.to_json() for g in r.groups]}
                           for r in self.rounds],
                "notes": list(self.notes)}


def group_round(group: Group, label: str) -> GroupRound:
    """The figures of one round label over a group's repeats (completed rounds only)."""
    done: list[RoundSummary] = []
    incomplete: list[str] = []
    for s in group.summaries:
        r = next((x for x in s.rounds if x.label == label), None)
        if r is None:
            incomplete.append(f"{s.stamp}: missing")
        elif r.status != "completed":
            incomplete.append(f"{s.stamp}: {r.status}")
        else:
            done.append(r)
    return GroupRound(
        group.label, len(done), tuple(incomplete),
        {m.key: stats.spread([m.get(r) for r in done]) for m in METRICS},
        stats.spread([r.failed for r in done]),
        dict(Counter(str(r.verdict.get("verdict", "-")) for r in done)),
        tuple(sorted({r.requested_tps for r in done if r.requested_tps is not None})))


def compare(groups: Sequence[Group], labels: Sequence[str] = ()) -> Comparison:
    """Every round label (baseline order first; `labels` restricts) of every group."""
    if len(groups) < 2:
        raise InputError.field(None, "DIR", "at least two groups to compare", len(groups))
    names = [g.label for g in groups]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError.field(None, "DIR", "groups with distinct labels (use LABEL=DIR)",
                               dupes)
    order: list[str] = []
    for g in groups:
        for s in g.summaries:
            order += [r.label for r in s.rounds if r.label not in order]
    for want in labels:
        if want not in order:
            raise InputError.field(None, "--round", f"one of the measured rounds {order}", want)
    notes: list[str] = []
    rounds = []
    for label in (labels or order):
        per = [group_round(g, label) for g in groups]
        base = per[0]
        out = [base]
        for gr in per[1:]:
            diffs = {m.key: stats.difference(base.figures[m.key], gr.figures[m.key])
                     for m in METRICS}
            out.append(GroupRound(**{**gr.__dict__, "differences": diffs}))
        rates = {gr.group: gr.requested_tps for gr in per if gr.requested_tps}
        if len(set(rates.values())) > 1:
            notes.append(f"round {label}: the groups requested different rates {rates}: "
                         "their figures are not like for like")
        rounds.append(RoundComparison(label, tuple(out)))
    return Comparison(tuple(groups), tuple(rounds), tuple(notes))


def load(args: Sequence[str], labels: Sequence[str] = ()) -> Comparison:
    """The comparison of the command line's DIR / LABEL=DIR arguments."""
    groups = []
    for arg in args:
        label, path = parse_group_arg(arg)
        groups.append(load_group(path, label))
    return compare(groups, labels)


# --- the text view (shared with the HTML page) --------------------------------------------

HEAD = ("round", "group", "n", "throughput TPS", "Δ throughput", "send TPS", "p50 s", "p95 s",
        "Δ p95", "failed", "verdicts")


def _num(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def spread_text(s: stats.Spread, digits: int) -> str:
    """'95.1 [93.0-97.2]': the median and the min-max over the repeats."""
    if s.median is None:
        return "-"
    if s.n == 1:
        return _num(s.median, digits)
    return f"{_num(s.median, digits)} [{_num(s.min, digits)}-{_num(s.max, digits)}]"


def difference_text(d: stats.Difference | None, m: Metric | None = None) -> str:
    """'-12.3% beyond noise (worse)', '+1.0% within noise', '+4.0% (not enough repeats)'."""
    if d is None:
        return "(baseline)"
    if d.delta_pct is None:
        return d.verdict
    pct = f"{d.delta_pct:+.1f}%"
    if d.verdict == "not enough repeats":
        return f"{pct} (not enough repeats)"
    return f"{pct} {d.verdict}" + (_worse(m, d) if m is not None else "")


def table_rows(c: Comparison) -> list[tuple[str, ...]]:
    rows = []
    for r in c.rounds:
        for i, g in enumerate(r.groups):
            f = g.figures
            failed = "-" if g.failed.median is None else \
                f"{g.failed.median:g}" + (f" (max {g.failed.max:g})" if g.failed.max else "")
            verdicts = ", ".join(f"{k}×{v}" for k, v in sorted(g.verdicts.items())) or "-"
            rows.append((r.label if i == 0 else "", g.group, str(g.repeats),
                         spread_text(f["throughput"], 1),
                         difference_text(g.differences.get("throughput") if i else None,
                                         BY_KEY["throughput"]),
                         spread_text(f["send_rate"], 1), spread_text(f["p50"], 3),
                         spread_text(f["p95"], 3),
                         difference_text(g.differences.get("p95") if i else None,
                                         BY_KEY["p95"]),
                         failed, verdicts))
    return rows


def details(c: Comparison) -> list[str]:
    """One line per compared figure: the interval and the p-value behind each verdict."""
    lines = []
    for r in c.rounds:
        for g in r.groups[1:]:
            for m in METRICS:
                d = g.differences[m.key]
                if d.ci is None:
                    continue
                lines.append(f"{r.label} {g.group} vs {c.baseline.label} {m.title}: "
                             f"Δ {d.delta:+.3g} {m.unit}, {stats.CONFIDENCE:.0%} interval "
                             f"[{d.ci[0]:+.3g}, {d.ci[1]:+.3g}], Mann-Whitney p="
                             f"{d.p_value:.3f}: {d.verdict}"
                             + _worse(m, d))
        for g in r.groups:
            for inc in g.incomplete:
                lines.append(f"{r.label} {g.group}: not counted: {inc}")
    return lines


def _worse(m: Metric, d: stats.Difference) -> str:
    if not d.significant or d.delta is None:
        return ""
    better = (d.delta > 0) == m.higher_is_better
    return " (better)" if better else " (worse)"


def format_table(c: Comparison) -> str:
    rows = [HEAD, *table_rows(c)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEAD))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.append("")
    lines.append(f"baseline: {c.baseline.label}; [min-max] over the repeats; method: "
                 f"{stats.METHOD}")
    lines += details(c)
    lines += [f"note: {n}" for n in c.notes]
    return "\n".join(lines)
