"""The comparison policy on simulated runs: how often it is wrong, measured.

`compare_trials` runs the adaptive policy of `launch compare` (launch.compare.ab: a first
batch of `repeat` runs per group, then batches of the same size while a compared figure is
`unknown`, up to `max_repeat`) on thousands of simulated reports at once, with the very
functions of launch.compare.stats; `bisect_trials` runs launch.compare.bisect's driver on a
simulated commit line. The unit tests assert the acceptance figures with these;
benchmarks/compare_power.py prints them per policy and noise model.

A noise model draws multiplicative factors (one run's figure = true value x factor):
Gaussian with a coefficient of variation, or resampled from the recorded live rounds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from launch.compare import bisect, stats

Noise = Callable[[np.random.Generator, tuple[int, ...]], stats.Array]


def gaussian(cv: float) -> Noise:
    """1 + cv x N(0, 1), kept above 1 % (a run never measures nothing)."""
    def draw(rng: np.random.Generator, shape: tuple[int, ...]) -> stats.Array:
        return np.maximum(1.0 + cv * rng.standard_normal(shape), 0.01)
    return draw


def resampled(residuals: Sequence[float]) -> Noise:
    """1 + a residual drawn with replacement from recorded relative residuals."""
    r = np.asarray(residuals, float)

    def draw(rng: np.random.Generator, shape: tuple[int, ...]) -> stats.Array:
        return 1.0 + rng.choice(r, size=shape)
    return draw


def live_residuals(bundles: Sequence[Path]) -> list[float]:
    """Relative residuals of goodput / requested rate over recorded live rounds that were
    `headroom` (the lab kept up: what is left is run-to-run noise), centred on their mean."""
    ratios = []
    for b in bundles:
        doc = json.loads((b / "summary.json").read_text())
        for r in doc["rounds"]:
            w = (r.get("window") or {}).get("seconds")
            if (r.get("status") == "completed" and r.get("requested_tps") and w
                    and r.get("verdict", {}).get("verdict") == "headroom"):
                ratios.append(r["succeeded"] / w / r["requested_tps"])
    if len(ratios) < 2:
        raise ValueError("fewer than two recorded headroom rounds to resample")
    mean = sum(ratios) / len(ratios)
    return [x / mean - 1 for x in ratios]


@dataclass(frozen=True)
class Policy:
    repeat: int = 5
    max_repeat: int = 20
    min_effect_pct: float = stats.MIN_EFFECT_PCT

    @property
    def looks(self) -> int:
        return stats.looks_of(self.repeat, self.max_repeat)

    def label(self) -> str:
        return f"{self.repeat}..{self.max_repeat}"


@dataclass(frozen=True)
class Trials:
    answers: npt.NDArray[np.str_]
    """(trials, tests): the final answer of each compared figure"""
    repeats: npt.NDArray[np.int64]
    """(trials,): runs per group when the policy stopped"""
    sign: npt.NDArray[np.float64]
    """(trials, tests): the sign of each figure's estimated change when it stopped"""


def compare_trials(policy: Policy, shifts: Sequence[float], noise: Noise, trials: int,
                   rng: np.random.Generator) -> Trials:
    """`trials` simulated reports of len(shifts) figures (metrics x rounds): group B's
    figure i is A's x (1 + shifts[i]), each run with independent noise."""
    k, cap = len(shifts), policy.max_repeat
    a = np.log(noise(rng, (trials, k, cap)))
    b = np.log(noise(rng, (trials, k, cap))) + np.log1p(np.asarray(shifts, float))[:, None]
    floor = float(np.log1p(policy.min_effect_pct / 100))
    final = np.full((trials, k), stats.UNKNOWN, dtype="<U9")
    used = np.zeros(trials, dtype=np.int64)
    sign = np.zeros((trials, k))
    active = np.ones(trials, dtype=bool)
    for n in stats.look_sizes(policy.repeat, cap):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        la, lb = a[idx, :, :n], b[idx, :, :n]
        t = stats.welch(stats.moments(la), stats.moments(lb), floor, stats.resolution(la, lb))
        ans = stats.answers(t, looks=policy.looks, axis=-1)
        final[idx] = ans
        sign[idx] = np.sign(t.estimate)
        used[idx] = n
        active[idx] = (ans == stats.UNKNOWN).any(axis=-1)
    return Trials(final, used, sign)


@dataclass(frozen=True)
class Rates:
    false_positive_per_test: float
    false_positive_per_report: float
    mean_repeats: float


def a_a(policy: Policy, tests: int, noise: Noise, trials: int, seed: int) -> Rates:
    """No true change: how often a figure, and a report, says `different`."""
    r = compare_trials(policy, [0.0] * tests, noise, trials, np.random.default_rng(seed))
    diff = r.answers == stats.DIFFERENT
    return Rates(float(diff.mean()), float(diff.any(axis=1).mean()), float(r.repeats.mean()))


def power(policy: Policy, shift: float, tests: int, noise: Noise, trials: int,
          seed: int) -> tuple[float, float]:
    """Figure 0 shifted (the others unchanged): P(it is `different` in the shift's
    direction), mean repeats used."""
    r = compare_trials(policy, [shift] + [0.0] * (tests - 1), noise, trials,
                       np.random.default_rng(seed))
    hit = (r.answers[:, 0] == stats.DIFFERENT) & (r.sign[:, 0] == np.sign(shift))
    return float(hit.mean()), float(r.repeats.mean())


# --- bisect -------------------------------------------------------------------------------

@dataclass(frozen=True)
class BisectRates:
    right: int
    trials: int
    mean_steps: float
    """commits measured (good and bad included)"""
    mean_runs: float
    """benchmark runs per bisect (good's interleaved runs included)"""
    outcomes: dict[str, int]


def bisect_trials(policy: Policy, noise: Noise, trials: int, seed: int, work: Path, *,
                  commits: int = 16, bad_from: int = 9, drop: float = 0.10,
                  base_tps: float = 100.0) -> BisectRates:
    """launch.compare.bisect.run on a simulated line of `commits` commits after good,
    commit number `bad_from` (1-based) and those after it `drop` slower."""
    rng = np.random.default_rng(seed)
    names = [f"{i:040x}" for i in range(1, commits + 1)]
    good = f"{0:040x}"
    truth = {good: base_tps, **{c: base_tps * (1 - drop if i + 1 >= bad_from else 1)
                                for i, c in enumerate(names)}}
    right = steps = runs = 0
    outcomes: dict[str, int] = {}
    for t in range(trials):
        class Sim:
            def check(self, commits: Sequence[str]) -> None:
                pass

            def build(self, commit: str) -> bisect.Built:
                return bisect.Built(commit[:12])

            def once(self, commit: str, built: bisect.Built) -> bisect.Sample:
                v = truth[commit] * float(noise(rng, (1,))[0])
                return bisect.Sample(v, "headroom", "")

        q = bisect.Question(good, names[-1], "r", tuple(names), min_effect_pct=
                            policy.min_effect_pct, repeat=policy.repeat,
                            max_repeat=policy.max_repeat)
        out = bisect.run(q, Sim(), work / f"t{seed}-{t}", durable=False)
        outcomes[out.status] = outcomes.get(out.status, 0) + 1
        right += int(out.status == "found" and out.first_bad == names[bad_from - 1])
        steps += len(out.measured)
        runs += out.runs
    return BisectRates(right, trials, steps / trials, runs / trials, outcomes)
