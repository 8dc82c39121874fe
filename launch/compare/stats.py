"""The comparison rule of `launch compare`, `launch results compare` and `launch bisect`:
three answers, a bounded false-positive rate, a minimum effect.

For one figure (goodput, latency p50, latency p95) of one round, B against A:

- the change is the ratio of geometric means, exp(mean log B - mean log A) - 1: a Welch t
  interval of the difference of mean logs (Welch-Satterthwaite degrees of freedom) at the
  level below;
- `different` when the change is shown to be LARGER than the minimum effect (default
  `MIN_EFFECT_PCT` = 3 %): the one-sided Welch test of H0 |change| <= floor, in the
  direction of the estimate, rejects after a Holm correction across every figure x round x
  group the report compares (`tests`) and a Bonferroni split across the `looks` an adaptive
  run may take (launch compare adds repeats while a figure is unknown; each look is a
  chance to be wrong, so each gets alpha / looks);
- `same` when the interval (each end at alpha / (tests x looks), one-sided) lies inside
  +- the floor (two one-sided tests);
- `unknown` otherwise, and whenever a group has fewer than `MIN_REPEATS` values.

Why this holds: a true change within the floor is called `different` with probability at
most alpha / (tests x looks) per figure and look, so at most `ALPHA` (5 %) for the whole
report, whatever the noise; a true change of exactly 0 far less often. A change of +2 %
with a 3 % floor is never `different` unless the noise lies beyond its bound. The measured
rates (false positives, power, repeats used) are printed by benchmarks/compare_power.py.

Logs: throughput and latency are positive and their noise is multiplicative (a slower VM
scales them), so the test is on log values and the floor is symmetric as a ratio
(+3 % up, -2.9 % down).

numpy, vectorised: the simulations (tests, benchmarks/compare_power.py) run the same
functions on arrays of thousands of trials. The t distribution is computed here
(regularised incomplete beta, a continued fraction) since scipy is not a dependency.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

ALPHA = 0.05
"""family-wise: the chance of at least one false `different` in a whole report"""
MIN_EFFECT_PCT = 3.0
MIN_REPEATS = 3
SAME, DIFFERENT, UNKNOWN = "same", "different", "unknown"
ANSWERS = (SAME, DIFFERENT, UNKNOWN)

Array = npt.NDArray[np.float64]


def method(min_effect_pct: float = MIN_EFFECT_PCT, tests: int = 1, looks: int = 1) -> str:
    """The rule in one line (printed with every comparison)."""
    over = (f"{tests} test{'s' if tests != 1 else ''}" if tests
            else "every figure x round x group compared")
    return (f"Welch t on log values (change = ratio of geometric means); different: the "
            f"change is shown beyond +-{min_effect_pct:g} % (one-sided test, Holm over "
            f"{over}, alpha {ALPHA:g} split over {looks} "
            f"look{'s' if looks != 1 else ''}); same: the interval at alpha/(tests x looks) "
            f"lies inside +-{min_effect_pct:g} %; unknown otherwise or with fewer than "
            f"{MIN_REPEATS} repeats a side")


# --- the t distribution -------------------------------------------------------------------

_lgamma = np.vectorize(math.lgamma, otypes=[np.float64])


def _betacf(a: Array, b: Array, x: Array) -> Array:
    """The continued fraction of the incomplete beta (modified Lentz), elementwise."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = np.ones_like(x)
    d = 1.0 - qab * x / qap
    d = np.where(np.abs(d) < tiny, tiny, d)
    d = 1.0 / d
    h = d.copy()
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = np.where(np.abs(d) < tiny, tiny, d)
        c = 1.0 + aa / c
        c = np.where(np.abs(c) < tiny, tiny, c)
        d = 1.0 / d
        h = h * d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = np.where(np.abs(d) < tiny, tiny, d)
        c = 1.0 + aa / c
        c = np.where(np.abs(c) < tiny, tiny, c)
        d = 1.0 / d
        delta = d * c
        h = h * delta
        if np.all(np.abs(delta - 1.0) < 1e-13):
            break
    return h


def betainc(a: Array, b: Array, x: Array) -> Array:
    """The regularised incomplete beta I_x(a, b), elementwise (0 <= x <= 1)."""
    a, b, x = np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float),
                                  np.asarray(x, float))
    xc = np.clip(x, 1e-300, 1 - 1e-16)
    front = np.exp(_lgamma(a + b) - _lgamma(a) - _lgamma(b) + a * np.log(xc)
                   + b * np.log1p(-xc))
    direct = xc < (a + 1) / (a + b + 2)
    # each side evaluated where its fraction converges; the other branch's value is unused
    lo = front * _betacf(a, b, np.where(direct, xc, 0.5)) / a
    hi = 1.0 - front * _betacf(b, a, np.where(direct, 0.5, 1.0 - xc)) / b
    out = np.where(direct, lo, hi)
    return np.where(x <= 0, 0.0, np.where(x >= 1, 1.0, out))


