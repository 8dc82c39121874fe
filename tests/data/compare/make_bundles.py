"""Regenerate the recorded bundles of tests/data/compare (summary.json only).

    .venv/bin/python tests/data/compare/make_bundles.py

Each summary starts from what launch.bench.collect makes of the recorded fabric-bound run
(tests/data/bench/fabric-bound): the schema is the real one; the figures of each round are
then set per group and repeat below (two rounds, as environments/local.yaml runs them).
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "unit" / "bench"))

from test_bench_results import fetched  # noqa: E402

from launch.bench import collect  # noqa: E402
from launch.bench.results import Latency, Summary  # noqa: E402
from launch.spec.thresholds import Thresholds  # noqa: E402

# group -> [(stamp, status, {round: (throughput, send, p50, p95, failed, verdict, status)})]
RUNS = {
    "v2.5.12": [
        ("20261201T210000Z", "complete", {"create": (48.9, 50.0, 0.41, 0.80, 0, "headroom"),
                                          "read": (99.0, 100.0, 0.05, 0.12, 0, "headroom")}),
        ("20261201T213000Z", "complete", {"create": (49.3, 50.0, 0.40, 0.85, 0, "headroom"),
                                          "read": (98.7, 99.9, 0.05, 0.13, 0, "headroom")}),
        ("20261201T220000Z", "complete", {"create": (49.1, 49.9, 0.42, 0.82, 1, "headroom"),
                                          "read": (99.2, 100.0, 0.06, 0.12, 0, "headroom")}),
    ],
    "v3.0.0": [
        ("20261201T211500Z", "complete", {"create": (45.0, 50.0, 0.61, 1.10, 0, "fabric-bound"),
                                          "read": (98.9, 100.0, 0.05, 0.12, 0, "headroom")}),
        ("20261201T214500Z", "complete", {"create": (44.2, 49.9, 0.66, 1.05, 2, "fabric-bound"),
                                          "read": (99.3, 100.0, 0.05, 0.13, 0, "headroom")}),
        ("20261201T221500Z", "complete", {"create": (45.5, 50.0, 0.60, 1.20, 0, "fabric-bound"),
                                          "read": (98.8, 99.8, 0.06, 0.12, 0, "headroom")}),
        ("20261201T223000Z", "interrupted", {"create": (45.1, 50.0, 0.62, 1.12, 0,
                                                        "fabric-bound"),
                                             "read": None}),
    ],
    "single": [
        ("20261201T230000Z", "complete", {"create": (47.0, 50.0, 0.50, 0.90, 0, "headroom"),
                                          "read": (99.0, 100.0, 0.05, 0.12, 0, "headroom")}),
    ],
}
RATES = {"create": 50.0, "read": 100.0}


def main() -> None:
    _, template = collect.write(Path(tempfile.mkdtemp()), fetched(), Thresholds())
    base = template.rounds[0]
    for group, runs in RUNS.items():
        for stamp, status, figures in runs:
            rounds = []
            for i, (label, fig) in enumerate(figures.items()):
                if fig is None:
                    rounds.append(replace(base, index=i, label=label, status="interrupted",
                                          requested_tps=RATES[label], send_rate_tps=None,
                                          throughput_tps=None, succeeded=0, failed=0,
                                          latency=Latency(), verdict={"verdict": "-"}))
                    continue
                tput, send, p50, p95, failed, verdict = fig
                rounds.append(replace(
                    base, index=i, label=label, requested_tps=RATES[label],
                    rate_control={"type": "fixed-rate", "opts": {"tps": RATES[label]}},
                    send_rate_tps=send, throughput_tps=tput,
                    succeeded=int(tput * 60) - failed, failed=failed,
                    latency=Latency(avg=p50, min=0.01, max=p95 * 1.5, p50=p50, p95=p95,
                                    p99=p95 * 1.2),
                    verdict={**base.verdict, "verdict": verdict,
                             "summary": f"{verdict} (recorded test data)"}))
            summary: Summary = replace(template, stamp=stamp, status=status,
                                       rounds=tuple(rounds), notes=("recorded test data",))
            out = HERE / group / "local" / stamp
            out.mkdir(parents=True, exist_ok=True)
            (out / "summary.json").write_text(json.dumps(summary.to_json(), indent=1,
                                                         sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
