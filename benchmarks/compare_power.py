"""How often `launch compare`, `launch results compare` and `launch bisect` are wrong, measured
on simulated runs with the project's own functions (launch.compare.stats' rule,
launch.compare.bisect's driver; launch.compare.simulate drives them).

    .venv/bin/python benchmarks/compare_power.py                  # every policy and noise model
    .venv/bin/python benchmarks/compare_power.py --trials 2000 --bisect-trials 30 --quick

Per repeat policy (first batch..cap, runs per ref; batches of the first's size while a figure
is unknown) and noise model (Gaussian CV 2, 5, 10 %; resampled from the recorded live
headroom rounds of tests/data/size/live, as measured and scaled to CV 5 %), it prints:

    FP/test     A/A: the share of figures called `different` (no true change anywhere)
    FP/report   A/A: the share of reports (3 figures x 2 rounds) with at least one
    FP@floor    every figure truly +3 % (the floor: where the correction is tight), per report
    +2%         a true +2 % goodput change called `different` (3 % floor)
    pow 5%/10%  a -5 % / -10 % goodput change called `different` (the others unchanged)
    reps        mean runs per ref used when the -10 % change was compared
    bisect      16 commits after good, -10 % from #9 on: right answers / trials, mean
                commits measured, mean benchmark runs (good's interleaved runs included)

Seeded: the same command prints the same figures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from launch.compare import simulate, stats  # noqa: E402

POLICIES = (simulate.Policy(3, 3), simulate.Policy(5, 5), simulate.Policy(5, 20),
            simulate.Policy(10, 30))
REPORT = 6          # goodput, p50, p95 x 2 rounds (environments/local.yaml)


def noise_models() -> list[tuple[str, simulate.Noise]]:
    bundles = sorted(p.parent for p in (REPO / "tests/data/size/live").glob(
        "step-*/summary.json"))
    live = simulate.live_residuals(bundles)
    cv = float(np.std(live))
    scaled = [r * 0.05 / cv for r in live]
    return [("gauss CV 2%", simulate.gaussian(0.02)), ("gauss CV 5%", simulate.gaussian(0.05)),
            ("gauss CV 10%", simulate.gaussian(0.10)),
            (f"live x{len(live)} CV {cv:.1%}", simulate.resampled(live)),
            ("live shape CV 5%", simulate.resampled(scaled))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=4000, help="simulated reports per figure")
    ap.add_argument("--bisect-trials", type=int, default=30)
    ap.add_argument("--quick", action="store_true",
                    help="only the default policy, no bisect for the other policies")
    args = ap.parse_args()
    policies = [p for p in POLICIES if not args.quick or p == simulate.Policy()]
    head = (f"{'policy':<8} {'noise':<19} {'FP/test':>7} {'FP/report':>9} {'FP@floor':>8} "
            f"{'+2%':>6} {'pow 5%':>6} {'pow 10%':>7} {'reps':>5}  bisect (right, commits, "
            "runs)")
    rule = stats.method(stats.MIN_EFFECT_PCT, REPORT, simulate.Policy().looks)
    print(f"rule (default policy): {rule}")
    print(f"{args.trials} simulated reports per figure, {args.bisect_trials} bisects per row; "
          f"report = {REPORT} figures")
    print(head)
    print("-" * len(head))
    work = Path(tempfile.mkdtemp(prefix="compare-power-"))
    t0 = time.monotonic()
    for policy in policies:
        for i, (name, noise) in enumerate(noise_models()):
            seed = 1000 * policy.repeat + 10 * policy.max_repeat + i
            aa = simulate.a_a(policy, REPORT, noise, args.trials, seed)
            edge = simulate.compare_trials(policy, [0.03] * REPORT, noise, args.trials,
                                           np.random.default_rng(seed + 1))
            at_floor = float((edge.answers == stats.DIFFERENT).any(axis=1).mean())
            plus2, _ = simulate.power(policy, 0.02, REPORT, noise, args.trials, seed + 2)
            p5, _ = simulate.power(policy, -0.05, REPORT, noise, args.trials, seed + 3)
            p10, reps = simulate.power(policy, -0.10, REPORT, noise, args.trials, seed + 4)
            b = simulate.bisect_trials(policy, noise, args.bisect_trials, seed + 5, work)
            print(f"{policy.label():<8} {name:<19} {aa.false_positive_per_test:>7.2%} "
                  f"{aa.false_positive_per_report:>9.2%} {at_floor:>8.2%} {plus2:>6.2%} "
                  f"{p5:>6.1%} {p10:>7.1%} {reps:>5.1f}  {b.right}/{b.trials}, "
                  f"{b.mean_steps:.1f}, {b.mean_runs:.0f}"
                  + (f" {dict(sorted(b.outcomes.items()))}" if b.right < b.trials else ""),
                  flush=True)
    print(f"({time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    main()
