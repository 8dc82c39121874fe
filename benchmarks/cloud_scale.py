"""Time `launch up --wait running` and `launch down` on AWS against moto's server mode
(a real HTTP endpoint on 127.0.0.1) for environments of 10, 50 and 100 hosts.

    .venv/bin/python benchmarks/cloud_scale.py [--hosts 10,50,100] [--max-parallel N]

The hosts are environments/aws.yaml's 8 Fabric/monitor hosts plus Caliper worker VMs.
Render (crypto, user-data) is part of `up` and reported separately. moto runs in this
process, so the figures include its own CPU time on the same cores.
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

from launch.lifecycle import up  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", default="10,50,100")
    ap.add_argument("--max-parallel", type=int, default=10)
    args = ap.parse_args()
    for k, v in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                 "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        os.environ.setdefault(k, v)
    logging.disable(logging.WARNING)
    server = dbl.MotoServer()
    print(f"{'hosts':>5} {'up s':>7} {'reserve':>8} {'render':>7} {'create':>7} "
          f"{'running':>8} {'down s':>7}  (max_parallel {args.max_parallel})")
    try:
        for n in (int(x) for x in args.hosts.split(",")):
            server.reset()
            net = dbl.network(server)
            with tempfile.TemporaryDirectory() as tmp:
                spec = dbl.aws_spec(Path(tmp), server, net, name=f"scale{n}",
                                    workers=n - 8, max_parallel=args.max_parallel)
                build = Path(tmp) / "build"
                t = time.monotonic()
                result = up.up(spec, build_dir=build, repo_root=REPO, wait="running")
                t_up = time.monotonic() - t
                assert len(result.hosts) == n
                t = time.monotonic()
                up.down(f"scale{n}", build_dir=build)
                t_down = time.monotonic() - t
                assert dbl.nothing_left(server, f"scale{n}")
                tm = result.timings
                print(f"{n:>5} {t_up:>7.1f} {tm['reserve']:>8.1f} {tm['render']:>7.1f} "
                      f"{tm['create']:>7.1f} {tm['wait_running']:>8.1f} {t_down:>7.1f}",
                      flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
