"""launch.machines.providers.qemu with the runner door closed: a fake runner and a fake /proc."""

from __future__ import annotations

import itertools
import os
import signal
import stat
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from fabkit import runner
from fabkit.errors import InputError
from launch.machines.providers.base import HostRequest, ProviderContext, get_provider
from launch.machines.providers.qemu import Accel, QemuProvider, env_id, mac_address, vm_tag
from launch.machines.state import EnvState, Phase, StateStore


class FakeSystem:
    """Plays vde_switch, qemu-img, genisoimage and qemu: records argv, fakes their effects."""

    def __init__(self, proc: Path) -> None:
        self.proc = proc
        self.calls: list[list[str]] = []
        self.seeds: dict[str, dict[str, str]] = {}
        self.pids = itertools.count(4000)
        self.killed: list[tuple[int, int]] = []

    def start_process(self, argv: list[str]) -> int:
        pid = next(self.pids)
        (self.proc / str(pid)).mkdir(parents=True)
        (self.proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv)
                                                       + b"\0")
        return pid

    def run(self, argv, **kw):  # mirrors runner.run
        argv = [os.fspath(a) for a in argv]
        self.calls.append(argv)
        prog = os.path.basename(argv[0])
        if prog == "vde_switch":
            pidfile = Path(argv[argv.index("--pidfile") + 1])
            pidfile.write_text(f"{self.start_process(argv)}\n")
        elif prog == "qemu-img":
            Path(argv[-1] if not argv[-1].endswith("G") else argv[-2]).write_bytes(b"QFI")
        elif prog == "genisoimage":
            out = Path(argv[argv.index("-output") + 1])
            files = [Path(a) for a in argv if a.endswith(("user-data", "meta-data",
                                                           "network-config"))]
            self.seeds[out.parent.name] = {f.name: f.read_text() for f in files}
            out.write_bytes(b"ISO")
        elif prog.startswith("qemu-system") or (
                prog == "taskset" and os.path.basename(argv[3]).startswith("qemu-system")):
            pidfile = Path(argv[argv.index("-pidfile") + 1])
            pidfile.write_text(str(self.start_process(argv)))
        else:
            raise AssertionError(argv)
        return runner.Completed(tuple(argv), 0, "", "", kw.get("log_path"))

    def kill(self, pid: int, sig: int) -> None:
        self.killed.append((pid, sig))
        entry = self.proc / str(pid)
        if entry.exists():
            (entry / "cmdline").unlink()
            entry.rmdir()


@pytest.fixture
def fake(tmp_path, monkeypatch):
    system = FakeSystem(tmp_path / "proc")
    system.proc.mkdir()
    monkeypatch.setattr(runner, "run", system.run)
    monkeypatch.setattr(os, "kill", system.kill)
    return system


def make(tmp_path, fake, env="lab", accel="tcg") -> QemuProvider:
    edir = tmp_path / "b" / env
    return QemuProvider(ProviderContext(env, edir, StateStore(edir), {"accel": accel}),
                        proc=fake.proc, sleep=lambda s: None)


@pytest.fixture
def image(tmp_path) -> str:
    p = tmp_path / "caliper-worker.qcow2"
    p.write_bytes(b"QFI")
    return str(p)


def hosts(image: str) -> list[HostRequest]:
    return [HostRequest("caliper0", ("caliper",), image, 1536, 2, service_ports=(9100,)),
            HostRequest("caliper1", ("caliper",), image, 1536, 2, service_ports=(9100,))]


def test_registry_builds_the_qemu_provider(tmp_path):
    p = get_provider("qemu", ProviderContext("lab", tmp_path, StateStore(tmp_path),
                                             {"accel": "tcg"}))
    assert isinstance(p, QemuProvider)
    with pytest.raises(InputError, match="provider"):
        get_provider("vmware", ProviderContext("lab", tmp_path, StateStore(tmp_path)))


def test_accel_auto_prefers_tcg_under_a_hypervisor(tmp_path):
    kvm = tmp_path / "kvm"
    kvm.write_text("")
    nested = tmp_path / "cpuinfo-nested"
    nested.write_text("flags\t\t: fpu vme hypervisor lahf_lm\n")
    metal = tmp_path / "cpuinfo-metal"
    metal.write_text("flags\t\t: fpu vme vmx lahf_lm\n")
    assert Accel.resolve("auto", dev_kvm=kvm, cpuinfo=nested) == "tcg"
    assert Accel.resolve("auto", dev_kvm=kvm, cpuinfo=metal) == "kvm"
    assert Accel.resolve("auto", dev_kvm=tmp_path / "absent", cpuinfo=metal) == "tcg"
    assert Accel.resolve("kvm") == "kvm"
    with pytest.raises(InputError, match="accel"):
        Accel.resolve("hvf")


