"""Comparing Fabric versions and commits on the same spec, and sizing the Caliper fleet.

    stats.py     the comparison rule: same / different / unknown (Welch t on logs, a
                 minimum effect, Holm across the report, alpha split over the looks)
    figures.py   what is compared of a round, and when a round is not comparable
    table.py     `launch results compare`: groups of bundles round by round (text, JSON)
    page.py      the comparison's HTML page and PNG plots
    ab.py        `launch compare`: bake, interleave, add repeats while unknown
    bisect.py    `launch bisect`: the driver and the real measure
    sizing.py    `launch size`: calibration, capacity, proposal, --verify
    simulate.py  the rule and bisect on simulated runs (tests, benchmarks/compare_power.py)
"""
