"""Time `launch down` of an AWS environment of 100 hosts while a share of every API call is
throttled, against moto's server mode behind the fault-injecting proxy on 127.0.0.1
(tests/integration/fault_proxy.py: EC2 answers RequestLimitExceeded, IAM Throttling, S3
SlowDown, as on the wire). The environment comes up without faults; then the throttling
starts and `down` is timed (issue 22: it must finish in under 60 s at 30 %).

    .venv/bin/python benchmarks/down_throttled.py [--hosts 100] [--rate 0.3] [--seed 1]
                                                  [--latency 0.3]

moto runs in this process, so the figure includes its own CPU time on the same cores.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "integration"))

import aws_double as dbl  # noqa: E402
from fault_proxy import FaultProxy  # noqa: E402

from launch.lifecycle import up  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--rate", type=float, default=0.3, help="share of calls throttled")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-parallel", type=int, default=10)
    ap.add_argument("--latency", type=float, default=0.0,
                    help="seconds the proxy adds to every call during `down` (a far region)")
    args = ap.parse_args()
    for k, v in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                 "AWS_DEFAULT_REGION": "eu-west-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        os.environ.setdefault(k, v)
    logging.disable(logging.WARNING)
    server = dbl.MotoServer()
    proxy = FaultProxy(server.url, seed=args.seed)
    os.environ["AWS_ENDPOINT_URL"] = proxy.url      # nothing reaches AWS itself
    name = f"down{args.hosts}"
    try:
        net = dbl.network(server)
        with tempfile.TemporaryDirectory() as tmp:
            spec = dbl.aws_spec(Path(tmp), server, net, name=name, workers=args.hosts - 8,
                                max_parallel=args.max_parallel, endpoint_url=proxy.url)
            build = Path(tmp) / "build"
            t = time.monotonic()
            result = up.up(spec, build_dir=build, repo_root=REPO, wait="running")
            t_up = time.monotonic() - t
            assert len(result.hosts) == args.hosts
            calls = sum(proxy.calls.values())
            proxy.throttle(args.rate)
            proxy.latency = args.latency
            t = time.monotonic()
            done = up.down(name, build_dir=build)
            t_down = time.monotonic() - t
            throttled = sum(proxy.injected.values())
            down_calls = sum(proxy.calls.values()) - calls
            assert dbl.nothing_left(server, name), dbl.tagged(server, name)
    finally:
        proxy.stop()
        server.stop()
    print(f"hosts {args.hosts}  up {t_up:.1f} s (no faults)  "
          f"down {t_down:.1f} s at {args.rate:.0%} throttled, +{args.latency:g} s a call "
          f"({throttled} of {down_calls} calls throttled, {len(done.report.removed)} removed, "
          f"max_parallel {args.max_parallel})")


if __name__ == "__main__":
    main()
