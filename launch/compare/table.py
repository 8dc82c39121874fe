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
from launch.compare import figures, stats

SCHEMA = "fabperf.compare/1"
MAX_DEPTH = 3


@dataclass(frozen=True)
class Metric:
    """One figure of a round."""

    key: str
    title: str
    unit: str
    higher_is_better: bool
    get: Callable[[RoundSummary], float | None]
    compared: bool
    """judged by the rule (else shown only)"""


METRICS = (
    Metric("goodput", "goodput", "TPS", True, figures.goodput, True),
    Metric("p50", "latency p50", "s", False, lambda r: r.latency.p50, True),
    Metric("p95", "latency p95", "s", False, lambda r: r.latency.p95, True),
    Metric("ledger_goodput", "ledger goodput", "TPS", True, figures.ledger_goodput, False),
    Metric("throughput", "Caliper throughput (failures included)", "TPS", True,
           lambda r: r.throughput_tps, False),
    Metric("send_rate", "send rate", "TPS", True, lambda r: r.send_rate_tps, False),
)
BY_KEY = {m.key: m for m in METRICS}
COMPARED = tuple(m for m in METRICS if m.compared)


@dataclass(frozen=True)
class Group:
    """One variant: its label and the bundles of its repeats (oldest first)."""

    label: str
    path: Path
    bundles: tuple[Path, ...]
    summaries: tuple[Summary, ...]


def bundles_under(root: Path) -> list[Path]:
    """The bundles at or below root (MAX_DEPTH levels, hidden staging directories skipped)."""
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
    bundles = bundles_under(path)
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
    not_comparable: tuple[str, ...] = ()
    """'<stamp>: <reason>' of the completed repeats that say nothing about Fabric (a
    load-generator-bound, inconclusive or failing verdict, failures over the bound): any one
    makes the group's round not comparable"""
    differences: Mapping[str, stats.Difference] = field(default_factory=dict)
    """against the baseline, compared figures only (empty for the baseline itself and when
    either side is not comparable)"""

    @property
    def comparable(self) -> bool:
        return not self.not_comparable

    def reason(self) -> str:
        """Why the round is not comparable, in one line ('' when it is)."""
        if not self.not_comparable:
            return ""
        causes = Counter(x.split(": ", 1)[1] for x in self.not_comparable)
        return (f"{len(self.not_comparable)} of {self.repeats} repeats: "
                + ", ".join(f"{k}" + (f" x{v}" if v > 1 else "") for k, v in causes.items()))

    def to_json(self) -> dict[str, Any]:
        return {"group": self.group, "repeats": self.repeats,
                "incomplete": list(self.incomplete),
                "figures": {k: v.to_json() for k, v in self.figures.items()},
                "failed": self.failed.to_json(), "verdicts": dict(self.verdicts),
                "requested_tps": list(self.requested_tps),
                "not_comparable": list(self.not_comparable),
                "differences": {k: v.to_json() for k, v in self.differences.items()}}


@dataclass(frozen=True)
class RoundComparison:
    label: str
    groups: tuple[GroupRound, ...]
    not_comparable: str = ""
    """why no group of this round is compared with the baseline ('' when they are)"""


@dataclass(frozen=True)
class Comparison:
    """The whole comparison: what `launch results compare` prints and plots."""

    groups: tuple[Group, ...]
    rounds: tuple[RoundComparison, ...]
    notes: tuple[str, ...] = ()
    min_effect_pct: float = stats.MIN_EFFECT_PCT
    looks: int = 1
    tests: int = 0
    """figures x rounds x groups judged together (the Holm family)"""

    @property
    def baseline(self) -> Group:
        return self.groups[0]

    @property
    def method(self) -> str:
        return stats.method(self.min_effect_pct, self.tests, self.looks)

    def round(self, label: str) -> RoundComparison:
        return next(r for r in self.rounds if r.label == label)

    def differences(self) -> list[tuple[str, str, str, stats.Difference]]:
        """(round, group, figure, difference) of every judged figure."""
        return [(r.label, g.group, k, d) for r in self.rounds for g in r.groups[1:]
                for k, d in g.differences.items()]

    def unknown(self) -> list[str]:
        """'round group figure' of every compared figure still unknown (more repeats may
        answer it; a not comparable round is not among them: repeats do not fix that)."""
        return [f"{r} {g} {k}" for r, g, k, d in self.differences()
                if d.answer == stats.UNKNOWN]

    def answer(self) -> str:
        """The report in one word: different if any figure is, else unknown if any is, else
        same ('not comparable' when nothing could be compared)."""
        ds = [d.answer for *_, d in self.differences()]
        if not ds:
            return "not comparable"
        for a in (stats.DIFFERENT, stats.UNKNOWN):
            if a in ds:
                return a
        return stats.SAME

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "method": self.method, "min_effect_pct": self.min_effect_pct,
                "alpha": stats.ALPHA, "looks": self.looks, "tests": self.tests,
                "answer": self.answer(), "baseline": self.baseline.label,
                "groups": [{"label": g.label, "path": str(g.path),
                            "bundles": [str(b) for b in g.bundles]} for g in self.groups],
                "rounds": [{"label": r.label, "not_comparable": r.not_comparable,
                            "groups": [g.to_json() for g in r.groups]} for r in self.rounds],
                "notes": list(self.notes)}


