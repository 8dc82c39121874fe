"""The real bootstrap job (packer/files/fabric-node/fabperf-bootstrap), run on this machine:
it must fail within its step's deadline naming the step and the node when an orderer's
admin endpoint cannot be reached, and leave the failed marker (no done marker)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
JOB = REPO / "packer/files/fabric-node/fabperf-bootstrap"

pytestmark = pytest.mark.integration


def _listener() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_an_unreachable_orderer_admin_endpoint_fails_the_wait_step_in_time(
        tmp_path: Path) -> None:
    orderer, peer = _listener(), _listener()
    admin = _closed_port()
    cfg = {
        "environment": "t", "configtx": "fabric/configtx.yaml", "deadlines": {"wait": 4},
        "orgs": [{"name": "OrdererOrg", "msp_id": "OrdererMSP", "domain": "example.com",
                  "kind": "orderer", "admin": "crypto/o/users/Admin@example.com",
                  "tls_ca": "crypto/o/msp/tlscacerts/tlsca.pem"},
                 {"name": "Org1", "msp_id": "Org1MSP", "domain": "org1.example.com",
                  "kind": "peer", "admin": "crypto/p/users/Admin@org1.example.com",
                  "tls_ca": "crypto/p/msp/tlscacerts/tlsca.pem"}],
        "channels": [{"name": "mychannel", "profile": "mychannel",
                      "orderers": [{"fqdn": "orderer0.example.com",
                                    "endpoint": f"127.0.0.1:{orderer.getsockname()[1]}",
                                    "admin": f"127.0.0.1:{admin}"}],
                      "peers": [{"fqdn": "peer0.org1.example.com", "msp_id": "Org1MSP",
                                 "endpoint": f"127.0.0.1:{peer.getsockname()[1]}"}],
                      "chaincodes": []}],
    }
    (tmp_path / "bootstrap.json").write_text(json.dumps(cfg))
    markers = tmp_path / "markers"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(JOB), "run", "--config",
                           str(tmp_path / "bootstrap.json"), "--state-dir",
                           str(tmp_path / "state"), "--markers", str(markers)],
                          capture_output=True, text=True, timeout=60, check=False)
    took = time.monotonic() - start
    orderer.close()
    peer.close()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = json.loads((markers / "bootstrap.failed").read_text())
    assert failed["step"] == "wait" and failed["node"] == "orderer0.example.com"
    assert f"127.0.0.1:{admin}" in failed["error"] and "refused" in failed["error"].lower()
    assert not (markers / "bootstrap.done").exists()
    assert "FAILED at wait on orderer0.example.com" in proc.stdout
    assert 4 <= took < 30, took
