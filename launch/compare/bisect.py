"""`launch bisect`: the first commit whose round is slower than the good one's.

The driver knows nothing of bake or VMs: it takes a `measure(commit)` callable that returns a
Measurement (the round's throughput in each repeat) or BuildFailed (the commit does not
build; it is skipped, as `git bisect skip` would, with the reason). `lab_measure` is the real
one: git archive -> bake fabric-node at that commit -> the Fabric hosts on it -> the round,
`repeats` times.

Candidates are the first-parent line from good to bad (`git rev-list --first-parent
--reverse good..bad`): a merge is one step; the commits of the branch it merged are not
visited, so the answer is the merge that brought the regression in, not the commit inside
the branch.

A commit is *worse* than good when its median throughput is lower by more than the
threshold (percent of good's median) AND, with at least 3 repeats on both sides, the drop is
beyond run-to-run noise by launch.compare.stats' rule; with fewer repeats only the
threshold decides, and the verdict says so.

Search: good and bad are measured first (good must build; bad must be worse, else there is
no regression to look for). Then the usual halving between the last good and the first bad
index; a skipped commit is replaced by the untested candidate nearest to the middle. When
only skipped commits remain between them, the answer names them with the first bad one
("one of"), as git bisect does.

State: <build>/bisect/<name>/state.json (atomic, rewritten after every measurement) holds the
question, the candidates and every measurement in the order it was made. Running the same
command again resumes: recorded commits are not measured again; the decisions replay from
the record (a changed --threshold re-judges the same figures).
"""

from __future__ import annotations

import datetime as _dt
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabkit.errors import ExternalError, InputError
from launch.compare import git, stats
from launch.compare.lab import Variant
from launch.compare.record import Record, open_record

SCHEMA = "fabperf.bisect/1"
STATE = "state.json"


@dataclass(frozen=True)
class Measurement:
    """A commit's round, measured: throughput (TPS) of each repeat whose round completed."""

    throughput: tuple[float, ...]
    bundles: tuple[str, ...] = ()
    verdicts: tuple[str, ...] = ()
    image: str = ""


@dataclass(frozen=True)
class BuildFailed:
    """The commit does not build (bake failed): skipped."""

    reason: str


Measure = Callable[[str], "Measurement | BuildFailed"]


@dataclass(frozen=True)
class Question:
    good: str
    bad: str
    round: str
    commits: tuple[str, ...]
    """good..bad along the first parents, oldest first; the last one is bad"""
    threshold_pct: float = 5.0

    def key(self) -> dict[str, Any]:
        return {"good": self.good, "bad": self.bad, "round": self.round,
                "commits": list(self.commits)}


@dataclass(frozen=True)
class Judgement:
    worse: bool
    why: str


def judge(good: Measurement, m: Measurement, threshold_pct: float) -> Judgement:
    """Worse than good beyond the threshold and the noise (see the module docstring)."""
    if not good.throughput or not m.throughput:
        raise ExternalError("bisect: a measurement without a completed round "
                            "(no throughput to compare)")
    g, c = statistics.median(good.throughput), statistics.median(m.throughput)
    drop = (c - g) / g * 100 if g else 0.0
    over = drop < -threshold_pct
    head = f"{c:.1f} TPS vs good {g:.1f} ({drop:+.1f}%, threshold -{threshold_pct:g}%)"
    d = stats.difference(stats.spread(good.throughput), stats.spread(m.throughput))
    if d.verdict == "not enough repeats":
        return Judgement(over, f"{head}; fewer than {stats.MIN_REPEATS} repeats: the "
                               "threshold alone decides")
    beyond = d.significant and (d.delta or 0) < 0
    assert d.ci is not None
    return Judgement(over and beyond,
                     f"{head}; {stats.CONFIDENCE:.0%} interval [{d.ci[0]:+.1f}, "
                     f"{d.ci[1]:+.1f}] TPS: {d.verdict}")


@dataclass(frozen=True)
class Outcome:
    status: str
    """found | no-regression"""
    first_bad: str | None
    candidates: tuple[str, ...]
    """first_bad and the skipped commits just before it that could be it too"""
    measured: tuple[str, ...]
    """commits measured by this invocation (the others came from the state file)"""
    record: Mapping[str, Mapping[str, Any]]
    """every commit in the state: measurement or skip, with its judgement"""
    explanation: str
    state_path: Path


def _load_state(path: Path, q: Question) -> Record:
    st, _ = open_record(path, schema=SCHEMA, key="question", asked=q.key(),
                        fresh={"record": {}, "order": []}, what="bisect state",
                        hint=f"another bisect (good, bad, round or candidates differ): remove "
                             f"{path.parent} or give another --name")
    return st


def _from_record(rec: Mapping[str, Any]) -> Measurement | BuildFailed:
    if rec["kind"] == "skipped":
        return BuildFailed(rec["reason"])
    return Measurement(tuple(rec["throughput"]), tuple(rec.get("bundles", ())),
                       tuple(rec.get("verdicts", ())), rec.get("image", ""))


