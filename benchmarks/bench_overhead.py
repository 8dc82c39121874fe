"""fabperf's own overhead around a benchmark run: from `launch bench` to the first
transaction sent, and from the last transaction to the results bundle written.

    .venv/bin/python benchmarks/bench_overhead.py --recorded       # no lab needed
    .venv/bin/python benchmarks/bench_overhead.py --env local      # runs `launch bench local`
    .venv/bin/python benchmarks/bench_overhead.py --bundle results/local/<stamp>

--recorded replays the recorded fabric-bound round (tests/data/bench) through
launch.bench.run with the unit tests' fake SSH door and Prometheus: the waits are skipped,
so what it prints is fabperf's own work (checks, config, parsing, queries, plots, bundle).
--env runs the real thing and prints the timings the bundle recorded (summary.json
`timings`: the manager VM's journal times against the operator's clock).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def recorded() -> dict[str, float]:
    sys.path.insert(0, str(REPO / "tests/unit/bench"))
    import test_bench_run as t  # the fakes of the unit tests

    from launch.bench import run, watch

    marks: dict[str, float] = {}

    class TimedDoor(t.FakeDoor):
        def run(self, host, command, **kw):  # type: ignore[no-untyped-def]
            if "systemd-run" in command:
                marks.setdefault("manager_started", time.perf_counter())
            if command.startswith("systemctl is-active fabperf-caliper-manager"):
                res = super().run(host, command, **kw)
                if res.stdout.strip() == "inactive":
                    marks.setdefault("manager_exited", time.perf_counter())
                return res
            return super().run(host, command, **kw)

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        clock = t.Clock(t.RECORDED.window.start - 30)
        begin = time.perf_counter()
        run.run(t.lab(tmp_path), TimedDoor(), run.Options(timeouts=watch.Timeouts(poll=5)),
                results_root=tmp_path / "results", prom=t.FakePrometheus(),
                pushgateway=t.FakePushgateway(), clock=clock, sleep=clock.sleep,
                local_versions=lambda: {"fabperf": "bench"})
        end = time.perf_counter()
    return {"to_first_tx (launch bench -> manager started)":
            round(marks["manager_started"] - begin, 3),
            "last_tx_to_bundle (manager exited -> bundle written)":
            round(end - marks["manager_exited"], 3),
            "total (waits skipped)": round(end - begin, 3)}


def from_bundle(bundle: Path) -> dict[str, float]:
    doc = json.loads((bundle / "summary.json").read_text())
    return {f"{k} (s)": v for k, v in doc.get("timings", {}).items()}


def live(env: str) -> dict[str, float]:
    from fabkit import runner

    start = time.monotonic()
    res = runner.run([str(Path(sys.executable).parent / "launch"), "bench", env,
                      "--output", "json"], cwd=REPO, what="launch bench")
    total = time.monotonic() - start
    out = from_bundle(Path(json.loads(res.stdout)["bundle"]))
    out["total launch bench (s)"] = round(total, 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--recorded", action="store_true", help="replay the recorded round")
    g.add_argument("--env", help="run `launch bench ENV` on a launched environment")
    g.add_argument("--bundle", type=Path, help="print the timings of an existing bundle")
    args = ap.parse_args()
    timings = recorded() if args.recorded else live(args.env) if args.env \
        else from_bundle(args.bundle)
    width = max(len(k) for k in timings) + 2
    print("phase".ljust(width), "seconds")
    for k, v in timings.items():
        print(k.ljust(width), v)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