def test_host_cpus_pins_that_vm_with_taskset_and_only_that_one(tmp_path, fake, image):
    from launch.machines.providers.qemu import host_cores

    assert host_cores(None, "w") == ()
    assert host_cores("0-1,3", "w", frozenset({0, 1, 2, 3})) == (0, 1, 3)
    assert host_cores(1, "w", frozenset({0, 1})) == (1,)
    for bad, why in (("1-0", "low-high"), ("a", "taskset core list"), ("1,", "core list"),
                     ("7", r"cores of this machine \(0,1\)"), (True, "core list")):
        with pytest.raises(InputError, match=f"(?s)settings.hosts.c.host_cpus.*{why}"):
            host_cores(bad, "settings.hosts.c.host_cpus", frozenset({0, 1}))
    p = make(tmp_path, fake)
    pinned, free = hosts(image)
    pinned = replace(pinned, host_cpus=(0,))
    p.reserve([pinned, free])
    p.create(pinned, b"#cloud-config\n")
    p.create(free, b"#cloud-config\n")
    vms = [c for c in fake.calls if "-name" in c]
    assert vms[0][:3] == ["taskset", "--cpu-list", "0"]
    assert os.path.basename(vms[0][3]).startswith("qemu-system")
    assert os.path.basename(vms[1][0]).startswith("qemu-system")
    assert p.store.load().hosts["caliper0"].pid is not None


def test_reserve_assigns_from_dot_10_keeps_and_honours_explicit(tmp_path, fake, image):
    p = make(tmp_path, fake)
    assert p.reserve(hosts(image)) == {"caliper0": "10.77.0.10", "caliper1": "10.77.0.11"}
    # a second reserve keeps what the state holds
    extra = HostRequest("monitor", ("monitor",), image, address="10.77.0.50")
    assert p.reserve([*hosts(image), extra])["monitor"] == "10.77.0.50"
    state = p.store.load()
    assert {h.phase for h in state.hosts.values()} == {Phase.RESERVED}
    with pytest.raises(InputError, match="an address in 10.77.0.0/24"):
        p.reserve([HostRequest("x", ("caliper",), image, address="192.168.1.4")])
    with pytest.raises(InputError, match="no other host uses"):
        p.reserve([HostRequest("y", ("caliper",), image, address="10.77.0.10")])


def test_create_starts_switch_and_vms_recording_each_resource(tmp_path, fake, image):
    p = make(tmp_path, fake)
    p.reserve(hosts(image))
    for h in hosts(image):
        p.create(h, b"#cloud-config\nruncmd: [[true]]\n")
    state = p.store.load()
    progs = [os.path.basename(c[0]) for c in fake.calls]
    assert progs.count("vde_switch") == 1           # one switch per environment
    assert progs.count("qemu-system-x86_64") == 2
    net = state.network
    assert net["kind"] == "vde" and Path(net["socket"]).name == "vde.ctl"
    assert net["switch_pid"] == int(Path(net["pidfile"]).read_text())

    qemu_argv = [c for c in fake.calls if c[0].startswith("qemu-system")][0]
    joined = " ".join(qemu_argv)
    eid = env_id(p.dir)
    assert qemu_argv[qemu_argv.index("-name") + 1] == vm_tag("lab", "caliper0", eid)
    assert "-accel tcg,thread=multi" in joined and "-daemonize" in qemu_argv
    assert f"vde,id=lan,sock={net['socket']}" in joined
    # host access only on 127.0.0.1
    fwd = [a for a in qemu_argv if a.startswith("user,")][0]
    rules = [r for r in fwd.split(",") if r.startswith("hostfwd=")]
    assert len(rules) == 2 and all(r.startswith("hostfwd=tcp:127.0.0.1:") for r in rules)
    assert "-m" in qemu_argv and qemu_argv[qemu_argv.index("-m") + 1] == "1536"

    for name in ("caliper0", "caliper1"):
        h = state.hosts[name]
        assert h.phase is Phase.RUNNING and h.pid is not None
        assert set(h.files) >= {"overlay", "seed", "qmp", "pidfile", "serial_log"}
        assert set(h.ports) == {"ssh", "9100"}
        assert h.user_data_sha256 and h.generation == 1
        assert stat.S_IMODE(Path(h.files["seed"]).parent.stat().st_mode) == 0o700
    ports = [v for h in state.hosts.values() for v in h.ports.values()]
    assert len(set(ports)) == len(ports)

    overlay_cmd = [c for c in fake.calls if c[0] == "qemu-img"][0]
    assert overlay_cmd[overlay_cmd.index("-b") + 1] == image and "-F" in overlay_cmd


