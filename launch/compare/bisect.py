"""`launch bisect`: the first commit whose round's goodput is lower than the good one's.

Candidates are the first-parent line from good to bad (`git rev-list --first-parent
--reverse good..bad`): a merge is one step; the commits of the branch it merged are not
visited, so the answer is the merge that brought the regression in.

Each question "is commit C worse than good?" is a comparison by launch.compare.stats' rule
(one figure: the round's goodput; `different` only when the drop is shown beyond the minimum
effect), measured afresh: good and C are run interleaved (good C good C ...), each run on
Fabric hosts created anew from that commit's image (`once`), a first batch of `repeat`
runs each, then batches of the same size while the answer is `unknown`, up to
`max_repeat`. Good is never reused from an earlier step: drift over hours hits both.

- bad first: it must be `different` and lower, else there is nothing to look for
  (`same` or higher: no-regression; still `unknown` at the cap: unknown, with the figures);
- then the usual halving between the last good and the first bad index. A candidate is
  worse when `different` and lower; not worse when `same` or higher; still `unknown` at
  the cap, it is taken for whichever side its change is nearer (0, or bad's change) and the
  answer says so ("undecided at the cap").

Failures: a commit whose compile step fails (fabric.sh exits `COMPILE_EXIT` and prints
`COMPILE_FAILED`) is skipped, as `git bisect skip` would, and named with the answer when it
sits on the boundary. Any other error (disk, network, a VM, a bench) is an infrastructure
error: the bisect stops and says so, the state keeps every run, and the same command resumes.
A run whose round is not comparable (load-generator-bound, inconclusive, failing, failures
over the bound) also stops it: the lab is not measuring Fabric. The offline inputs the
bakes need (every commit in the repository, its go.mod, the bake's own inputs) are checked
before the first bake.

State: <build>/bisect/<name>/state.json (atomic, rewritten after every run) holds the
question, each commit's build and each step's runs. Running the same command again resumes:
recorded runs are not run again, decisions replay from them.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fabkit.errors import ExternalError, InputError
from launch.compare import figures, git, stats
from launch.compare.lab import Image, Lab, Variant
from launch.compare.record import Record, open_record

SCHEMA = "fabperf.bisect/2"
STATE = "state.json"
COMPILE_FAILED = "fabperf: FABRIC COMPILE FAILED"
"""the line packer/scripts/fabric-node/fabric.sh prints when Fabric's own `make` fails"""
COMPILE_EXIT = 86


@dataclass(frozen=True)
class Built:
    """A commit's image, ready to run."""

    image: str


@dataclass(frozen=True)
class BuildFailed:
    """The commit's compile step failed: skipped."""

    reason: str


@dataclass(frozen=True)
class Sample:
    """One run of the round on one commit."""

    value: float | None
    """goodput (TPS); None: the round is not comparable (why)"""
    verdict: str
    bundle: str
    why: str = ""


class Measure(Protocol):
    """What bisect needs of the lab (launch.compare.bisect.LabMeasure; a simulation)."""

    def check(self, commits: Sequence[str]) -> None:
        """The offline inputs every bake will need: InputError naming what is missing."""
        ...

    def build(self, commit: str) -> Built | BuildFailed:
        """The commit's image; BuildFailed only when its compile step failed; any other
        failure raises (ExternalError)."""
        ...

    def once(self, commit: str, built: Built) -> Sample:
        """The Fabric hosts created anew on the commit's image, the round run once."""
        ...


@dataclass(frozen=True)
class Question:
    good: str
    bad: str
    round: str
    commits: tuple[str, ...]
    """good..bad along the first parents, oldest first; the last one is bad"""
    min_effect_pct: float = stats.MIN_EFFECT_PCT
    repeat: int = 5
    max_repeat: int = 20

    def key(self) -> dict[str, Any]:
        return {"good": self.good, "bad": self.bad, "round": self.round,
                "commits": list(self.commits)}

    def check(self) -> None:
        if not self.commits or self.commits[-1] != self.bad:
            raise InputError(f"bisect: bad {self.bad[:12]} is not the last commit after good "
                             f"{self.good[:12]} (nothing between them?)")
        if not 2 <= self.repeat <= self.max_repeat <= 100:
            raise InputError.field(None, "--repeat/--max-repeat",
                                   "2 <= repeat <= max-repeat <= 100",
                                   (self.repeat, self.max_repeat))
        if not 0 < self.min_effect_pct < 100:
            raise InputError.field(None, "--min-effect", "a percentage in (0, 100)",
                                   self.min_effect_pct)


