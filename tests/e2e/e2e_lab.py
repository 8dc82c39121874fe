"""What the end-to-end tests share: the console scripts, phase timings, and the bakes.

The images are baked once per test run (the fixtures in conftest.py are session-scoped and
`bake build` skips what is unchanged) and booted by both providers: as QEMU VMs
(test_qemu_e2e) and as systemd-nspawn containers (test_nspawn_e2e).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from fabkit import runner

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REPO_BUILD = REPO / "build"
# Behind the TLS-intercepting proxy of the build machines the guests need its CA: the host's
# locally added CAs go into the base image (a no-op on machines without any).
HOST_EXTRA_CAS = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
TIMINGS: dict[str, float] = {}
# Fabric's source: FABPERF_FABRIC_SOURCE (a `git archive` tarball or a checkout: .ci/run
# passes the shared v3.0.0 tarball), else the image's default (git at FABRIC_REF).
FABRIC_SOURCE = os.environ.get("FABPERF_FABRIC_SOURCE", "")


class timed:
    """Record the wall time of a phase in TIMINGS."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> timed:
        self.t = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        TIMINGS[self.name] = round(time.monotonic() - self.t, 1)


def cli(prog: str, *args: str | os.PathLike[str], check: bool = True, timeout: float = 3600,
        log: Path | None = None, env: dict[str, str] | None = None) -> runner.Completed:
    """Run the bake or launch console script of this venv."""
    return runner.run([BIN / prog, *args], check=check, timeout=timeout, log_path=log,
                      what=f"{prog} {args[0]}", env=env)


def bake_base_image() -> Path:
    """The debootstrap base image (cached by content)."""
    cas = [a for ca in HOST_EXTRA_CAS for a in ("--extra-ca", str(ca))]
    with timed("base image (bake base-image)"):
        res = cli("bake", "base-image", *cas, "--output", "json", timeout=1800)
    return Path(json.loads(res.stdout)["path"])


def bake(image: str, tmp: Path, sets: tuple[str, ...] = ()) -> Path:
    """`bake build --provider qemu --image IMAGE [--set ...]` for real; the baked qcow2."""
    with timed(f"bake {image} (packer qemu)"):
        cli("bake", "build", "--provider", "qemu", "--image", image,
            *[a for s in sets for a in ("--set", s)], timeout=3600,
            log=tmp / f"bake-{image}.log")
    doc = json.loads((REPO_BUILD / "manifest.json").read_text())
    path = Path(doc["images"][image]["qemu"]["artifact"]["path"])
    path = path if path.is_absolute() else REPO / path
    assert path.is_file(), path
    return path


def launch_ssh(bdir: Path, env: str, host: str, command: str) -> runner.Completed:
    return cli("launch", "ssh", env, host, "--build-dir", bdir, "--", "bash", "-c", command,
               check=False, timeout=300)
