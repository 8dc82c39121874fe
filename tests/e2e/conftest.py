"""Session fixtures of the end-to-end tests: the three images, baked once per run and
shared by the QEMU and the nspawn tests; the phase timings printed at the end (and written
as JSON to $FABPERF_E2E_TIMINGS when that is set)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from e2e_lab import FABRIC_SOURCE, TIMINGS, bake, bake_base_image


@pytest.fixture(scope="session", autouse=True)
def _report_timings():
    yield
    if not TIMINGS:
        return
    lines = [f"  {k:<34} {v:8.1f} s" for k, v in TIMINGS.items()]
    print("\nfabperf e2e phase wall times:\n" + "\n".join(lines))
    out = os.environ.get("FABPERF_E2E_TIMINGS")
    if out:
        Path(out).write_text(json.dumps(TIMINGS, indent=2) + "\n")


@pytest.fixture(scope="session")
def base_image() -> Path:
    return bake_base_image()


@pytest.fixture(scope="session")
def fabric_image(base_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    sets = (f"fabric-node.FABRIC_SOURCE={FABRIC_SOURCE}",) if FABRIC_SOURCE else ()
    return bake("fabric-node", tmp_path_factory.mktemp("bake"), sets=sets)


@pytest.fixture(scope="session")
def caliper_image(base_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bake("caliper-worker", tmp_path_factory.mktemp("bake"))


@pytest.fixture(scope="session")
def monitor_image(base_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Grafana's apt repository is unreachable here: the monitor is baked without Grafana.
    return bake("monitor", tmp_path_factory.mktemp("bake"), sets=("GRAFANA_SOURCE=none",))
