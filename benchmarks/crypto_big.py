"""Time launch.render.crypto on the big topology: 8 orgs x 16 peers x 50 users + 5 orderers.

    .venv/bin/python benchmarks/crypto_big.py [--repeat N] [--cryptogen PATH] [--dir DIR]

Prints wall-clock seconds for a fresh tree, a re-render that keeps everything, and a
rotation; with --cryptogen, also Fabric's cryptogen on the same topology (same names,
SANs and user counts) for comparison. Everything is written under a temporary directory.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fabkit import runner
from launch.render import crypto

ORGS, PEERS, USERS, ORDERERS = 8, 16, 50, 5


def topology() -> list[crypto.OrgCrypto]:
    """The big example's crypto: every node with an IP SAN as a provider would reserve."""
    orgs = []
    for o in range(1, ORGS + 1):
        domain = f"org{o}.example.com"
        nodes = tuple(
            crypto.NodeIdentity(f"peer{p}.{domain}", f"peer{p}", (f"10.0.{o}.{10 + p}",), "peer")
            for p in range(PEERS)
        )
        orgs.append(crypto.OrgCrypto(f"Org{o}", domain, f"Org{o}MSP", "peer", nodes,
                                     tuple(f"User{u}" for u in range(1, USERS + 1))))
    orderers = tuple(
        crypto.NodeIdentity(f"orderer{i}.example.com", f"orderer{i}", (f"10.0.0.{10 + i}",),
                            "orderer")
        for i in range(ORDERERS)
    )
    orgs.append(crypto.OrgCrypto("Orderer", "example.com", "OrdererMSP", "orderer", orderers, ()))
    return orgs


def cryptogen_config(orgs: list[crypto.OrgCrypto]) -> str:
    """crypto-config.yaml for cryptogen describing the same topology."""
    def org_yaml(org: crypto.OrgCrypto, users: bool) -> list[str]:
        lines = [f"  - Name: {org.name}", f"    Domain: {org.domain}",
                 "    EnableNodeOUs: true", "    Specs:"]
        for node in org.nodes:
            lines += [f"      - Hostname: {node.short}", "        SANS:"]
            lines += [f"          - \"{s}\"" for s in node.sans]
        if users:
            lines += ["    Users:", f"      Count: {len(org.users)}"]
        return lines

    text = ["PeerOrgs:"]
    for org in orgs:
        if org.kind == "peer":
            text += org_yaml(org, True)
    text.append("OrdererOrgs:")
    for org in orgs:
        if org.kind == "orderer":
            text += org_yaml(org, False)
    return "\n".join(text) + "\n"


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def count_files(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(1 for p in files if p.name == "priv_sk" or p.suffix == ".key")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cryptogen", type=Path, help="a cryptogen binary to time for comparison")
    ap.add_argument("--dir", type=Path, help="where the temporary trees go (e.g. /dev/shm "
                    "to leave the disk out); default: the system temp directory")
    args = ap.parse_args()
    orgs = topology()
    fresh, reuse, rotate, gen = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="fabperf-crypto-bench-", dir=args.dir) as tmp:
        cfg = Path(tmp) / "crypto-config.yaml"
        cfg.write_text(cryptogen_config(orgs))
        # Runs alternate between the two tools so that load from other work on the
        # machine (the disk dominates: ~4400 files, ~4300 directories) hits both alike.
        for i in range(args.repeat):
            out = Path(tmp) / f"ours{i}"
            fresh.append(timed(lambda out=out: crypto.generate(orgs, out)))
            if args.cryptogen:
                gout = Path(tmp) / f"cryptogen{i}"
                gen.append(timed(lambda gout=gout: runner.run(
                    [args.cryptogen, "generate", f"--config={cfg}", f"--output={gout}"],
                    what="cryptogen")))
            reuse.append(timed(lambda out=out: crypto.generate(orgs, out)))
            rotate.append(timed(lambda out=out: crypto.generate(orgs, out, rotate=True)))
        files, keys = count_files(Path(tmp) / "ours0")
        if gen:
            gfiles, gkeys = count_files(Path(tmp) / "cryptogen0")
    print(f"topology: {ORGS} orgs x {PEERS} peers x {USERS} users (+Admin) + {ORDERERS} orderers")
    print(f"launch.render.crypto tree: {files} files, {keys} private keys")
    rows = [("launch.render.crypto fresh", fresh), ("launch.render.crypto re-render (keep)", reuse),
            ("launch.render.crypto rotate", rotate)]
    if gen:
        print(f"cryptogen tree:     {gfiles} files, {gkeys} private keys")
        rows.append(("cryptogen generate (fresh)", gen))
    for label, xs in rows:
        print(f"{label:31s} median {statistics.median(xs):.3f} s  min {min(xs):.3f} s  "
              f"(runs: {', '.join(f'{x:.3f}' for x in xs)})")
    if gen:
        ratios = [a / b for a, b in zip(fresh, gen, strict=True)]
        print(f"fresh / cryptogen, paired runs: median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
