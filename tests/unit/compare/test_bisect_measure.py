"""launch.compare.bisect: the driver on simulated commits (accuracy under noise, the
interleaving, compile failures vs infrastructure errors, the offline check) and the real
measure over a fake lab."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from fakelab import FakeLab, external

from fabkit.errors import ExternalError, InputError
from launch.compare import bisect, git, simulate, stats

GOOD = "0" * 40
LINE = [f"{i:040x}" for i in range(1, 17)]          # 16 commits after good


class Line:
    """A simulated commit line: commit i (1-based) from `bad_from` on is `drop` slower;
    Gaussian noise of `cv`; every call recorded."""

    def __init__(self, bad_from: int = 9, drop: float = 0.10, cv: float = 0.05, seed: int = 1,
                 broken: Sequence[str] = (), infra_at: int | None = None,
                 not_comparable: str | None = None) -> None:
        self.truth = {GOOD: 100.0, **{c: 100.0 * (1 - drop if i + 1 >= bad_from else 1)
                                      for i, c in enumerate(LINE)}}
        self.rng = np.random.default_rng(seed)
        self.cv, self.broken, self.infra_at = cv, set(broken), infra_at
        self.not_comparable = not_comparable
        self.calls: list[tuple[str, str]] = []

    def check(self, commits: Sequence[str]) -> None:
        self.calls.append(("check", ""))

    def build(self, commit: str) -> bisect.Built | bisect.BuildFailed:
        self.calls.append(("build", commit))
        if commit in self.broken:
            return bisect.BuildFailed("make peer: undefined: foo")
        return bisect.Built(f"img-{commit[:7]}")

    def once(self, commit: str, built: bisect.Built) -> bisect.Sample:
        runs = sum(1 for c in self.calls if c[0] == "once")
        if self.infra_at is not None and runs == self.infra_at:
            raise ExternalError("qemu: could not allocate the overlay: No space left on device")
        self.calls.append(("once", commit))
        if commit == self.not_comparable:
            return bisect.Sample(None, "load-generator-bound", "b/x", "verdict "
                                 "load-generator-bound")
        v = self.truth[commit] * (1 + self.cv * float(self.rng.standard_normal()))
        return bisect.Sample(v, "headroom", f"b/{commit[:7]}")


def question(**kw: object) -> bisect.Question:
    return bisect.Question(GOOD, LINE[-1], "create", tuple(LINE), **kw)  # type: ignore[arg-type]


def test_the_simulated_regression_is_found_in_at_least_27_of_30_trials(tmp_path: Path) -> None:
    # the acceptance case: 16 commits, a 10 % drop from #9 on, CV 5 %, the defaults
    r = simulate.bisect_trials(simulate.Policy(), simulate.gaussian(0.05), 30, 2026, tmp_path)
    assert r.right >= 27, r
    assert r.outcomes.get("found", 0) >= 27


def test_good_is_measured_afresh_interleaved_with_each_candidate(tmp_path: Path) -> None:
    line = Line(cv=0.01)
    out = bisect.run(question(), line, tmp_path)
    assert out.status == "found" and out.first_bad == LINE[8]
    runs = [c for kind, c in line.calls if kind == "once"]
    # each step alternates good and the candidate, good first
    assert runs[:4] == [GOOD, LINE[-1], GOOD, LINE[-1]]
    stepped = [c for c in dict.fromkeys(runs) if c != GOOD]
    assert stepped[0] == LINE[-1] and len(stepped) == len(out.measured) == 5
    for c in stepped:
        rec = out.record[c]
        assert len(rec["good"]) == len(rec["candidate"]) >= 5
    assert line.calls[0] == ("check", "")             # the offline inputs before any bake
    assert out.runs == len(runs)


def test_unknown_means_more_runs_up_to_the_cap(tmp_path: Path) -> None:
    # CV 5 %: a good candidate never shows "same" within +-3 % by 20 runs: the cap decides
    out = bisect.run(question(), Line(cv=0.05, seed=3), tmp_path)
    assert out.status == "found" and out.first_bad == LINE[8]
    capped = [c for c, r in out.record.items() if r.get("runs") == 20]
    assert capped and all("undecided at the cap" in out.record[c]["why"] for c in capped
                          if out.record[c]["answer"] == stats.UNKNOWN)
    assert "probable" in out.explanation


def test_an_infrastructure_error_stops_the_bisect_and_says_so(tmp_path: Path) -> None:
    line = Line(cv=0.01, infra_at=23)
    with pytest.raises(ExternalError) as e:
        bisect.run(question(), line, tmp_path)
    msg = str(e.value)
    assert "bisect stopped: infrastructure error while running the round" in msg
    assert "No space left on device" in msg and "not skipped" in msg
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["status"] == "failed" and "No space left" in state["error"]
    assert not any(r.get("kind") == "skipped" for r in state["record"].values())
    # fixed, the same command resumes: the runs made are kept, not made again
    again = Line(cv=0.01)
    out = bisect.run(question(), again, tmp_path)
    assert out.first_bad == LINE[8]
    made = sum(len(r.get("good", [])) + len(r.get("candidate", []))
               for r in out.record.values())
    assert out.runs == made - 23


def test_a_bake_error_that_is_not_the_compile_stops_too(tmp_path: Path) -> None:
    class Broken(Line):
        def build(self, commit: str) -> bisect.Built | bisect.BuildFailed:
            if commit == LINE[7]:
                raise ExternalError("1 of 1 images failed to bake: packer: "
                                    "ssh: handshake timed out")
            return super().build(commit)

    with pytest.raises(ExternalError, match="infrastructure error while building it"):
        bisect.run(question(), Broken(cv=0.01), tmp_path)


def test_a_commit_whose_compile_fails_is_skipped_and_named(tmp_path: Path) -> None:
    out = bisect.run(question(), Line(cv=0.01, broken=[LINE[7]]), tmp_path)
    assert out.record[LINE[7]]["kind"] == "skipped"
    assert out.first_bad == LINE[8] and out.candidates == (LINE[7], LINE[8])
    assert "one of" in out.explanation and "compile step failed" in out.explanation


def test_a_round_that_is_not_comparable_stops_the_bisect(tmp_path: Path) -> None:
    with pytest.raises(ExternalError, match="not comparable.*load-generator-bound"):
        bisect.run(question(), Line(cv=0.01, not_comparable=LINE[-1]), tmp_path)


def test_no_regression_and_unknown(tmp_path: Path) -> None:
    out = bisect.run(question(), Line(drop=0.0, cv=0.005), tmp_path / "a")
    assert out.status == "no-regression" and "not worse" in out.explanation
    # a 2 % drop under a 3 % minimum effect: never a regression
    out = bisect.run(question(), Line(drop=0.02, cv=0.005), tmp_path / "b")
    assert out.status == "no-regression"
    # a 4 % drop at CV 10 %: 20 runs cannot tell
    out = bisect.run(question(), Line(drop=0.04, cv=0.10, seed=5), tmp_path / "c")
    assert out.status == "unknown" and "cannot tell" in out.explanation


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nothing between"):
        bisect.run(bisect.Question(GOOD, "b" * 40, "create", ()), Line(), tmp_path)
    with pytest.raises(InputError, match="--repeat/--max-repeat"):
        bisect.run(question(repeat=30, max_repeat=20), Line(), tmp_path)


# --- the real measure over a fake lab ------------------------------------------------------

A, B = "a" * 40, "b" * 40


def lab_measure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                fail=lambda what, args: None) -> tuple[FakeLab, bisect.LabMeasure]:
    monkeypatch.setattr(git, "archive", lambda gitdir, commit, dest: dest)
    fake = FakeLab({A[:12]: "v2.5.12", B[:12]: "v3.0.0"}, fail)
    return fake, bisect.LabMeasure(fake, tmp_path, tmp_path / "w", "create")


def test_lab_measure_recreates_the_hosts_for_every_run(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fake, m = lab_measure(tmp_path, monkeypatch)
    built = m.build(A)
    assert isinstance(built, bisect.Built)
    samples = [m.once(A, built) for _ in range(3)]
    assert [c[0] for c in fake.calls] == ["bake"] + ["launch", "bench"] * 3
    assert all(c[2] == ("create",) for c in fake.calls if c[0] == "bench")
    # goodput: succeeded / window (the recorded bundles predate goodput_tps)
    assert sorted(s.value for s in samples) == pytest.approx(
        sorted([(48.9 * 60) / 60, (49.3 * 60) / 60, (49.1 * 60 - 1) / 60]), abs=0.02)
    assert all(s.verdict == "headroom" for s in samples)


def test_lab_measure_tells_a_compile_failure_from_an_infrastructure_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compile_error = external(
        "1 of 1 images failed to bake (the others: none):\n- fabric-node/qemu: in the build "
        "root: bash /tmp/fabperf/scripts/fabric-node/fabric.sh failed with exit code 86\n"
        "  output (last lines):\n    core/x.go:3: undefined: foo\n"
        f"    {bisect.COMPILE_FAILED}: make peer orderer at abcdef1")
    _, m = lab_measure(tmp_path, monkeypatch, lambda what, args: compile_error
                       if what == "bake" and args == (B[:12],) else None)
    failed = m.build(B)
    assert isinstance(failed, bisect.BuildFailed) and "make peer orderer" in failed.reason
    disk = external("1 of 1 images failed to bake:\n- fabric-node/qemu: qemu-img: "
                    "No space left on device")
    _, m = lab_measure(tmp_path, monkeypatch, lambda what, args: disk
                       if what == "bake" else None)
    with pytest.raises(ExternalError, match="No space left"):
        m.build(A)


def test_lab_measure_checks_the_offline_inputs(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Path, tuple[str, ...]]] = []
    monkeypatch.setattr(git, "check_offline", lambda d, cs: seen.append((d, tuple(cs))))
    fake, m = lab_measure(tmp_path, monkeypatch)
    fingerprints: list[str] = []
    monkeypatch.setattr(fake, "fingerprint", lambda v: fingerprints.append(v.ref) or "fp")
    m.check((A, B))
    assert seen == [(tmp_path, (A, B))] and fingerprints == [A]
    assert not fake.calls                                    # nothing baked


def test_lab_measure_marks_a_round_that_is_not_comparable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from launch.bench import results
    from launch.compare.lab import Bench

    live = Path(__file__).resolve().parents[2] / "data/bench/load-generator-bound-live"
    fake, m = lab_measure(tmp_path, monkeypatch)
    monkeypatch.setattr(fake, "bench", lambda root, rounds=(), **kw: Bench(
        live, results.load(live)))
    built = m.build(B)
    assert isinstance(built, bisect.Built)
    s = m.once(B, built)        # the live over-driven round: Caliper was the limit
    assert s.value is None and s.verdict == "load-generator-bound"
    assert s.why == "verdict load-generator-bound"
