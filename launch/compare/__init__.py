"""Comparing Fabric versions and commits on the same spec, and sizing the Caliper fleet.

    stats.py     run-to-run noise: medians, spread, the bootstrap rule, Mann-Whitney U
    table.py     `launch results compare`: groups of bundles round by round (text, JSON)
    page.py      the comparison's HTML page and PNG plots
"""