def test_seed_carries_user_data_meta_data_and_static_network(tmp_path, fake, image):
    p = make(tmp_path, fake)
    p.reserve(hosts(image))
    ud = b"#cloud-config\nwrite_files: []\n"
    p.create(hosts(image)[1], ud)
    seed = fake.seeds["caliper1"]
    assert seed["user-data"] == ud.decode()
    meta = yaml.safe_load(seed["meta-data"])
    assert meta == {"instance-id": "lab-caliper1-1", "local-hostname": "caliper1"}
    net = yaml.safe_load(seed["network-config"])
    eid = env_id(p.dir)
    lan = net["ethernets"]["eth0"]
    assert lan["addresses"] == ["10.77.0.11/24"]
    assert lan["match"]["macaddress"] == mac_address("lab", "caliper1", 0, eid)
    assert net["ethernets"]["eth1"]["dhcp4"] is True
    # the plain user-data is not left next to the ISO
    assert not (p.host_dir("caliper1") / "seed").exists()


def test_seed_authorises_the_environment_key(tmp_path, fake, image):
    p = make(tmp_path, fake)
    key = tmp_path / "id_ed25519"
    key.write_text("PRIVATE")
    Path(f"{key}.pub").write_text("ssh-ed25519 AAAA fabperf-lab\n")
    p.reserve(hosts(image))
    p.store.update(ssh_key=str(key))
    p.create(hosts(image)[0], b"#cloud-config\n")
    meta = yaml.safe_load(fake.seeds["caliper0"]["meta-data"])
    assert meta["public-keys"] == ["ssh-ed25519 AAAA fabperf-lab"]


def test_create_is_idempotent_and_replaces_dead_vms(tmp_path, fake, image):
    p = make(tmp_path, fake)
    p.reserve(hosts(image))
    p.create(hosts(image)[0], b"#cloud-config\n")
    n = len(fake.calls)
    p.create(hosts(image)[0], b"#cloud-config\n")
    assert len(fake.calls) == n                      # running: nothing done
    first = p.store.load().hosts["caliper0"]
    fake.kill(first.pid, signal.SIGKILL)             # the VM died
    p.create(hosts(image)[0], b"#cloud-config\n")
    again = p.store.load().hosts["caliper0"]
    assert again.pid != first.pid and again.generation == 2
    assert again.ports == first.ports                # same forwarded ports
    assert yaml.safe_load(fake.seeds["caliper0"]["meta-data"])["instance-id"] == \
        "lab-caliper0-2"


def test_create_with_missing_image_is_input_error(tmp_path, fake):
    p = make(tmp_path, fake)
    req = HostRequest("caliper0", ("caliper",), str(tmp_path / "nope.qcow2"))
    p.reserve([req])
    with pytest.raises(InputError, match="bake build --provider qemu"):
        p.create(req, b"")


def test_find_leaked_sees_tagged_vms_the_state_lost(tmp_path, fake, image):
    p = make(tmp_path, fake)
    p.reserve(hosts(image))
    p.create(hosts(image)[0], b"#cloud-config\n")
    assert p.find_leaked() == []
    eid = env_id(p.dir)
    lost = fake.start_process(["qemu-system-x86_64", "-name", vm_tag("lab", "ghost", eid)])
    fake.start_process(["qemu-system-x86_64", "-name", vm_tag("other", "x", eid)])
    fake.start_process(["qemu-system-x86_64", "-name", vm_tag("lab", "x", "deadbeef")])
    leaked = p.find_leaked()
    assert [(x.kind, int(x.ident)) for x in leaked] == [("vm", lost)]