def t_sf(t: Array | float, df: Array | float) -> Array:
    """P(T > t) for Student's t with df degrees of freedom (df may be fractional)."""
    t, df = np.broadcast_arrays(np.asarray(t, float), np.asarray(df, float))
    tail = 0.5 * betainc(df / 2, np.full_like(df, 0.5), df / (df + t * t))
    out = np.where(t >= 0, tail, 1.0 - tail)
    return np.where(np.isposinf(t), 0.0, np.where(np.isneginf(t), 1.0, out))


def t_ppf(q: float, df: float) -> float:
    """The t quantile: the t with P(T <= t) = q (Newton's method from the normal quantile;
    for intervals)."""
    if not 0 < q < 1:
        raise ValueError(f"t_ppf: q must be in (0, 1), not {q}")
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    t = statistics.NormalDist().inv_cdf(q)
    for _ in range(50):
        cdf = 1.0 - float(t_sf(t, df))
        pdf = math.exp(log_norm - (df + 1) / 2 * math.log1p(t * t / df))
        step = (cdf - q) / pdf
        # a heavy tail makes the first steps overshoot: at most halve the distance to 0
        if abs(step) > abs(t) / 2 and t != 0:
            step = math.copysign(abs(t) / 2, step)
        t -= step
        if abs(step) < 1e-12 * max(1.0, abs(t)):
            break
    return t


# --- the rule, on summaries (vectorised) ----------------------------------------------------

@dataclass(frozen=True)
class Moments:
    """Of the log values of one group: count, mean, sample variance (arrays or scalars)."""

    n: Array
    mean: Array
    var: Array


def moments(logs: Array, axis: int = -1) -> Moments:
    n = np.asarray(logs.shape[axis], float)
    return Moments(np.broadcast_to(n, logs.mean(axis=axis).shape).astype(float),
                   logs.mean(axis=axis), logs.var(axis=axis, ddof=1))


@dataclass(frozen=True)
class Tests:
    """The rule's p-values for arrays of comparisons (B against A)."""

    estimate: Array
    """mean log B - mean log A"""
    se: Array
    df: Array
    p_different: Array
    """one-sided, H0 |change| <= floor, in the estimate's direction"""
    p_same: Array
    """two one-sided tests: H0 |change| >= floor"""


def resolution(la: Array, lb: Array, axis: int = -1) -> Array:
    """The smallest step between distinct values of both groups (log scale): what the
    figures can resolve (0 when all are equal)."""
    pooled = np.sort(np.concatenate([la, lb], axis=axis), axis=axis)
    gaps = np.diff(pooled, axis=axis)
    q = np.where(gaps > 1e-12, gaps, np.inf).min(axis=axis)
    return np.where(np.isfinite(q), q, 0.0)


def welch(a: Moments, b: Moments, floor_log: float, step: Array | float = 0.0) -> Tests:
    """The minimum-effect and equivalence tests of B against A at a floor (log ratio).

    `step` is resolution(): no group's variance is taken below step^2 / 12, the variance of
    rounding to that step. Without it, repeats that happen to agree (latency measured to
    10 ms, a figure that takes few values) would have a spread of 0 and make any change
    look certain."""
    est = b.mean - a.mean
    least = np.asarray(step, float) ** 2 / 12
    va, vb = np.maximum(a.var, least) / a.n, np.maximum(b.var, least) / b.n
    se = np.sqrt(va + vb)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1))
        df = np.where(np.isfinite(df) & (df > 0), df, a.n + b.n - 2)
        z_up = np.where(se > 0, (est - floor_log) / se, np.sign(est - floor_log) * np.inf)
        z_down = np.where(se > 0, (est + floor_log) / se, np.sign(est + floor_log) * np.inf)
    p_up = t_sf(z_up, df)                   # H0 change <= +floor
    p_down = 1.0 - t_sf(z_down, df)         # H0 change >= -floor
    p_diff = np.minimum(p_up, p_down)
    # same: both H0 change <= -floor and H0 change >= +floor rejected
    p_same = np.maximum(t_sf(z_down, df), 1.0 - t_sf(z_up, df))
    # a zero spread with a change exactly at the floor: neither side shown
    p_diff = np.where(np.isnan(p_diff), 1.0, p_diff)
    p_same = np.where(np.isnan(p_same), 1.0, p_same)
    return Tests(est, se, df, p_diff, p_same)


def holm(p: Array, level: float, axis: int = -1) -> npt.NDArray[np.bool_]:
    """Holm's step-down over `axis` at family level `level`: which p-values are rejected."""
    p = np.asarray(p, float)
    m = p.shape[axis]
    order = np.argsort(p, axis=axis, kind="stable")
    sorted_p = np.take_along_axis(p, order, axis=axis)
    shape = [1] * p.ndim
    shape[axis] = m
    bounds = (level / (m - np.arange(m))).reshape(shape)
    ok = np.cumprod(sorted_p <= bounds, axis=axis).astype(bool)
    out = np.empty_like(ok)
    np.put_along_axis(out, order, ok, axis=axis)
    return out


