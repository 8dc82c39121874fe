"""launch.machines.ready: the layers, their timeouts and the errors (fake probes, fake clock)."""

from __future__ import annotations

import re

import pytest

from fabkit import runner
from fabkit.errors import ExternalError
from launch.machines.ready import Layer, NotReady, Probe, Timeouts, wait_all, wait_host
from launch.spec.contract import FAILED_FILE, READY_FILE

SERIAL = "\n".join(f"boot line {i}" for i in range(100)) + "\ncloud-init: stuck in runcmd"


class Clock:
    """A fake monotonic clock that sleep() advances."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def done(rc: int = 0, out: str = "", err: str = "") -> runner.Completed:
    return runner.Completed(("ssh",), rc, out, err, None)


class FakeNode:
    """Answers the commands readiness sends, like a booting VM would."""

    def __init__(self, clock: Clock, *, ssh_after: float = 0, cloud_init_rc: int = 0,
                 marker: str = "N1", failed: str = "", alive: bool = True,
                 cloud_init_until: float = 0) -> None:
        self.clock, self.ssh_after = clock, ssh_after
        self.cloud_init_until = cloud_init_until
        self.cloud_init_rc, self.marker, self.failed = cloud_init_rc, marker, failed
        self.is_alive = alive
        self.commands: list[str] = []

    def ssh(self, cmd: str, timeout: float) -> runner.Completed:
        self.commands.append(cmd)
        if self.clock() < self.ssh_after:
            self.clock.sleep(5)
            return done(255, err="ssh: connect to host 127.0.0.1 port 40022: Connection refused")
        if cmd == "true":
            return done()
        if "cloud-init status" in cmd:
            wait = re.match(r"timeout (\d+) cloud-init status --wait", cmd)
            assert wait, cmd
            if self.clock() + int(wait[1]) < self.cloud_init_until:
                self.clock.sleep(int(wait[1]))       # the slice ends, cloud-init runs on
                return done(124, "status: running\nboot_status_code: enabled-by-generator\n"
                                 "detail:\nRunning in stage: modules-final\n")
            self.clock.now = max(self.clock(), self.cloud_init_until)
            return done(self.cloud_init_rc, "status: done\n" if self.cloud_init_rc != 1
                        else "status: error\ndetail: runcmd failed\n")
        if READY_FILE in cmd:
            return done(0 if self.marker else 1, self.marker + "\n" if self.marker else "")
        if FAILED_FILE in cmd:
            return done(0 if self.failed else 1, self.failed)
        raise AssertionError(cmd)

    def probe(self, host: str = "caliper0") -> Probe:
        return Probe(host, alive=lambda: self.is_alive, ssh=self.ssh,
                     console_tail=lambda n: "\n".join(SERIAL.splitlines()[-n:]),
                     died=lambda: "qemu exited")


def test_all_layers_pass_and_are_timed():
    clock = Clock()
    node = FakeNode(clock, ssh_after=30)
    rep = wait_host(node.probe(), "N1", Timeouts(poll=1), clock=clock, sleep=clock.sleep)
    assert set(rep.seconds) == {"process", "ssh", "cloud-init", "ready-marker"}
    assert rep.seconds["ssh"] >= 30
    assert rep.warnings == ()


def test_ssh_never_answers_names_host_layer_and_console_tail():
    clock = Clock()
    node = FakeNode(clock, ssh_after=10_000)
    with pytest.raises(NotReady) as exc:
        wait_host(node.probe("peer0"), "N1", Timeouts(ssh=60, poll=1), clock=clock,
                  sleep=clock.sleep)
    err = exc.value
    assert err.host == "peer0" and err.layer is Layer.SSH
    assert "host peer0" in str(err) and "Connection refused" in str(err)
    assert "cloud-init: stuck in runcmd" in str(err)          # the serial log tail
    assert "boot line 10\n" not in str(err)                   # only the tail
    assert err.exit_code == 1


def test_cloud_init_error_fails_with_its_status_and_failed_file():
    clock = Clock()
    node = FakeNode(clock, cloud_init_rc=1, failed="timeout after 600s waiting for: caliper")
    with pytest.raises(NotReady) as exc:
        wait_host(node.probe(), "N1", Timeouts(poll=1), clock=clock, sleep=clock.sleep)
    assert exc.value.layer is Layer.CLOUD_INIT
    assert "runcmd failed" in str(exc.value)
    assert "waiting for: caliper" in str(exc.value)


def test_cloud_init_recoverable_errors_warn():
    clock = Clock()
    rep = wait_host(FakeNode(clock, cloud_init_rc=2).probe(), "N1", Timeouts(poll=1),
                    clock=clock, sleep=clock.sleep)
    assert rep.warnings and "recoverable" in rep.warnings[0]


def test_marker_from_another_launch_times_out():
    clock = Clock()
    node = FakeNode(clock, marker="OLD")
    with pytest.raises(NotReady) as exc:
        wait_host(node.probe(), "N1", Timeouts(marker=20, poll=1), clock=clock,
                  sleep=clock.sleep)
    assert exc.value.layer is Layer.MARKER and "'OLD'" in str(exc.value)


def test_node_failure_file_stops_the_wait_at_once():
    clock = Clock()
    node = FakeNode(clock, marker="", failed="caliper: caliper-worker@1.service is failed")
    with pytest.raises(NotReady) as exc:
        wait_host(node.probe(), "N1", Timeouts(marker=600, poll=1), clock=clock,
                  sleep=clock.sleep)
    assert "caliper-worker@1.service is failed" in str(exc.value)
    assert clock() < 10


def test_dead_process_fails_the_process_layer():
    clock = Clock()
    node = FakeNode(clock, alive=False)
    with pytest.raises(NotReady) as exc:
        wait_host(node.probe(), "N1", Timeouts(process=5, poll=1), clock=clock,
                  sleep=clock.sleep)
    assert exc.value.layer is Layer.PROCESS and "qemu exited" in str(exc.value)


def test_wait_all_reports_every_failed_host():
    clock_ok, clock_bad = Clock(), Clock()
    good = FakeNode(clock_ok).probe("a")
    bad = FakeNode(clock_bad, cloud_init_rc=1).probe("b")
    with pytest.raises(NotReady) as exc:
        wait_all([good, bad], "N1", Timeouts(poll=0))
    assert exc.value.host == "b"
    bad2 = FakeNode(Clock(), cloud_init_rc=1).probe("c")
    with pytest.raises(ExternalError, match="2 hosts not ready") as exc2:
        wait_all([bad, bad2], "N1", Timeouts(poll=0))
    assert "host b" in str(exc2.value) and "host c" in str(exc2.value)


def test_ctrl_c_stops_every_waiter_at_once():
    """Ctrl-C while hosts boot: wait_all raises at once and leaves no waiter behind (the
    rollback must not wait for the readiness timeouts)."""
    import signal
    import threading

    waiting = threading.Event()

    def alive() -> bool:
        waiting.set()
        return False                      # never boots: the process layer waits an hour

    probes = [Probe(h, alive=alive, ssh=lambda c, t: done(), console_tail=lambda n: "",
                    died=lambda: "") for h in ("a", "b")]
    main = threading.main_thread().ident
    threading.Thread(target=lambda: (waiting.wait(10),
                                     signal.pthread_kill(main, signal.SIGINT)),  # type: ignore[arg-type]
                     daemon=True).start()
    before = threading.active_count()
    with pytest.raises(KeyboardInterrupt):
        wait_all(probes, "N1", Timeouts(process=3600, poll=0.05))
    assert threading.active_count() <= before      # every waiter thread has ended


def test_an_interrupt_stops_a_waiter_blocked_in_a_command(monkeypatch):
    """SIGTERM to fabperf alone (not its process group, as Ctrl-C is): a waiter blocked in
    `ssh ... cloud-init status --wait` must not hold the rollback until that returns. Seen
    live: `launch up` sat 50 s after SIGTERM until its ssh child was killed by hand."""
    import signal
    import threading

    from fabkit import runner

    in_command = threading.Event()
    terminated = threading.Event()

    def blocking_ssh(command: str, timeout: float) -> object:
        in_command.set()
        terminated.wait(30)               # the command runs until it is terminated
        return done("", -15)

    def terminate_running() -> int:
        terminated.set()
        return 1

    monkeypatch.setattr(runner, "terminate_running", terminate_running)
    probes = [Probe("a", alive=lambda: True, ssh=blocking_ssh, console_tail=lambda n: "",
                    died=lambda: "")]
    # a real SIGINT (as SIGTERM would be): interrupt_main() only sets a flag, which a main
    # thread already blocked on the waiter's future never looks at
    main = threading.main_thread().ident
    threading.Thread(target=lambda: (in_command.wait(10),
                                     signal.pthread_kill(main, signal.SIGINT)),  # type: ignore[arg-type]
                     daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        wait_all(probes, "N1", Timeouts(poll=0.05))
    assert terminated.is_set()


def test_each_layer_is_said_as_each_host_passes_it(caplog):
    # issue 25, item 11: `launch up` was silent for minutes between "waiting for ... to be
    # ready" and the bootstrap
    import logging

    clock = Clock()
    node = FakeNode(clock, ssh_after=30)
    with caplog.at_level(logging.INFO, logger="fabperf.ready"):
        wait_host(node.probe("fabric"), "N1", Timeouts(poll=1), clock=clock, sleep=clock.sleep)
    said = [r.getMessage() for r in caplog.records if r.name == "fabperf.ready"]
    assert [s.split(" (")[0] for s in said] == [
        "fabric: process running", "fabric: SSH answers", "fabric: cloud-init finished",
        "fabric: role ready, this launch's marker"]
    assert said[1].startswith("fabric: SSH answers (3") and "s in all)" in said[1]


def test_a_long_cloud_init_is_said_every_slice_with_its_stage(caplog):
    """A host's cloud-init part can take minutes (Fabric's peer, the chaincode): the wait
    says every `say` seconds that it still runs, and in which stage."""
    import logging

    clock = Clock()
    node = FakeNode(clock, cloud_init_until=150)
    with caplog.at_level(logging.INFO, logger="fabperf.ready"):
        rep = wait_host(node.probe("fabric"), "N1", Timeouts(poll=1, say=60), clock=clock,
                        sleep=clock.sleep)
    said = [r.getMessage() for r in caplog.records if r.name == "fabperf.ready"]
    assert said[2:4] == ["fabric: cloud-init still running, stage modules-final (60s)",
                         "fabric: cloud-init still running, stage modules-final (120s)"]
    assert said[4].startswith("fabric: cloud-init finished (150s")
    assert rep.seconds["cloud-init"] == 150


def test_a_cloud_init_that_never_ends_fails_after_its_timeout_with_its_status():
    clock = Clock()
    node = FakeNode(clock, cloud_init_until=10_000)
    with pytest.raises(NotReady) as exc:
        wait_host(node.probe("fabric"), "N1", Timeouts(poll=1, say=60, cloud_init=200),
                  clock=clock, sleep=clock.sleep)
    err = str(exc.value)
    assert "layer 'cloud-init'" in err and "did not finish within 200s" in err
    assert "Running in stage: modules-final" in err
    assert clock() <= 200 + 60 + 1            # not a slice more than it had


def test_the_running_stage_of_cloud_init_status_long():
    from launch.machines.ready import running_stage

    assert running_stage("status: running\ntime: Sat, 05 Dec 2026\ndetail:\n"
                         "Running in stage: modules-config\n") == "stage modules-config"
    assert running_stage("status: running\ndetail: DataSourceNoCloud [seed=/dev/vdb]\n") == \
        "DataSourceNoCloud [seed=/dev/vdb]"
    assert running_stage("status: running\n") == ""
