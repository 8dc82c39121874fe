"""launch.lifecycle.bootstrap: following the bootstrap job over SSH (fake SSH door, real
parsing)."""

from __future__ import annotations

import json

import pytest

from fabkit import runner
from launch.lifecycle import bootstrap

NONCE = "n" * 32


def _out(done: dict | None, failed: dict | None, lines: list[str]) -> str:
    sep = "--fabperf-marker--"
    return (f"{json.dumps(done) if done else ''}\n{sep}\n{json.dumps(failed) if failed else ''}"
            f"\n{sep}\n" + "".join(f"[fabperf-bootstrap] {ln}\n" for ln in lines))


class FakeNode:
    """What the bootstrap node answers at each poll."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.commands: list[str] = []

    def __call__(self, command: str, timeout: float) -> runner.Completed:
        self.commands.append(command)
        out = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return runner.Completed(("ssh",), 0, out, "", None)


def _clock():
    t = [0.0]

    def clock() -> float:
        return t[0]

    def sleep(s: float) -> None:
        t[0] += s
    return clock, sleep


def test_progress_is_relayed_once_and_the_done_marker_returned() -> None:
    done = {"nonce": NONCE, "seconds": 80.5, "package_ids": {"mychannel/fixed-asset": "x:1"}}
    node = FakeNode([
        _out(None, None, ["mychannel: every orderer and peer answers"]),
        _out(None, None, ["mychannel: every orderer and peer answers",
                          "orderer0.example.com joined mychannel"]),
        _out(done, None, ["mychannel: every orderer and peer answers",
                          "orderer0.example.com joined mychannel", "smoke tx t1 VALID"]),
    ])
    seen: list[str] = []
    clock, sleep = _clock()
    got = bootstrap.wait(node, "fabric", NONCE, timeout=100, progress=seen.append,
                         clock=clock, sleep=sleep)
    assert got == done
    assert seen == ["mychannel: every orderer and peer answers",
                    "orderer0.example.com joined mychannel", "smoke tx t1 VALID"]
    assert "journalctl -u fabperf-bootstrap.service" in node.commands[0]


def test_a_done_marker_of_another_launch_is_not_enough() -> None:
    node = FakeNode([_out({"nonce": "old"}, None, [])])
    clock, sleep = _clock()
    with pytest.raises(bootstrap.BootstrapFailed, match="within 30s"):
        bootstrap.wait(node, "fabric", NONCE, timeout=30, progress=lambda _: None,
                       clock=clock, sleep=sleep)


def test_the_failed_marker_names_the_step_the_node_and_fabric_s_error() -> None:
    failed = {"step": "osn-join", "node": "orderer1.example.com", "nonce": NONCE,
              "error": "osnadmin channel join: Status: 400\nchannel already exists"}
    node = FakeNode([_out(None, failed, ["mychannel: every orderer and peer answers"])])
    clock, sleep = _clock()
    with pytest.raises(bootstrap.BootstrapFailed) as err:
        bootstrap.wait(node, "fabric", NONCE, timeout=30, progress=lambda _: None,
                       clock=clock, sleep=sleep)
    msg = err.value.message
    assert "step 'osn-join' on node 'orderer1.example.com'" in msg
    assert "channel already exists" in msg
    assert err.value.exit_code == 1


def test_heights_come_from_the_job_s_status() -> None:
    doc = {"heights": {"mychannel": {"orderer0.example.com": {"role": "orderer", "height": 3,
                                                              "status": "active"}}}}
    node = FakeNode([json.dumps(doc)])
    assert bootstrap.heights(node)["mychannel"]["orderer0.example.com"]["height"] == 3
    assert node.commands == ["sudo -n /usr/local/bin/fabperf-bootstrap status"]
