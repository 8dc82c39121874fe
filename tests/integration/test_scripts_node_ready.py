"""fabperf-node-ready (the baked readiness program) run for real against local endpoints:
a healthy peer operations endpoint writes the nonce; a dead orderer times out into the
failed file with the reason; bad usage exits 2."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabkit import runner

REPO = Path(__file__).resolve().parents[2]
READY = REPO / "packer/files/common/fabperf-node-ready"

pytestmark = pytest.mark.integration


class _Healthz(http.server.BaseHTTPRequestHandler):
    status = "OK"

    def do_GET(self) -> None:  # http.server API
        body = json.dumps({"status": self.status, "time": "now"}).encode()
        code = 200 if self.path == "/healthz" and self.status == "OK" else 503
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def healthz() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server.server_address[1]
    server.shutdown()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"FABPERF_READY_FILE": str(tmp_path / "ready"),
            "FABPERF_FAILED_FILE": str(tmp_path / "failed"),
            "FABPERF_CALIPER_WORKER_ENV": str(tmp_path / "worker.env"),
            "FABPERF_READY_POLL": "0.2", **extra}


def test_healthy_peer_writes_the_nonce(tmp_path: Path, healthz: int) -> None:
    res = runner.run(["bash", READY, "--nonce", "n-123", "--timeout", "20", "peer"],
                     env=_env(tmp_path, PEER_OPS_PORT=str(healthz)), check=False)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "ready").read_text() == "n-123\n"
    assert not (tmp_path / "failed").exists()


def test_dead_orderer_times_out_with_the_reason(tmp_path: Path, healthz: int) -> None:
    (tmp_path / "ready").write_text("stale\n")
    res = runner.run(["bash", READY, "--nonce", "n-1", "--timeout", "1", "peer", "orderer"],
                     env=_env(tmp_path, PEER_OPS_PORT=str(healthz), ORDERER_OPS_PORT="1"),
                     check=False)
    assert res.returncode == 1
    failed = (tmp_path / "failed").read_text()
    assert "timeout after 1s waiting for: peer orderer" in failed
    assert "orderer: /healthz on :1 not OK" in failed
    assert "peer:" not in failed            # the healthy role is not blamed
    assert not (tmp_path / "ready").exists()  # a stale nonce never survives a new launch


def test_caliper_without_worker_env_fails(tmp_path: Path) -> None:
    res = runner.run(["bash", READY, "--nonce", "x", "--timeout", "0", "caliper"],
                     env=_env(tmp_path), check=False)
    assert res.returncode == 1
    assert "worker.env missing" in (tmp_path / "failed").read_text()


@pytest.mark.parametrize("argv", [["peer"], ["--nonce", "x"], ["--nonce", "x", "database"],
                                  ["--nonce", "x", "--timeout", "soon", "peer"]])
def test_usage_errors_exit_2(tmp_path: Path, argv: list[str]) -> None:
    res = runner.run(["bash", READY, *argv], env=_env(tmp_path), check=False)
    assert res.returncode == 2
