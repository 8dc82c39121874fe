"""Time a second `bake build` (all images, qemu) when nothing changed.

Prepares a temporary build dir holding what a finished build leaves (base-image.json, the
manifest with the current fingerprints, a qcow2 per image), then runs the real `bake build`
console script a few times and prints the wall-clock figures. Acceptance: under 10 s, and
no packer run (no log under build/logs, every image reported "skipped").

    .venv/bin/python benchmarks/bake_noop.py [--root REPO] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bake import build, manifest, profiles
from fabkit import layout, runner


def prepare(root: Path, build_dir: Path) -> list[str]:
    """Write base-image.json, fake artifacts and an up-to-date manifest; returns the names."""
    base = build_dir / "base" / "debian-12-bench.qcow2"
    base.parent.mkdir(parents=True)
    base.write_bytes(b"bench")
    (build_dir / "base" / "base-image.json").write_text(
        json.dumps({"path": str(base), "sha256": "b" * 64}))
    targets = build.plan(root, build_dir, profiles.Provider.QEMU, [],
                         profiles.make_overrides(None, [], env={}))
    for t in targets:
        art = build_dir / "images" / f"{t.name}.qcow2"
        art.parent.mkdir(parents=True, exist_ok=True)
        art.write_bytes(b"qcow2")
        manifest.record(build_dir, t.spec.name, "qemu", manifest.Entry(
            name=t.name, fingerprint=t.fingerprint.digest,
            artifact={"path": str(art), "sha256": "0" * 64}, versions=t.spec.versions_dict))
    return [t.name for t in targets]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=None, help="repository root")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    root = (args.root or layout.find_repo_root()).resolve()
    bake = Path(sys.executable).parent / "bake"
    with tempfile.TemporaryDirectory(prefix="fabperf-bench-") as tmp:
        build_dir = Path(tmp) / "build"
        names = prepare(root, build_dir)
        env = {"FABPERF_ROOT": str(root), "FABPERF_BUILD_DIR": str(build_dir)}
        seconds = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            done = runner.run([bake, "build", "--provider", "qemu", "--output", "json"],
                              env=env, what="bake build")
            seconds.append(time.perf_counter() - t0)
            actions = [b["action"] for b in json.loads(done.stdout)["builds"]]
            if actions != ["skipped"] * len(names):
                print(f"FAIL: expected every image skipped, got {actions}", file=sys.stderr)
                return 1
        if (build_dir / "logs").exists():
            print("FAIL: a packer log was written", file=sys.stderr)
            return 1
    print(f"second `bake build` (qemu, {len(names)} images, nothing changed): "
          f"median {statistics.median(seconds):.2f}s, min {min(seconds):.2f}s, "
          f"max {max(seconds):.2f}s over {args.runs} runs; every image skipped, no packer run")
    return 0 if max(seconds) < 10 else 1


if __name__ == "__main__":
    sys.exit(main())
