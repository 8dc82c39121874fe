"""The same lab as containers and as VMs: `launch up` to bootstrapped, and a ramp on nspawn.

1. `launch up` of environments/local.yaml (a derived copy: its own name and CIDR) to a
   bootstrapped channel on nspawn, then the same spec on qemu (TCG), one after the other in
   the same run; the wall time of each and `launch up`'s own phase timings.
2. On the nspawn lab, with Fabric and the monitor pinned to core 0 and Caliper to core 1
   (cgroup cpusets; Caliper's container limited to one core), one `launch bench` whose
   rounds are fixed-rate create rounds at rising rates: per step the requested and sent
   rate, goodput (succeeded / window), failures, latency, the ledger check, the verdict,
   and each side's CPU from its cgroup (`fabperf_cgroup_cpu_seconds_total` over the round
   window / `fabperf_cgroup_cpus`, from the monitor's Prometheus) as the evidence of which
   side was the limit.

Uses the images of build/manifest.json (`make bake-images` first); needs root,
systemd-nspawn and cgroup v1. Every environment is taken down at the end.

    .venv/bin/python benchmarks/nspawn_lab.py [--rates 50,100,200,300,400] [--duration 20]
        [--skip-qemu] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from fabkit import layout, runner

BIN = Path(sys.executable).parent


def cli(*args: str | Path, log: Path, check: bool = True) -> runner.Completed:
    return runner.run([BIN / "launch", *args], log_path=log, check=check, timeout=7200,
                      what=f"launch {args[0]}")


def spec(root: Path, tmp: Path, name: str, provider: str, cidr: str,
         rates: list[int], duration: int) -> Path:
    doc = yaml.safe_load((root / "environments" / "local.yaml").read_text())
    doc.update({"name": name, "provider": provider, "network": {"cidr": cidr},
                "manifest": str(root / "build" / "manifest.json")})
    if provider == "nspawn":
        doc["settings"] = {"hosts": {"fabric": {"host_cpus": "0"},
                                     "monitor": {"host_cpus": "0"},
                                     "caliper": {"host_cpus": "1", "cpus": 1}}}
    else:   # the qemu e2e's sizes (TCG on 2 cores)
        doc["settings"] = {"accel": "tcg", "cpus": 2, "memory_mb": 1536,
                           "hosts": {"fabric": {"memory_mb": 2560}}}
    doc["caliper"]["rounds"] = [
        {"label": f"create-{r}", "tps": r, "duration": duration,
         "workload": {"module": "workloads/create-asset.js",
                      "arguments": {"payloadSize": 100, "idPrefix": f"r{r}"}}}
        for r in rates]
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def time_up(path: Path, bdir: Path, log: Path) -> dict[str, Any]:
    t0 = time.monotonic()
    res = cli("up", path, "--build-dir", bdir, "--output", "json", log=log)
    wall = time.monotonic() - t0
    return {"wall_s": round(wall, 1), "timings": json.loads(res.stdout)["timings"]}


def cgroup_cpu(monitor: str, host: str, start: float, end: float) -> float | None:
    """The share of its cores the host's container used over [start, end] (cgroup)."""
    span = max(1, int(end - start))
    query = (f'rate(fabperf_cgroup_cpu_seconds_total{{host="{host}"}}[{span}s]) '
             f'/ fabperf_cgroup_cpus{{host="{host}"}}')
    url = f"http://{monitor}:9090/api/v1/query?" + urllib.parse.urlencode(
        {"query": query, "time": f"{end:.3f}"})
    with urllib.request.urlopen(url, timeout=10) as r:
        result = json.loads(r.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def ramp(summary: dict[str, Any], monitor: str) -> list[dict[str, Any]]:
    rows = []
    for r in summary["rounds"]:
        window = r.get("window") or {}
        seconds = window.get("seconds") or None
        goodput = r.get("goodput_tps")
        if goodput is None and seconds:
            goodput = r["succeeded"] / seconds      # the contract for older bundles
        cpu = {h: (cgroup_cpu(monitor, h, window["start"], window["end"])
                   if window.get("start") else None) for h in ("caliper", "fabric")}
        rows.append({
            "label": r["label"], "requested_tps": r["requested_tps"],
            "send_tps": r["send_rate_tps"], "goodput_tps": goodput,
            "succeeded": r["succeeded"], "failed": r["failed"],
            "latency_avg_s": r["latency"]["avg"],
            "ledger_committed": r["ledger"].get("committed"),
            "ledger_flagged": r["ledger"].get("flagged"),
            "verdict": r["verdict"]["verdict"],
            "evidence": [f"{c['rule']}: {c.get('value')}" for c in
                         r["verdict"].get("evidence", ())],
            "caliper_cgroup_cpu": cpu["caliper"], "fabric_cgroup_cpu": cpu["fabric"]})
    return rows


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="50,100,200,300,400")
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--skip-qemu", action="store_true", help="only the nspawn figures")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = ap.parse_args()
    root = layout.find_repo_root().resolve()
    rates = [int(x) for x in args.rates.split(",")]
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fabperf-nspawn-bench-") as t:
        tmp = Path(t)
        bdir = tmp / "build"
        nspawn = spec(root, tmp, "bench-nspawn", "nspawn", "10.88.0.0/24", rates,
                      args.duration)
        try:
            figures["up_nspawn"] = time_up(nspawn, bdir, tmp / "up-nspawn.log")
            print(f"launch up to bootstrapped, nspawn: {figures['up_nspawn']['wall_s']} s "
                  f"{figures['up_nspawn']['timings']}", flush=True)
            res = cli("bench", "bench-nspawn", "--build-dir", bdir, "--results-dir",
                      tmp / "results", "--output", "json", log=tmp / "bench.log", check=False)
            doc = json.loads(res.stdout)
            figures["bundle"] = doc["bundle"]
            figures["ramp"] = ramp(doc["summary"], "10.88.0.12")
        finally:
            cli("down", "bench-nspawn", "--build-dir", bdir, log=tmp / "down.log",
                check=False)
        if not args.skip_qemu:
            qemu = spec(root, tmp, "bench-qemu", "qemu", "10.89.0.0/24", rates[:1],
                        args.duration)
            try:
                figures["up_qemu"] = time_up(qemu, bdir, tmp / "up-qemu.log")
                print(f"launch up to bootstrapped, qemu (TCG): "
                      f"{figures['up_qemu']['wall_s']} s {figures['up_qemu']['timings']}",
                      flush=True)
            finally:
                cli("down", "bench-qemu", "--build-dir", bdir, log=tmp / "down-q.log",
                    check=False)
    print("\nramp on nspawn (Fabric + monitor on core 0, Caliper on core 1, "
          f"{args.duration} s fixed-rate create rounds):")
    print(f"{'req':>5} {'sent':>7} {'goodput':>8} {'fail':>5} {'avg s':>6} {'ledger':>7} "
          f"{'caliper cpu':>11} {'fabric cpu':>10}  verdict")
    first_bound = None
    for row in figures.get("ramp", []):
        print(f"{row['requested_tps']:>5.0f} {row['send_tps'] or 0:>7.1f} "
              f"{row['goodput_tps'] or 0:>8.1f} {row['failed']:>5} "
              f"{row['latency_avg_s'] or 0:>6.2f} {row['ledger_committed'] or 0:>7} "
              f"{pct(row['caliper_cgroup_cpu']):>11} {pct(row['fabric_cgroup_cpu']):>10}  "
              f"{row['verdict']} {'; '.join(row['evidence'])}")
        if first_bound is None and row["verdict"] == "load-generator-bound":
            first_bound = row["requested_tps"]
    figures["first_load_generator_bound_tps"] = first_bound
    print(f"first load-generator-bound step: {first_bound}")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
