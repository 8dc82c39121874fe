"""Time `launch render environments/big.yaml` (8 orgs x 16 peers x 50 users, 5 orderers),
crypto written to disk included, and print the figure.

    .venv/bin/python benchmarks/render_big.py [--repeat N] [--cryptogen PATH]

Each run renders into a fresh directory (a first render: every key and certificate is
issued). --cryptogen times Fabric's own `cryptogen generate` for the same topology, the
target this render should not exceed: the two alternate (the order swapped every round),
and the figure is the median of the per-round ratios, with their spread and the load
average, since on a busy machine single runs vary threefold.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fabkit import runner  # noqa: E402
from launch.render import bundle, plan  # noqa: E402
from launch.spec import env as spec  # noqa: E402


def crypto_config(env: spec.EnvSpec) -> dict:
    """cryptogen's crypto-config.yaml for the same organisations, nodes and users."""
    p = plan.build(env)
    return {
        "OrdererOrgs": [{"Name": env.orderers.org, "Domain": env.orderers.domain,
                         "EnableNodeOUs": True,
                         "Specs": [{"Hostname": n.short} for n in p.orderers]}],
        "PeerOrgs": [{"Name": o.name, "Domain": o.domain, "EnableNodeOUs": True,
                      "Template": {"Count": o.peers}, "Users": {"Count": o.users}}
                     for o in env.organisations],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", type=Path, default=REPO / "environments" / "big.yaml")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--cryptogen", type=Path, help="a cryptogen binary to compare with")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to render (default: a temporary directory)")
    args = parser.parse_args()

    env = spec.load(args.env)
    load_before = os.getloadavg()[0]
    times: list[float] = []
    cg: list[float] = []
    with tempfile.TemporaryDirectory(prefix="render-big-", dir=args.dir) as tmp:
        config = Path(tmp) / "crypto-config.yaml"
        config.write_text(yaml.safe_dump(crypto_config(env)))

        def ours(i: int) -> None:
            start = time.perf_counter()
            bundle.render(env, Path(tmp) / f"run{i}", manifest_root=Path(tmp))
            times.append(time.perf_counter() - start)

        def theirs(i: int) -> None:
            start = time.perf_counter()
            runner.run([args.cryptogen, "generate", f"--config={config}",
                        f"--output={Path(tmp) / f'cryptogen{i}'}"], what="cryptogen")
            cg.append(time.perf_counter() - start)

        # Alternated (and the order swapped every round), so a load change on the machine
        # affects both sides alike.
        for i in range(args.repeat):
            pair = (ours, theirs) if i % 2 == 0 else (theirs, ours)
            for f in pair:
                if f is ours or args.cryptogen:
                    f(i)
        out = Path(tmp) / f"run{args.repeat - 1}"
        result = bundle.render(env, out, manifest_root=Path(tmp))  # re-render: crypto reused
        files = sum(1 for p in out.rglob("*") if p.is_file())
        again = time.perf_counter()
        bundle.render(env, out, manifest_root=Path(tmp))
        rerender = time.perf_counter() - again
        print(f"launch render {args.env.name}: {len(result.plan.hosts)} hosts, "
              f"{len(result.plan.peers)} peers, {files} files")
        print(f"  first render (all crypto issued): median {statistics.median(times):.2f} s "
              f"(runs: {', '.join(f'{t:.2f}' for t in times)})")
        print(f"  re-render (crypto reused):        {rerender:.2f} s")
        if cg:
            print(f"  cryptogen generate (same topology): median {statistics.median(cg):.2f} s "
                  f"(runs: {', '.join(f'{t:.2f}' for t in cg)})")
            ratios = sorted(a / b for a, b in zip(times, cg, strict=True))
            q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
            print(f"  render / cryptogen: median of the alternated pairs "
                  f"{statistics.median(ratios):.2f}x (quartiles {q1:.2f}-{q3:.2f}, "
                  f"range {ratios[0]:.2f}-{ratios[-1]:.2f}, {len(ratios)} pairs), "
                  f"of the medians {statistics.median(times) / statistics.median(cg):.2f}x")
        print(f"  load average (1 min) {load_before:.1f} before, "
              f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
