"""Why transactions failed: the reasons read from Caliper's error messages."""

from __future__ import annotations

from launch.bench.failures import group, parse_worker_log, reason_of

LIMITED = ("2026-12-05T15:50:01.123456+00:00 caliper caliper[812]: error [caliper] "
           "[connectors/peer-gateway/PeerGateway]  Failed to perform submit transaction "
           "[createAsset] using arguments [x,100],  with error: EndorseError: 2 UNKNOWN: "
           "too many requests for /gateway.Gateway, exceeding concurrency limit (2)")


def test_the_peers_gateway_concurrency_limit_is_named_not_an_endorsement_error() -> None:
    """Fabric 3.0's limiter (internal/peer/node/grpc_limiters.go) rejects a request over
    peer.limits.concurrency.gatewayService with this text; Caliper wraps it in an
    EndorseError, which the endorsement pattern would claim."""
    failures = parse_worker_log([LIMITED])
    assert [f.function for f in failures] == ["createAsset"]
    assert reason_of(failures[0].error) == "gateway concurrency limit"
    ev = group(failures, None, logs_read=1)
    assert ev.by_reason == {"gateway concurrency limit": 1}
    assert "exceeding concurrency limit (2)" in ev.lines()[0]
    assert reason_of("EndorseError: 10 ABORTED: failed to endorse") == "endorsement error"


def test_the_peers_details_after_an_endorse_error_name_the_chaincodes_answer() -> None:
    """Caliper logs the gateway's per-peer details on the journal lines after the failure
    (live, the verdict matrix's rejected creates): the chaincode's own answer is the reason,
    not "endorsement error"."""
    head = "2026-12-05T15:41:31.155100+0000 caliper caliper[2398]: "
    lines = [head + "2026.12.05-15:41:31.154 error [caliper] [connectors/peer-gateway/"
             "PeerGateway]         Failed to perform submit transaction [createAsset] using "
             "arguments [x_0_0_c0,100],  with error: EndorseError: 10 ABORTED: failed to "
             "endorse transaction, see attached details for more info",
             head + "Details:",
             head + "-  peer0.org1.example.com:7051:chaincode response 500, asset x_0_0_c0 "
                    "already exists",
             head + "2026.12.05-15:41:31.160 info  [caliper] [worker] something else"]
    failures = parse_worker_log(lines)
    assert len(failures) == 1
    assert failures[0].error.startswith("peer0.org1.example.com:7051:chaincode response 500, "
                                        "asset x_0_0_c0 already exists (EndorseError")
    ev = group(failures, None, logs_read=1)
    assert ev.by_reason == {"chaincode response": 1}
    assert "already exists" in ev.lines()[0]