def group_round(group: Group, label: str, max_failed_pct: float = figures.MAX_FAILED_PCT
                ) -> GroupRound:
    """The figures of one round label over a group's repeats (completed rounds only)."""
    done: list[RoundSummary] = []
    incomplete: list[str] = []
    bad: list[str] = []
    for s in group.summaries:
        r = next((x for x in s.rounds if x.label == label), None)
        if r is None:
            incomplete.append(f"{s.stamp}: missing")
        elif r.status != "completed":
            incomplete.append(f"{s.stamp}: {r.status}")
        else:
            done.append(r)
            why = figures.not_comparable(r, max_failed_pct)
            if why:
                bad.append(f"{s.stamp}: {why}")
    return GroupRound(
        group.label, len(done), tuple(incomplete),
        {m.key: stats.spread([m.get(r) for r in done]) for m in METRICS},
        stats.spread([r.failed for r in done]),
        dict(Counter(str(r.verdict.get("verdict", "-")) for r in done)),
        tuple(sorted({r.requested_tps for r in done if r.requested_tps is not None})),
        tuple(bad))


def compare(groups: Sequence[Group], labels: Sequence[str] = (), *,
            min_effect_pct: float = stats.MIN_EFFECT_PCT, looks: int = 1,
            max_failed_pct: float = figures.MAX_FAILED_PCT) -> Comparison:
    """Every round label (baseline order first; `labels` restricts) of every group, judged
    together: one Holm family over every compared figure x round x group."""
    if len(groups) < 2:
        raise InputError.field(None, "DIR", "at least two groups to compare", len(groups))
    if not 0 < min_effect_pct < 100:
        raise InputError.field(None, "--min-effect", "a percentage in (0, 100)",
                               min_effect_pct)
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
    per_round: list[tuple[str, list[GroupRound], str]] = []
    pending: list[tuple[int, int, str, stats.Pending]] = []
    for label in (labels or order):
        per = [group_round(g, label, max_failed_pct) for g in groups]
        base = per[0]
        why = f"baseline {base.group}: {base.reason()}" if not base.comparable else ""
        for gi, gr in enumerate(per[1:], 1):
            if why or not gr.comparable:
                continue
            for m in COMPARED:
                pending.append((len(per_round), gi, m.key, stats.prepare(
                    base.figures[m.key].values, gr.figures[m.key].values, min_effect_pct)))
        rates = {gr.group: gr.requested_tps for gr in per if gr.requested_tps}
        if len(set(rates.values())) > 1:
            notes.append(f"round {label}: the groups requested different rates {rates}: "
                         "their figures are not like for like")
        per_round.append((label, per, why))
    judged = stats.judge_all([p for *_, p in pending], looks=looks)
    diffs: dict[tuple[int, int], dict[str, stats.Difference]] = {}
    for (ri, gi, key, _), d in zip(pending, judged, strict=True):
        diffs.setdefault((ri, gi), {})[key] = d
    rounds = []
    for ri, (label, per, why) in enumerate(per_round):
        out = [per[0]] + [GroupRound(**{**gr.__dict__, "differences": diffs.get((ri, gi), {})})
                          for gi, gr in enumerate(per[1:], 1)]
        rounds.append(RoundComparison(label, tuple(out), why))
    tests = sum(1 for *_, p in pending if p.tests is not None)
    return Comparison(tuple(groups), tuple(rounds), tuple(notes), min_effect_pct, looks, tests)