def answers(t: Tests, *, looks: int, alpha: float = ALPHA, axis: int = -1
            ) -> npt.NDArray[np.str_]:
    """same / different / unknown for each test; the tests of one report lie along `axis`
    (Holm across them at alpha / looks; `same` at alpha / (tests x looks) each)."""
    m = t.p_different.shape[axis] if t.p_different.ndim else 1
    p_diff = np.atleast_1d(t.p_different)
    p_same = np.atleast_1d(t.p_same)
    diff = holm(p_diff, alpha / looks, axis=axis if t.p_different.ndim else -1)
    same = p_same <= alpha / (m * looks)
    out = np.where(diff, DIFFERENT, np.where(same, SAME, UNKNOWN))
    return out if t.p_different.ndim else out[0]


# --- the rule, on one comparison of values ------------------------------------------------

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
    """B against A for one figure, by the rule."""

    answer: str
    """same | different | unknown"""
    delta_pct: float | None
    """the change, percent: ratio of geometric means - 1"""
    interval_pct: tuple[float, float] | None
    """its interval at the rule's per-test level (percent)"""
    p_different: float | None
    p_same: float | None
    why: str = ""
    """for unknown without a test: what is missing"""

    def to_json(self) -> dict[str, object]:
        return {"answer": self.answer, "delta_pct": self.delta_pct,
                "interval_pct": list(self.interval_pct) if self.interval_pct else None,
                "p_different": self.p_different, "p_same": self.p_same, "why": self.why}


@dataclass(frozen=True)
class Pending:
    """One comparison of a report before the correction across the report: its tests."""

    delta_pct: float | None
    tests: Tests | None
    why: str = ""


def _logs(values: Sequence[float]) -> Array:
    return np.log(np.asarray([v for v in values if v > 0], float))


def prepare(a: Sequence[float], b: Sequence[float],
            min_effect_pct: float = MIN_EFFECT_PCT) -> Pending:
    """The tests of B against A (not yet judged: the report's correction decides)."""
    la, lb = _logs(a), _logs(b)
    if la.size == 0 or lb.size == 0:
        return Pending(None, None, "no data")
    delta = (math.exp(float(lb.mean() - la.mean())) - 1) * 100
    if la.size < MIN_REPEATS or lb.size < MIN_REPEATS:
        return Pending(delta, None, f"fewer than {MIN_REPEATS} repeats "
                                    f"({la.size} and {lb.size})")
    return Pending(delta, welch(moments(la), moments(lb), math.log1p(min_effect_pct / 100),
                                resolution(la, lb)))


def judge_all(pending: Sequence[Pending], *, looks: int = 1, alpha: float = ALPHA
              ) -> list[Difference]:
    """Every comparison of one report, judged together (Holm across those with tests)."""
    tested = [i for i, p in enumerate(pending) if p.tests is not None]
    out: list[Difference] = []
    verdicts: dict[int, str] = {}
    if tested:
        ts = [pending[i].tests for i in tested]
        stack = Tests(*(np.asarray([float(getattr(t, f)) for t in ts if t is not None])
                        for f in ("estimate", "se", "df", "p_different", "p_same")))
        for i, v in zip(tested, answers(stack, looks=looks, alpha=alpha), strict=True):
            verdicts[i] = str(v)
    level = alpha / (max(1, len(tested)) * looks)
    for i, p in enumerate(pending):
        t = p.tests
        if t is None:
            out.append(Difference(UNKNOWN, p.delta_pct, None, None, None, p.why))
            continue
        q = t_ppf(1 - level, float(t.df)) if float(t.se) > 0 else 0.0
        lo, hi = float(t.estimate) - q * float(t.se), float(t.estimate) + q * float(t.se)
        out.append(Difference(verdicts[i], p.delta_pct,
                              ((math.exp(lo) - 1) * 100, (math.exp(hi) - 1) * 100),
                              float(t.p_different), float(t.p_same)))
    return out


def compare(a: Sequence[float], b: Sequence[float], *,
            min_effect_pct: float = MIN_EFFECT_PCT, looks: int = 1) -> Difference:
    """One comparison on its own (a report of one test): bisect's question."""
    return judge_all([prepare(a, b, min_effect_pct)], looks=looks)[0]


def looks_of(first: int, cap: int) -> int:
    """How many looks an adaptive run takes at most: the first batch, then batches of the
    same size until the cap (5, 10, 15, 20 -> 4)."""
    if cap <= first:
        return 1
    return 1 + math.ceil((cap - first) / first)


def look_sizes(first: int, cap: int) -> list[int]:
    """The repeats per side at each look (5, 10, 15, 20)."""
    sizes = [first]
    while sizes[-1] < cap:
        sizes.append(min(cap, sizes[-1] + first))
    return sizes
