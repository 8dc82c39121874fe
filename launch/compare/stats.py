"""Run-to-run noise: the statistics behind `launch results compare`, `compare` and `bisect`.

The rule (one place, stated in every output):

- each figure of a group of repeated runs is summarised by its median, with its spread
  (min-max and the interquartile range);
- a difference between two groups is *beyond run-to-run noise* when the 95 % percentile
  bootstrap interval of the difference of medians (B - A, `RESAMPLES` resamples of each group
  with replacement, seeded with `SEED` so the same data always gives the same answer)
  excludes 0;
- with fewer than `MIN_REPEATS` repeats in either group no claim is made ("not enough
  repeats"), whatever the percentage;
- the exact two-sided Mann-Whitney U p-value (every split of the pooled mid-ranks) is shown
  alongside. It is not the rule: with 3 repeats each its smallest possible value is 0.10.

Pure functions; no numpy (the same answer on every machine).
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

SEED = 20261202
RESAMPLES = 4000
CONFIDENCE = 0.95
MIN_REPEATS = 3
EXACT_LIMIT = 50_000          # splits enumerated for the exact U test; beyond: normal approx.

METHOD = (f"median of repeats; difference beyond noise when the {CONFIDENCE:.0%} bootstrap "
          f"interval of the difference of medians ({RESAMPLES} resamples, seed {SEED}) "
          f"excludes 0; fewer than {MIN_REPEATS} repeats in a group: not enough repeats; "
          "Mann-Whitney U exact two-sided p shown alongside")


@dataclass(frozen=True)
class Spread:
    """One figure over the repeats of a group."""

    n: int
    median: float | None
    min: float | None
    max: float | None
    q1: float | None
    q3: float | None
    values: tuple[float, ...]

    def to_json(self) -> dict[str, object]:
        return {"n": self.n, "median": self.median, "min": self.min, "max": self.max,
                "q1": self.q1, "q3": self.q3, "values": list(self.values)}


def spread(values: Sequence[float | None]) -> Spread:
    """Median, min-max and quartiles of the values that exist (None: the run had no figure)."""
    xs = tuple(float(v) for v in values if v is not None and math.isfinite(v))
    if not xs:
        return Spread(0, None, None, None, None, None, ())
    if len(xs) == 1:
        q1 = q3 = xs[0]
    else:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return Spread(len(xs), statistics.median(xs), min(xs), max(xs), q1, q3, xs)


@dataclass(frozen=True)
class Difference:
    """B against A for one figure."""

    verdict: str
    """"beyond noise" | "within noise" | "not enough repeats" | "no data\""""
    delta: float | None
    """median(B) - median(A)"""
    delta_pct: float | None
    """delta / median(A), percent"""
    ci: tuple[float, float] | None
    """the bootstrap interval of delta"""
    p_value: float | None
    """Mann-Whitney U, two-sided (exact up to EXACT_LIMIT splits)"""

    @property
    def significant(self) -> bool:
        return self.verdict == "beyond noise"

    def to_json(self) -> dict[str, object]:
        return {"verdict": self.verdict, "delta": self.delta, "delta_pct": self.delta_pct,
                "ci": list(self.ci) if self.ci else None, "p_value": self.p_value}


def bootstrap_ci(a: Sequence[float], b: Sequence[float], *, seed: int = SEED,
                 resamples: int = RESAMPLES, confidence: float = CONFIDENCE
                 ) -> tuple[float, float]:
    """Percentile bootstrap interval of median(B) - median(A)."""
    rng = random.Random(seed)
    diffs = sorted(statistics.median(rng.choices(b, k=len(b)))
                   - statistics.median(rng.choices(a, k=len(a))) for _ in range(resamples))
    tail = (1 - confidence) / 2
    lo = diffs[int(math.floor(tail * (resamples - 1)))]
    hi = diffs[int(math.ceil((1 - tail) * (resamples - 1)))]
    return lo, hi


def _ranks(pooled: Sequence[float]) -> list[float]:
    """Mid-ranks (ties share the mean of their ranks), 1-based."""
    order = sorted(range(len(pooled)), key=lambda i: pooled[i])
    ranks = [0.0] * len(pooled)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and pooled[order[j + 1]] == pooled[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p of the Mann-Whitney U test: exact over every split of the pooled
    mid-ranks while there are at most EXACT_LIMIT splits, else the normal approximation."""
    n, m = len(a), len(b)
    ranks = _ranks([*a, *b])
    mean = n * (n + m + 1) / 2
    observed = abs(sum(ranks[:n]) - mean)
    if math.comb(n + m, n) <= EXACT_LIMIT:
        total = hits = 0
        for idx in itertools.combinations(range(n + m), n):
            total += 1
            if abs(sum(ranks[i] for i in idx) - mean) >= observed - 1e-9:
                hits += 1
        return hits / total
    sd = math.sqrt(n * m * (n + m + 1) / 12)
    z = max(0.0, observed - 0.5) / sd if sd else 0.0
    return min(1.0, math.erfc(z / math.sqrt(2)))


def difference(a: Spread, b: Spread) -> Difference:
    """B against A by the module's rule."""
    if a.median is None or b.median is None:
        return Difference("no data", None, None, None, None)
    delta = b.median - a.median
    pct = delta / a.median * 100 if a.median else None
    if a.n < MIN_REPEATS or b.n < MIN_REPEATS:
        return Difference("not enough repeats", delta, pct, None, None)
    lo, hi = bootstrap_ci(a.values, b.values)
    verdict = "beyond noise" if lo > 0 or hi < 0 else "within noise"
    return Difference(verdict, delta, pct, (lo, hi), mann_whitney_p(a.values, b.values))