def test_destroy_stops_everything_removes_files_keeps_logs(tmp_path, fake, image):
    p = make(tmp_path, fake)
    p.reserve(hosts(image))
    for h in hosts(image):
        p.create(h, b"#cloud-config\n")
    ghost = fake.start_process(["qemu-system-x86_64", "-name",
                                vm_tag("lab", "ghost", env_id(p.dir))])
    state = p.store.load()
    pids = {h.pid for h in state.hosts.values()} | {state.network["switch_pid"], ghost}
    report = p.destroy()
    assert not report.errors
    assert {pid for pid, _ in fake.killed} == pids
    assert not any((fake.proc / str(pid)).exists() for pid in pids)
    assert not p.store.exists()
    assert not (p.dir / "hosts").exists() and not (p.dir / "run").exists()
    assert (p.dir / "logs").is_dir()
    assert [x.detail for x in report.leaked_found] == [vm_tag("lab", "ghost", env_id(p.dir))]
    # idempotent
    assert p.destroy().removed == ()


def test_destroy_hosts_rolls_back_only_those(tmp_path, fake, image):
    p = make(tmp_path, fake)
    p.reserve(hosts(image))
    for h in hosts(image):
        p.create(h, b"#cloud-config\n")
    p.destroy_hosts(["caliper1"])
    state = p.store.load()
    assert set(state.hosts) == {"caliper0"}
    assert p.vm_alive(state.hosts["caliper0"])
    assert not p.host_dir("caliper1").exists()


def test_long_environment_paths_put_sockets_in_a_short_dir(tmp_path, fake):
    edir = tmp_path / ("x" * 60) / "lab"
    p = QemuProvider(ProviderContext("lab", edir, StateStore(edir), {"accel": "tcg"}),
                     proc=fake.proc)
    assert len(str(p.run_dir / "vde.ctl" / ".12345-00000")) < 108
    assert p.run_dir == Path("/tmp") / f"fabperf-{env_id(edir)}"


def test_wait_ready_records_phases(tmp_path, fake, image, monkeypatch):
    from launch.machines import ready

    p = make(tmp_path, fake)
    p.reserve(hosts(image))
    p.store.update(nonce="N")
    monkeypatch.setattr(ready, "wait_all", lambda probes, nonce, t: [
        ready.HostReadiness(pr.host) for pr in probes])
    p.wait_ready(["caliper0"], "N")
    assert p.store.load().hosts["caliper0"].phase is Phase.READY

    def boom(probes, nonce, t):
        raise ready.NotReady("caliper1", ready.Layer.SSH, "no answer", "tail")
    monkeypatch.setattr(ready, "wait_all", boom)
    with pytest.raises(ready.NotReady):
        p.wait_ready(["caliper1"], "N")
    h = p.store.load().hosts["caliper1"]
    assert h.phase is Phase.FAILED and "no answer" in h.error


def test_env_state_defaults():
    assert EnvState(environment="x", provider="qemu").ssh_user == "fabperf"


@pytest.mark.parametrize("damage", ['{"environment": "lab", "provider": "qemu", "hosts": []}',
                                    "{not json", "\xff\xfe"])
def test_down_of_a_damaged_state_scans_and_removes_everything(tmp_path, fake, image,
                                                               monkeypatch, damage):
    from fabkit.clikit import run_main
    from launch.cli import cli
    from launch.lifecycle import up

    build = tmp_path / "build"
    edir = up.env_dir(build, "lab")
    p = QemuProvider(ProviderContext("lab", edir, StateStore(edir), {"accel": "tcg"}),
                     proc=fake.proc, sleep=lambda s: None)
    p.reserve(hosts(image))
    for h in hosts(image):
        p.create(h, b"#cloud-config\n")
    state = p.store.load()
    pids = {h.pid for h in state.hosts.values()} | {state.network["switch_pid"]}
    p.store.path.write_bytes(damage.encode("latin-1"))
    monkeypatch.setattr(up, "get_provider", lambda name, ctx: QemuProvider(
        ctx, proc=fake.proc, sleep=lambda s: None))
    # status explains (exit 2, what is wrong, and that down still works)
    with pytest.raises(InputError, match="damaged state file") as exc:
        up.status("lab", build_dir=build)
    assert "launch down lab" in str(exc.value) and exc.value.exit_code == 2
    # down falls back to the process scan and removes everything it finds
    assert run_main(cli, ["down", "lab", "--build-dir", str(build)]) == 0
    assert {pid for pid, _ in fake.killed} == pids
    assert not any((fake.proc / str(pid)).exists() for pid in pids)
    assert not p.store.path.exists()
    assert not (edir / "hosts").exists()