@dataclass(frozen=True)
class Outcome:
    status: str
    """found | no-regression | unknown"""
    first_bad: str | None
    candidates: tuple[str, ...]
    """first_bad and the skipped commits just before it that could be it too"""
    measured: tuple[str, ...]
    """commits stepped by this invocation (the others came from the state file)"""
    record: Mapping[str, Mapping[str, Any]]
    """every commit in the state: its step (runs, answer) or its skip"""
    explanation: str
    state_path: Path
    runs: int
    """runs made by this invocation"""


def _now() -> str:
    return _dt.datetime.now(tz=_dt.UTC).isoformat(timespec="seconds")


def run(q: Question, measure: Measure, state_dir: Path, *,
        progress: Callable[[str], None] = lambda _: None, durable: bool = True) -> Outcome:
    """Bisect q.commits (see the module docstring); resumable from state_dir (durable:
    fsync the state after every run)."""
    q.check()
    st, _ = open_record(state_dir / STATE, schema=SCHEMA, key="question", asked=q.key(),
                        fresh={"record": {}, "order": []}, what="bisect state",
                        hint=f"another bisect (good, bad, round or candidates differ): remove "
                             f"{state_dir} or give another --name", durable=durable)
    record: dict[str, dict[str, Any]] = st.doc["record"]
    looks = stats.looks_of(q.repeat, q.max_repeat)
    sizes = stats.look_sizes(q.repeat, q.max_repeat)
    index = {c: i for i, c in enumerate(q.commits)}
    fresh: list[str] = []
    built: dict[str, Built] = {}
    counter = {"runs": 0}

    def where(commit: str) -> str:
        return "good" if commit == q.good else f"{index[commit] + 1}/{len(q.commits)}"

    def build(commit: str) -> Built | BuildFailed:
        rec = record.get(commit, {})
        if rec.get("kind") == "skipped":
            return BuildFailed(rec["reason"])
        if commit in built:
            return built[commit]
        st.set(status="running", at=f"build {commit}")
        try:
            got = measure.build(commit)
        except ExternalError as exc:
            raise _stopped(commit, "building it", exc, st) from exc
        if isinstance(got, BuildFailed):
            record[commit] = {"kind": "skipped", "reason": got.reason, "at": _now()}
            st.doc["order"].append(commit)
            fresh.append(commit)
            st.save()
            progress(f"{commit[:12]}: skipped: its compile step failed: {got.reason}")
            return got
        built[commit] = got
        return got

    def sample(commit: str, b: Built, into: list[float], bundles: list[str]) -> None:
        st.doc.update(status="running", at=f"run {commit}")     # saved with the run
        try:
            s = measure.once(commit, b)
        except ExternalError as exc:
            raise _stopped(commit, "running the round on it", exc, st) from exc
        counter["runs"] += 1
        if s.value is None:
            raise _stopped(commit, "judging its round", ExternalError(
                f"the round is not comparable ({s.why}; {s.bundle}): the lab is not "
                "measuring Fabric"), st)
        into.append(s.value)
        bundles.append(s.bundle)
        st.save()

    def step(commit: str) -> stats.Difference | None:
        """good vs commit, interleaved, adaptive; None when the commit is skipped."""
        cb = build(commit)
        if isinstance(cb, BuildFailed):
            return None
        gb = build(q.good)
        if isinstance(gb, BuildFailed):
            raise ExternalError(f"bisect: good {q.good[:12]} does not compile "
                                f"({gb.reason}): nothing to compare with")
        rec = record.setdefault(commit, {"kind": "measured", "good": [], "candidate": [],
                                         "good_bundles": [], "bundles": []})
        if commit not in st.doc["order"]:
            st.doc["order"].append(commit)
            fresh.append(commit)
        d = stats.compare(rec["good"], rec["candidate"], min_effect_pct=q.min_effect_pct,
                          looks=looks)
        for n in sizes:
            if len(rec["candidate"]) >= n and len(rec["good"]) >= n:
                d = stats.compare(rec["good"], rec["candidate"],
                                  min_effect_pct=q.min_effect_pct, looks=looks)
                if d.answer != stats.UNKNOWN:
                    break
                continue
            progress(f"measuring {commit[:12]} ({where(commit)}) against good, "
                     f"interleaved, up to {n} runs each")
            while len(rec["good"]) < n or len(rec["candidate"]) < n:
                if len(rec["good"]) <= len(rec["candidate"]):
                    sample(q.good, gb, rec["good"], rec["good_bundles"])
                else:
                    sample(commit, cb, rec["candidate"], rec["bundles"])
            d = stats.compare(rec["good"], rec["candidate"], min_effect_pct=q.min_effect_pct,
                              looks=looks)
            if d.answer != stats.UNKNOWN:
                break
        rec.update(answer=d.answer, delta_pct=d.delta_pct,
                   interval_pct=list(d.interval_pct) if d.interval_pct else None,
                   runs=len(rec["candidate"]))
        st.save()
        return d

    def text(d: stats.Difference, n: int) -> str:
        iv = (f", interval [{d.interval_pct[0]:+.1f}, {d.interval_pct[1]:+.1f}] %"
              if d.interval_pct else "")
        return (f"goodput {d.delta_pct:+.1f} % vs good{iv}, {n} runs each: {d.answer} "
                f"(minimum effect {q.min_effect_pct:g} %)")

    try:
        measure.check((q.good, *q.commits))
        d_bad = step(q.bad)
        if d_bad is None:
            raise ExternalError(f"bisect: bad {q.bad[:12]} does not compile "
                                f"({record[q.bad]['reason']})",
                                hint="give a --bad that builds and runs")
        assert d_bad.delta_pct is not None
        bad_why = text(d_bad, record[q.bad]["runs"])
        record[q.bad].update(worse=d_bad.answer == stats.DIFFERENT and d_bad.delta_pct < 0,
                             why=bad_why)
        progress(f"{q.bad[:12]} (bad): {bad_why}")
        if d_bad.answer == stats.UNKNOWN:
            return _finish(st, q, "unknown", None, (), fresh, counter["runs"],
                           f"cannot tell whether bad {q.bad[:12]} is worse than good: "
                           f"{bad_why}; raise --max-repeat, or --min-effect")
        if not record[q.bad]["worse"]:
            return _finish(st, q, "no-regression", None, (), fresh, counter["runs"],
                           f"bad {q.bad[:12]} is not worse than good: {bad_why}")
        bad_log = math.log1p(d_bad.delta_pct / 100)
        lo, hi = -1, len(q.commits) - 1         # lo: good (before the range), hi: known bad
        forced: list[str] = []
        while True:
            inside = [i for i in range(lo + 1, hi)
                      if record.get(q.commits[i], {}).get("kind") != "skipped"]
            if not inside:
                break
            mid = (lo + hi) // 2
            i = min(inside, key=lambda k: (abs(k - mid), k))
            c = q.commits[i]
            d = step(c)
            if d is None:
                continue
            assert d.delta_pct is not None
            why = text(d, record[c]["runs"])
            if d.answer == stats.UNKNOWN:
                est = math.log1p(d.delta_pct / 100)
                worse = abs(est - bad_log) < abs(est)
                why += (f"; undecided at the cap: nearer to "
                        f"{'bad' if worse else 'good'} ({d_bad.delta_pct:+.1f} % vs 0)")
                forced.append(c)
            else:
                worse = d.answer == stats.DIFFERENT and d.delta_pct < 0
            record[c].update(worse=worse, why=why)
            st.save()
            progress(f"{c[:12]} ({where(c)}): {'worse' if worse else 'not worse'}: {why}")
            if worse:
                hi = i
            else:
                lo = i
    except KeyboardInterrupt:
        st.set(status="interrupted")
        raise
    except BaseException as exc:
        st.set(status="failed", error=getattr(exc, "message", str(exc)))
        raise
    skipped = tuple(q.commits[i] for i in range(lo + 1, hi))
    first = q.commits[hi]
    head = f"first bad commit: {first[:12]}: {record[first]['why']}"
    if skipped:
        head = (f"the first bad commit is one of {', '.join(c[:12] for c in skipped)} "
                f"(skipped: their compile step failed) and {first[:12]}: "
                f"{record[first]['why']}")
    if forced:
        head += (f" (decided at the cap without a significant answer: "
                 f"{', '.join(c[:12] for c in forced)}: the answer is probable, not shown)")
    return _finish(st, q, "found", first, (*skipped, first), fresh, counter["runs"], head)