def load(args: Sequence[str], labels: Sequence[str] = (), *,
         min_effect_pct: float = stats.MIN_EFFECT_PCT, looks: int = 1) -> Comparison:
    """The comparison of the command line's DIR / LABEL=DIR arguments."""
    groups = []
    for arg in args:
        label, path = parse_group_arg(arg)
        groups.append(load_group(path, label))
    return compare(groups, labels, min_effect_pct=min_effect_pct, looks=looks)


# --- the text view (shared with the HTML page) --------------------------------------------

HEAD = ("round", "group", "n", "goodput TPS", "Δ goodput", "p50 s", "Δ p50", "p95 s",
        "Δ p95", "throughput TPS", "send TPS", "failed", "verdicts")


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
    """'-8.2% different (worse)', '+1.0% same', '+4.0% unknown'."""
    if d is None:
        return "-"
    if d.delta_pct is None:
        return f"{d.answer} ({d.why})" if d.why else d.answer
    return f"{d.delta_pct:+.1f}% {d.answer}" + (_worse(m, d) if m is not None else "")


def table_rows(c: Comparison) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for r in c.rounds:
        for i, g in enumerate(r.groups):
            f = g.figures
            failed = "-" if g.failed.median is None else \
                f"{g.failed.median:g}" + (f" (max {g.failed.max:g})" if g.failed.max else "")
            verdicts = ", ".join(f"{k}×{v}" for k, v in sorted(g.verdicts.items())) or "-"

            def diff(key: str, i: int = i, g: GroupRound = g, r: RoundComparison = r) -> str:
                if i == 0:
                    return "(baseline)"
                if r.not_comparable or not g.comparable:
                    return "not comparable"
                return difference_text(g.differences.get(key), BY_KEY[key])

            rows.append((r.label if i == 0 else "", g.group, str(g.repeats),
                         spread_text(f["goodput"], 1), diff("goodput"),
                         spread_text(f["p50"], 3), diff("p50"),
                         spread_text(f["p95"], 3), diff("p95"),
                         spread_text(f["throughput"], 1), spread_text(f["send_rate"], 1),
                         failed, verdicts))
    return rows


def details(c: Comparison) -> list[str]:
    """One line per compared figure: the interval and the p-values behind each answer; the
    reason of every round or group that is not comparable."""
    lines = []
    for r in c.rounds:
        if r.not_comparable:
            lines.append(f"{r.label}: not comparable: {r.not_comparable}")
        for g in r.groups[1:]:
            if not g.comparable and not r.not_comparable:
                lines.append(f"{r.label} {g.group}: not comparable: {g.reason()}")
            for m in COMPARED:
                d = g.differences.get(m.key)
                if d is None:
                    continue
                if d.interval_pct is None or d.p_different is None or d.p_same is None:
                    lines.append(f"{r.label} {g.group} vs {c.baseline.label} {m.title}: "
                                 f"{d.answer} ({d.why})")
                    continue
                lines.append(f"{r.label} {g.group} vs {c.baseline.label} {m.title}: "
                             f"{d.delta_pct:+.1f} %, interval [{d.interval_pct[0]:+.1f}, "
                             f"{d.interval_pct[1]:+.1f}] %, p(beyond +-{c.min_effect_pct:g} %)="
                             f"{d.p_different:.2g}, p(within)={d.p_same:.2g}: {d.answer}"
                             + _worse(m, d))
        for g in r.groups:
            for inc in g.incomplete:
                lines.append(f"{r.label} {g.group}: not counted: {inc}")
    return lines


def _worse(m: Metric | None, d: stats.Difference) -> str:
    if m is None or d.answer != stats.DIFFERENT or d.delta_pct is None:
        return ""
    better = (d.delta_pct > 0) == m.higher_is_better
    return " (better)" if better else " (worse)"


def format_table(c: Comparison) -> str:
    rows = [HEAD, *table_rows(c)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEAD))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.append("")
    apart = [f"{r.label}" for r in c.rounds if r.not_comparable] + [
        f"{r.label} {g.group}" for r in c.rounds if not r.not_comparable
        for g in r.groups[1:] if not g.comparable]
    answer = c.answer() + (f" (not comparable: {', '.join(apart)})" if apart else "")
    lines.append(f"answer: {answer}; baseline: {c.baseline.label}; [min-max] over the "
                 f"repeats; goodput = succeeded / window (Caliper's throughput counts "
                 f"failures: shown, not compared)")
    lines.append(f"method: {c.method}")
    lines += details(c)
    lines += [f"note: {n}" for n in c.notes]
    return "\n".join(lines)
