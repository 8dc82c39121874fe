"""Wall times of the local QEMU end-to-end path, phase by phase.

Runs tests/e2e (base image, real bakes of caliper-worker and monitor, launches, down) and
prints the phase table the tests record, plus the total. Slow: tens of minutes under TCG.

    .venv/bin/python benchmarks/e2e_timing.py [-k EXPR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from fabkit import runner

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", default=None, help="pytest -k expression (a subset of the e2e tests)")
    ap.add_argument("--json", type=Path, default=None, help="also write the timings here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "timings.json"
        argv = [sys.executable, "-m", "pytest", "-q", str(REPO / "tests" / "e2e")]
        if args.k:
            argv += ["-k", args.k]
        start = time.monotonic()
        res = runner.run(argv, cwd=REPO, check=False, env={"FABPERF_E2E_TIMINGS": str(out)},
                         on_line=print, what="pytest tests/e2e")
        total = time.monotonic() - start
        timings = json.loads(out.read_text()) if out.exists() else {}
    timings["total (pytest tests/e2e)"] = round(total, 1)
    print("\nphase".ljust(40), "seconds")
    for name, seconds in timings.items():
        print(f"{name:<40} {seconds:8.1f}")
    if args.json:
        args.json.write_text(json.dumps(timings, indent=2) + "\n")
    return res.returncode


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
