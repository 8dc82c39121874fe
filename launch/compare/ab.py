"""`launch compare ENV.yaml --ref A --ref B [--repeat N] [--max-repeat M]`: the same rounds on
each Fabric ref, interleaved, repeated until the comparison answers, then the comparison.

    bake     every ref first (a failing bake stops before anything is measured); a ref whose
             fingerprint this run directory already recorded, with its artifact still there,
             is not baked again (cached); bake itself skips a fingerprint it has (skipped)
    measure  repeat 1: A B ..., repeat 2: A B ..., so drift on the machine hits every ref;
             each step puts the Fabric hosts on the ref's image, created anew with a new
             channel (Lab.launch), and runs the rounds once (Lab.bench)
    compare  launch.compare.table over the groups <run>/<label>/ by launch.compare.stats'
             rule; while a compared figure of a comparable round is `unknown`, another batch
             of N interleaved repeats (A B A B ...), up to M per ref; each look at the data
             is one of the rule's `looks` (stats.looks_of), so stopping early costs no
             false positives. The result says how many repeats were needed. Page in <run>/

Everything of a run is in results/compare/<stamp>/: state.json (what was asked, the images,
every step with its bundle or its error, the status: running | complete | failed |
interrupted, and where it stopped), <label>/<env>/<stamp>/ (every measured bundle),
index.html, comparison.json, plots/. A bench that fails is recorded and the next step goes
on; a launch that fails stops the run (the lab is not in a known state).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabkit.errors import ExternalError, InputError
from launch.compare import page, stats, table
from launch.compare.lab import Image, Lab, Variant
from launch.compare.record import Record, open_record

SCHEMA = "fabperf.compare.run/1"
STATE = "state.json"
MAX_REPEATS = 50
REPEAT = 5
MAX_REPEAT = 20


@dataclass(frozen=True)
class Request:
    """What `launch compare` was asked."""

    variants: tuple[Variant, ...]
    repeats: int = REPEAT
    """the first batch, per ref"""
    rounds: tuple[str, ...] = ()
    max_repeats: int = MAX_REPEAT
    """the cap, per ref"""
    min_effect_pct: float = stats.MIN_EFFECT_PCT

    @property
    def looks(self) -> int:
        return stats.looks_of(self.repeats, self.max_repeats)

    def check(self) -> None:
        if len(self.variants) < 2:
            raise InputError.field(None, "--ref", "at least two refs", len(self.variants))
        labels = [v.label for v in self.variants]
        if len(set(labels)) != len(labels):
            raise InputError.field(None, "--ref", "distinct refs", labels)
        if not stats.MIN_REPEATS <= self.repeats <= MAX_REPEATS:
            raise InputError.field(None, "--repeat", f"{stats.MIN_REPEATS} to {MAX_REPEATS}",
                                   self.repeats, hint=f"fewer than {stats.MIN_REPEATS} "
                                   "repeats cannot tell a change from noise")
        if not self.repeats <= self.max_repeats <= MAX_REPEATS:
            raise InputError.field(None, "--max-repeat", f"--repeat ({self.repeats}) to "
                                   f"{MAX_REPEATS}", self.max_repeats)
        if not 0 < self.min_effect_pct < 100:
            raise InputError.field(None, "--min-effect", "a percentage in (0, 100)",
                                   self.min_effect_pct)


def schedule(variants: Sequence[Variant], repeats: int, first: int = 1
             ) -> list[tuple[int, Variant]]:
    """(repeat, variant) in run order: A B A B ... (each repeat visits every ref once)."""
    return [(r, v) for r in range(first, repeats + 1) for v in variants]


@dataclass(frozen=True)
class Result:
    run_dir: Path
    comparison: table.Comparison
    page: Path
    failed_steps: tuple[dict[str, Any], ...]
    repeats: int = 0
    """repeats per ref the comparison needed (the last look's)"""
    looks: int = 1
    """looks taken (of request.looks at most)"""


def _images(lab: Lab, request: Request, st: Record,
            progress: Callable[[str], None]) -> dict[str, Image]:
    recorded = st.doc.get("images", {})
    images: dict[str, Image] = {}
    for v in request.variants:
        old = recorded.get(v.label)
        if old is not None:
            img = Image(**{**old, "action": "cached"})
            if img.fingerprint == lab.fingerprint(v) and lab.has_artifact(img):
                progress(f"{v.label}: {img.name} cached (baked earlier in this run)")
                images[v.label] = img
                continue
        st.set(status="running", at=f"bake {v.label}")
        img = lab.bake(v)
        progress(f"{v.label}: {img.name} {img.action}")
        images[v.label] = img
        st.doc.setdefault("images", {})[v.label] = img.to_json()
        st.save()
    return images


def preview(lab: Lab, request: Request) -> list[str]:
    """What a run would do (--dry-run): each ref's image by fingerprint, the schedule."""
    request.check()
    lines = [f"{v.label}: fabperf-fabric-node-{lab.fingerprint(v)[:12]} "
             f"({' '.join(v.version_sets())}"
             + (f"; fabric.version {v.fabric_version}" if v.fabric_version else "") + ")"
             for v in request.variants]
    order = " ".join(f"{v.label}#{r}" for r, v in schedule(request.variants, request.repeats))
    lines.append(f"steps: {order} (each: recreate the Fabric hosts, run "
                 f"{', '.join(request.rounds) or 'every round'})")
    sizes = stats.look_sizes(request.repeats, request.max_repeats)
    if len(sizes) > 1:
        lines.append(f"then, while a figure is unknown: more interleaved repeats up to "
                     f"{', '.join(map(str, sizes[1:]))} per ref")
    lines.append(f"rule: {stats.method(request.min_effect_pct, 0, request.looks)}")
    return lines


def run(lab: Lab, request: Request, run_dir: Path, *,
        progress: Callable[[str], None] = lambda _: None) -> Result:
    """Bake, measure interleaved, compare (see the module docstring). A run_dir with a
    state.json of the same request resumes: its finished steps are not run again."""
    request.check()
    asked = {"environment": lab.environment, "variants": [v.to_json() for v in request.variants],
             "repeats": request.repeats, "rounds": list(request.rounds),
             "max_repeats": request.max_repeats, "min_effect_pct": request.min_effect_pct}
    st, resumed = open_record(run_dir / STATE, schema=SCHEMA, key="request", asked=asked,
                              fresh={"images": {}, "steps": []}, what="compare run",
                              hint="give another --out directory")
    if resumed:
        progress(f"resuming {run_dir}: {len(st.doc.get('steps', []))} steps recorded")
    steps: list[dict[str, Any]] = st.doc.setdefault("steps", [])
    sizes = stats.look_sizes(request.repeats, request.max_repeats)
    comparison: table.Comparison | None = None
    looked = 0
    try:
        images = _images(lab, request, st, progress)
        for look, n in enumerate(sizes, 1):
            _measure(lab, request, st, steps, images, n, run_dir, progress)
            looked, comparison = look, _comparison(request, run_dir)
            if comparison is None:
                continue
            left = comparison.unknown()
            st.set(looks=look, repeats_used=n)
            if not left:
                progress(f"answered after {n} repeats per ref (look {look} of {len(sizes)})")
                break
            if n < sizes[-1]:
                progress(f"look {look}: {len(left)} figure(s) unknown ({', '.join(left[:4])}"
                         f"{' ...' if len(left) > 4 else ''}): {sizes[look]} repeats per ref")
            else:
                progress(f"still unknown at the cap ({n} repeats per ref): {', '.join(left)}")
    except KeyboardInterrupt:
        st.set(status="interrupted")
        raise
    except BaseException as exc:
        st.set(status="failed", error=getattr(exc, "message", str(exc)))
        raise
    missing = [v.label for v in request.variants
               if not any(s["label"] == v.label and s["status"] == "measured" for s in steps)]
    if missing:
        st.set(status="failed", error=f"nothing measured for {missing}")
        raise ExternalError(f"compare: no run of {', '.join(missing)} completed "
                            f"(see {st.path})")
    assert comparison is not None
    index = page.write(comparison, run_dir)
    failed = tuple(s for s in steps if s["status"] != "measured")
    st.set(status="complete", at="", page=str(index), answer=comparison.answer())
    return Result(run_dir, comparison, index, failed, sizes[looked - 1], looked)


def _comparison(request: Request, run_dir: Path) -> table.Comparison | None:
    """The comparison of what is measured so far (None while a ref has no bundle)."""
    if not all((run_dir / v.label).is_dir() and table.bundles_under(run_dir / v.label)
               for v in request.variants):
        return None
    return table.compare([table.load_group(run_dir / v.label, v.label)
                          for v in request.variants], request.rounds,
                         min_effect_pct=request.min_effect_pct, looks=request.looks)


def _measure(lab: Lab, request: Request, st: Record, steps: list[dict[str, Any]],
             images: dict[str, Image], upto: int, run_dir: Path,
             progress: Callable[[str], None]) -> None:
    """Every step of repeats 1..upto not measured yet, interleaved."""
    plan = schedule(request.variants, upto)
    for i, (repeat, v) in enumerate(plan, 1):
        done = next((s for s in steps if s["label"] == v.label and s["repeat"] == repeat
                     and s["status"] == "measured"), None)
        if done is not None:
            continue
        where = f"step {i}/{len(plan)}: {v.label} repeat {repeat}/{upto}"
        progress(where)
        st.set(status="running", at=where)
        lab.launch(v, images[v.label])
        step: dict[str, Any] = {"label": v.label, "repeat": repeat,
                                "image": images[v.label].name}
        try:
            bench = lab.bench(run_dir / v.label, request.rounds)
        except ExternalError as exc:
            progress(f"{where}: bench failed: {exc.message.splitlines()[0]}")
            step.update(status="failed", error=exc.message)
        else:
            verdicts = ", ".join(f"{r.label}={r.verdict.get('verdict')} "
                                 f"{r.throughput_tps} TPS" for r in bench.summary.rounds)
            progress(f"{where}: {verdicts} ({bench.bundle})")
            step.update(status="measured", bundle=str(bench.bundle))
        steps[:] = [s for s in steps if not (s["label"] == v.label
                                              and s["repeat"] == repeat)] + [step]
        st.save()
