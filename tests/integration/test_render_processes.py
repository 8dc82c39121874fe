"""`launch render` as real processes: SIGTERM/SIGHUP mid-render and two renders at once.

The previous bundle stays intact (same CA keys, plan.json), no staging is left beside it,
and the exit codes are the documented ones (143, 129; a concurrent render exits 2).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIG = REPO / "environments" / "big.yaml"
CMD = [sys.executable, "-c", "from launch.cli import main; main()", "render", str(BIG)]


def _ca(out: Path) -> bytes:
    ca = out / "crypto/peerOrganizations/org1.example.com/ca"
    return b"".join(p.read_bytes() for p in sorted(ca.iterdir()))


def _render(out: Path) -> subprocess.Popen:
    return subprocess.Popen([*CMD, "--out", str(out), "--rotate", "-q"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("render") / "b"
    subprocess.run([*CMD, "--out", str(out), "-q"], cwd=REPO, check=True,
                   capture_output=True)
    return out


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_mid_render_keeps_the_previous_bundle(bundle: Path, sig: int,
                                                       code: int) -> None:
    before, plan = _ca(bundle), (bundle / "plan.json").read_bytes()
    proc = _render(bundle)  # --rotate: it would issue new CAs if it finished
    staging = bundle.parent / f".{bundle.name}.render-{proc.pid}"
    deadline = time.monotonic() + 30
    while not (staging / "crypto").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "the render never started its staging"
        time.sleep(0.01)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"interrupted ({signal.Signals(sig).name})" in err and "Traceback" not in err
    assert _ca(bundle) == before and (bundle / "plan.json").read_bytes() == plan
    assert sorted(p.name for p in bundle.parent.iterdir()) == [bundle.name]


def test_two_renders_at_once_one_refused_with_exit_2(bundle: Path) -> None:
    first = _render(bundle)
    lock = bundle.parent / f".{bundle.name}.lock"
    deadline = time.monotonic() + 30
    while not lock.exists() and first.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    first.send_signal(signal.SIGSTOP)  # holds the lock for as long as the second needs
    try:
        second = _render(bundle)
        _, err2 = second.communicate(timeout=60)
    finally:
        first.send_signal(signal.SIGCONT)
    _, err1 = first.communicate(timeout=120)
    assert first.returncode == 0, err1
    assert second.returncode == 2 and "another `launch render` is writing this bundle" in err2
    assert sorted(p.name for p in bundle.parent.iterdir()) == [bundle.name]