def _stopped(commit: str, doing: str, exc: ExternalError, st: Record) -> ExternalError:
    msg = (f"bisect stopped: infrastructure error while {doing} ({commit[:12]}): "
           f"{exc.message}\nNot a verdict on the commit, and it was not skipped: fix the lab "
           f"and run the same command again (the {st.path.name} keeps every run made).")
    return ExternalError(msg, hint=exc.hint)


def _finish(st: Record, q: Question, status: str, first: str | None,
            candidates: Sequence[str], fresh: Sequence[str], runs: int,
            text: str) -> Outcome:
    st.doc.update(status=status, at="", first_bad=first, candidates=list(candidates),
                  explanation=text, min_effect_pct=q.min_effect_pct, repeat=q.repeat,
                  max_repeat=q.max_repeat, method=stats.method(q.min_effect_pct, 1,
                                                               stats.looks_of(q.repeat,
                                                                              q.max_repeat)))
    st.save()
    return Outcome(status, first, tuple(candidates), tuple(fresh), dict(st.doc["record"]),
                   text, st.path, runs)


# --- the real measure ---------------------------------------------------------------------

class LabMeasure:
    """Measure on a launch.compare.lab.Lab: git archive the commit, bake fabric-node from it,
    and for each run put the Fabric hosts on it anew and run the round."""

    def __init__(self, lab: Lab, gitdir: Path, work_dir: Path, round_label: str,
                 progress: Callable[[str], None] = lambda _: None) -> None:
        self.lab, self.gitdir, self.work_dir = lab, gitdir, work_dir
        self.round, self.progress = round_label, progress
        self.images: dict[str, Image] = {}
        self.variants: dict[str, Variant] = {}

    def _variant(self, commit: str) -> Variant:
        if commit not in self.variants:
            tarball = git.archive(self.gitdir, commit,
                                  self.work_dir / "src" / f"{commit}.tar.gz")
            self.variants[commit] = Variant(commit[:12], commit, tarball, commit)
        return self.variants[commit]

    def check(self, commits: Sequence[str]) -> None:
        git.check_offline(self.gitdir, commits)
        # the bake's own inputs (base image, goss binary, the source tarball): planning the
        # good commit's image checks them without building anything
        self.lab.fingerprint(self._variant(commits[0]))

    def build(self, commit: str) -> Built | BuildFailed:
        v = self._variant(commit)
        try:
            image = self.lab.bake(v)
        except ExternalError as exc:
            lines = exc.message.splitlines()
            mark = next((ln for ln in lines if COMPILE_FAILED in ln), None)
            if mark is None:
                raise
            return BuildFailed(mark.split(COMPILE_FAILED, 1)[1].strip(" :") or "make failed")
        self.images[commit] = image
        return Built(image.name)

    def once(self, commit: str, built: Built) -> Sample:
        v = self._variant(commit)
        self.lab.launch(v, self.images[commit])
        b = self.lab.bench(self.work_dir / "results" / commit[:12], (self.round,))
        r = next((x for x in b.summary.rounds if x.label == self.round), None)
        if r is None:
            return Sample(None, "-", str(b.bundle), f"no round {self.round} in the bundle")
        why = figures.not_comparable(r)
        verdict = str(r.verdict.get("verdict", "-"))
        if why:
            return Sample(None, verdict, str(b.bundle), why)
        return Sample(figures.goodput(r), verdict, str(b.bundle))