def run(q: Question, measure: Measure, state_dir: Path, *,
        progress: Callable[[str], None] = lambda _: None) -> Outcome:
    """Bisect q.commits (see the module docstring); resumable from state_dir."""
    if not q.commits or q.commits[-1] != q.bad:
        raise InputError(f"bisect: bad {q.bad[:12]} is not the last commit after good "
                         f"{q.good[:12]} (nothing between them?)")
    st = _load_state(state_dir / STATE, q)
    record: dict[str, dict[str, Any]] = st.doc["record"]
    fresh: list[str] = []
    index = {c: i for i, c in enumerate(q.commits)}

    def get(commit: str) -> Measurement | BuildFailed:
        if commit in record:
            return _from_record(record[commit])
        where = "good" if commit == q.good else f"{index[commit] + 1}/{len(q.commits)}"
        progress(f"measuring {commit[:12]} ({where})")
        st.doc.update(status="running", at=commit)
        st.save()
        result = measure(commit)
        if isinstance(result, Measurement) and not result.throughput:
            result = BuildFailed("it builds, but no repeat of the round completed (bundles: "
                                 + (", ".join(result.bundles) or "none") + ")")
        if isinstance(result, BuildFailed):
            rec: dict[str, Any] = {"kind": "skipped", "reason": result.reason}
            progress(f"{commit[:12]}: skipped: {result.reason}")
        else:
            rec = {"kind": "measured", "throughput": list(result.throughput),
                   "bundles": list(result.bundles), "verdicts": list(result.verdicts),
                   "image": result.image}
        rec["at"] = _dt.datetime.now(tz=_dt.UTC).isoformat(timespec="seconds")
        record[commit] = rec
        st.doc["order"].append(commit)
        fresh.append(commit)
        st.save()
        return result

    def verdict(commit: str, good: Measurement, m: Measurement) -> bool:
        j = judge(good, m, q.threshold_pct)
        record[commit].update(worse=j.worse, why=j.why)
        st.save()
        progress(f"{commit[:12]}: {'worse' if j.worse else 'not worse'}: {j.why}")
        return j.worse

    try:
        good = get(q.good)
        if isinstance(good, BuildFailed):
            raise ExternalError(f"bisect: good {q.good[:12]} cannot be measured "
                                f"({good.reason}): nothing to compare with")
        bad = get(q.bad)
        if isinstance(bad, BuildFailed):
            raise ExternalError(f"bisect: bad {q.bad[:12]} cannot be measured "
                                f"({bad.reason})", hint="give a --bad that builds and runs")
        if not verdict(q.bad, good, bad):
            return _finish(st, q, "no-regression", None, (), fresh,
                           f"bad {q.bad[:12]} is not worse than good: "
                           f"{record[q.bad]['why']}")
        lo, hi = -1, len(q.commits) - 1         # lo: good (before the range), hi: known bad
        while True:
            inside = [i for i in range(lo + 1, hi)
                      if record.get(q.commits[i], {}).get("kind") != "skipped"]
            if not inside:
                break
            mid = (lo + hi) // 2
            i = min(inside, key=lambda k: (abs(k - mid), k))
            m = get(q.commits[i])
            if isinstance(m, BuildFailed):
                continue
            if verdict(q.commits[i], good, m):
                hi = i
            else:
                lo = i
    except KeyboardInterrupt:
        st.doc.update(status="interrupted")
        st.save()
        raise
    except BaseException as exc:
        st.doc.update(status="failed", error=getattr(exc, "message", str(exc)))
        st.save()
        raise
    skipped = tuple(q.commits[i] for i in range(lo + 1, hi))
    first = q.commits[hi]
    text = f"first bad commit: {first[:12]}: {record[first]['why']}"
    if skipped:
        text = (f"the first bad commit is one of {', '.join(c[:12] for c in skipped)} "
                f"(skipped: not measurable) and {first[:12]}: {record[first]['why']}")
    return _finish(st, q, "found", first, (*skipped, first), fresh, text)


def _finish(st: Record, q: Question, status: str, first: str | None,
            candidates: Sequence[str], fresh: Sequence[str], text: str) -> Outcome:
    st.doc.update(status=status, at="", first_bad=first, candidates=list(candidates),
                  explanation=text, threshold_pct=q.threshold_pct)
    st.save()
    return Outcome(status, first, tuple(candidates), tuple(fresh), dict(st.doc["record"]),
                   text, st.path)


# --- the real measure ---------------------------------------------------------------------

def lab_measure(lab: Any, gitdir: Path, work_dir: Path, round_label: str, repeats: int,
                progress: Callable[[str], None] = lambda _: None) -> Measure:
    """measure(commit) on a launch.compare.lab.Lab: git archive the commit, bake fabric-node
    from it (a bake failure -> BuildFailed with its first lines), put the Fabric hosts on
    it, run the round `repeats` times; bundles under work_dir/results/<commit12>/."""

    def measure(commit: str) -> Measurement | BuildFailed:
        tarball = git.archive(gitdir, commit, work_dir / "src" / f"{commit}.tar.gz")
        v = Variant(commit[:12], commit, tarball, commit)
        try:
            image = lab.bake(v)
        except ExternalError as exc:
            return BuildFailed(" / ".join(exc.message.splitlines()[:3]))
        lab.launch(v, image)
        tput, bundles, verdicts = [], [], []
        for n in range(1, repeats + 1):
            progress(f"{commit[:12]}: {round_label} {n}/{repeats}")
            b = lab.bench(work_dir / "results" / commit[:12], (round_label,))
            bundles.append(str(b.bundle))
            r = next((x for x in b.summary.rounds if x.label == round_label), None)
            if r is not None and r.status == "completed" and r.throughput_tps is not None:
                tput.append(r.throughput_tps)
                verdicts.append(str(r.verdict.get("verdict")))
        return Measurement(tuple(tput), tuple(bundles), tuple(verdicts), image.name)

    return measure
