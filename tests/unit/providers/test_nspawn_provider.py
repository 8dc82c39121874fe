"""The nspawn provider's pure parts: command line, cgroup values and readings, the bridge's
conflict rules, the NoCloud network-config, the sampler's textfile, mount/loop scans, the
settings table and the image lookup (no subprocess: cgroup and /proc trees are faked in
tmp_path)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from fabkit.errors import InputError
from launch.machines.providers import base, bridge, cgroup_sampler, cgroups, rootfs
from launch.machines.providers.cgroups import Cgroup, Limits
from launch.machines.providers.nspawn import (
    NspawnProvider,
    machine_name,
    network_config,
    nspawn_argv,
    overlay_options,
    tag_of,
)
from launch.machines.state import StateStore
from launch.render import plan as plan_mod
from launch.spec.env import Provider

REPO = Path(__file__).resolve().parents[3]


# --- command line ----------------------------------------------------------------------

def test_argv_joins_the_cgroups_before_exec_of_nspawn_booting_the_overlay(tmp_path):
    procs = [tmp_path / "cpu/fp-1/cgroup.procs", tmp_path / "memory/fp-1/cgroup.procs"]
    argv = nspawn_argv(machine="fp-1234abcd-peer0", host="peer0", root=tmp_path / "root",
                       bridge_name="fp-1234abcd", textfile_dir=tmp_path / "tf",
                       procs_files=procs)
    assert argv[:2] == ["sh", "-c"]
    script = argv[2]
    # the shell writes its own pid into every cgroup.procs, then becomes nspawn
    assert 'echo $$ > "$1"' in script and script.endswith('exec "$@"')
    sep = argv.index("--")
    assert argv[4:sep] == [str(p) for p in procs]
    nspawn = argv[sep + 1:]
    assert nspawn[0] == "systemd-nspawn"
    # PID 1 is not systemd here: without these two nspawn fails (MACHINE-FACTS)
    assert "--register=no" in nspawn and "--keep-unit" in nspawn
    assert "--boot" in nspawn and f"--directory={tmp_path / 'root'}" in nspawn
    assert "--machine=fp-1234abcd-peer0" in nspawn and "--hostname=peer0" in nspawn
    assert "--network-bridge=fp-1234abcd" in nspawn
    assert f"--bind={tmp_path / 'tf'}:/var/lib/prometheus/node-exporter" in nspawn


def test_names_carry_the_environment_tag():
    assert tag_of("1234abcd") == "fp-1234abcd"
    assert machine_name("fp-1234abcd", "caliper0") == "fp-1234abcd-caliper0"
    assert bridge.default_name("fp-1234abcd") == "fp-1234abcd"
    assert len(bridge.default_name("fp-1234abcd")) <= 15          # IFNAMSIZ


def test_overlay_options():
    assert overlay_options(Path("/l"), Path("/u"), Path("/w")) == \
        "lowerdir=/l,upperdir=/u,workdir=/w"


def test_network_config_gives_host0_its_planned_address_and_no_gateway():
    doc = yaml.safe_load(yaml.safe_dump(network_config("10.77.0.11", 24)))
    assert doc == {"version": 2, "ethernets": {"host0": {"match": {"name": "host0"},
                                                         "addresses": ["10.77.0.11/24"]}}}


# --- cgroup values -----------------------------------------------------------------------

def test_limits_become_quota_cpuset_and_memory_in_join_order():
    lim = Limits(cpus=2, memory_mb=1536, cores=(1,))
    files = lim.files(parent_cpus="0-1", parent_mems="0")
    # mems and cpus before anything else: a task cannot join an empty cpuset
    assert files[:2] == [("cpuset", "cpuset.mems", "0"), ("cpuset", "cpuset.cpus", "1")]
    assert ("cpu", "cpu.cfs_quota_us", "200000") in files
    assert ("cpu", "cpu.cfs_period_us", "100000") in files
    assert ("cpu", "cpu.shares", "2048") in files        # weighed like two busy threads
    assert ("memory", "memory.limit_in_bytes", str(1536 * 1024 * 1024)) in files
    # unpinned: the parent's cpuset
    assert Limits(1, 512).files("0-1", "0")[1] == ("cpuset", "cpuset.cpus", "0-1")


def test_effective_cpus_is_the_smaller_of_quota_and_cpuset():
    assert Limits(2, 512, (1,)).effective_cpus((0, 1)) == 1.0
    assert Limits(1, 512).effective_cpus((0, 1)) == 1.0
    assert Limits(4, 512).effective_cpus((0, 1)) == 2.0


def test_parse_cpu_list():
    assert cgroups.parse_cpu_list("0-2,5\n") == (0, 1, 2, 5)
    assert cgroups.parse_cpu_list("") == ()


def fake_hierarchies(root: Path, cpus: str = "0-1") -> None:
    for h in ("cpu", "cpuacct", "cpuset", "memory", "pids"):
        (root / h).mkdir(parents=True)
    (root / "cpuset" / "cpuset.cpus").write_text(cpus + "\n")
    (root / "cpuset" / "cpuset.mems").write_text("0\n")


def test_cgroup_create_writes_limits_in_every_hierarchy(tmp_path):
    fake_hierarchies(tmp_path)
    cg = Cgroup("fp-1-a", tmp_path)
    cg.create(Limits(1, 256, (1,)))
    assert (tmp_path / "cpu/fp-1-a/cpu.cfs_quota_us").read_text() == "100000"
    assert (tmp_path / "cpuset/fp-1-a/cpuset.cpus").read_text() == "1"
    assert (tmp_path / "cpuset/fp-1-a/cpuset.mems").read_text() == "0"
    assert (tmp_path / "memory/fp-1-a/memory.limit_in_bytes").read_text() == str(256 << 20)
    assert [p.parent.parent.name for p in cg.procs_files()] == \
        ["cpu", "cpuacct", "cpuset", "memory", "pids"]


def test_cgroup_create_without_v1_hierarchies_says_so(tmp_path):
    (tmp_path / "unified").mkdir()
    with pytest.raises(Exception, match=r"cgroup v1 hierarchies .*cpu.* are not mounted"):
        Cgroup("x", tmp_path).create(Limits(1, 256))


def write_readings(root: Path, name: str, *, usage_ns: int, quota: int, cpus: str) -> None:
    for h in ("cpu", "cpuacct", "cpuset", "memory"):
        (root / h / name).mkdir(parents=True, exist_ok=True)
    (root / "cpu" / name / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / "cpu" / name / "cpu.cfs_period_us").write_text("100000\n")
    (root / "cpu" / name / "cpu.stat").write_text(
        "nr_periods 53\nnr_throttled 51\nthrottled_time 4000000000\n")
    (root / "cpuacct" / name / "cpuacct.usage").write_text(f"{usage_ns}\n")
    (root / "cpuset" / name / "cpuset.cpus").write_text(cpus + "\n")
    (root / "memory" / name / "memory.usage_in_bytes").write_text("1048576\n")
    (root / "memory" / name / "memory.limit_in_bytes").write_text("268435456\n")


def test_sample_reads_cpu_seconds_cores_throttling_and_memory(tmp_path):
    write_readings(tmp_path, "c", usage_ns=1_020_000_000, quota=20000, cpus="0-1")
    s = Cgroup("c", tmp_path).sample((0, 1))
    assert s.cpu_seconds == pytest.approx(1.02)
    assert s.cpus == pytest.approx(0.2)             # 20 % of a core by quota
    assert s.throttled_seconds == pytest.approx(4.0)
    assert (s.memory_bytes, s.memory_limit_bytes) == (1048576, 268435456)
    write_readings(tmp_path, "d", usage_ns=5, quota=-1, cpus="1")
    assert Cgroup("d", tmp_path).sample((0, 1)).cpus == 1.0   # no quota: the cpuset


def test_textfile_is_prometheus_text_format_with_the_contract_names(tmp_path):
    write_readings(tmp_path, "c", usage_ns=3_500_000_000, quota=100000, cpus="0-1")
    text = cgroups.textfile(Cgroup("c", tmp_path).sample((0, 1)))
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            kind = line.split()
            assert kind[1] in ("HELP", "TYPE")
            continue
        name, value = line.split()
        samples[name] = float(value)
    assert samples["fabperf_cgroup_cpu_seconds_total"] == 3.5
    assert samples["fabperf_cgroup_cpus"] == 1.0
    assert "# TYPE fabperf_cgroup_cpu_seconds_total counter" in text
    assert "# TYPE fabperf_cgroup_cpus gauge" in text
    assert text.endswith("\n")


def test_sampler_writes_each_hosts_textfile_and_stops_when_its_config_goes(tmp_path):
    root = tmp_path / "cg"
    write_readings(root, "fp-1-a", usage_ns=2_000_000_000, quota=100000, cpus="0")
    tf = tmp_path / "tf-a"
    tf.mkdir()
    config = tmp_path / "cgroups.json"
    config.write_text(json.dumps({"hosts": {
        "a": {"cgroup": "fp-1-a", "textfile_dir": str(tf)},
        "gone": {"cgroup": "fp-1-gone", "textfile_dir": str(tmp_path / "nowhere")}}}))
    hosts = cgroup_sampler.read_config(config)
    assert hosts is not None and [h.host for h in hosts] == ["a", "gone"]
    assert cgroup_sampler.sample_once(hosts, (0, 1), root) == 1
    assert "fabperf_cgroup_cpu_seconds_total 2" in (tf / cgroup_sampler.TEXTFILE).read_text()
    config.unlink()
    assert cgroup_sampler.read_config(config) is None      # the sampler's cue to exit


# --- bridge conflicts ----------------------------------------------------------------------

LINKS = [{"ifname": "lo"}, {"ifname": "eth0"}, {"ifname": "br-x"}]
ADDRS = [{"ifname": "eth0", "addr_info": [{"family": "inet", "local": "192.0.2.2",
                                           "prefixlen": 24}]}]
ROUTES = [{"dst": "default", "dev": "eth0"},
          {"dst": "192.0.2.0/24", "dev": "eth0", "protocol": "kernel"},
          {"dst": "10.50.0.0/16", "dev": "eth0", "gateway": "192.0.2.9"}]


def test_a_free_name_and_cidr_have_no_conflict():
    assert bridge.conflicts("fp-1", "10.77.0.0/24", LINKS, ADDRS, ROUTES) == []


def test_a_link_of_that_name_is_a_conflict_unless_it_is_ours():
    (c,) = bridge.conflicts("br-x", "10.77.0.0/24", LINKS, ADDRS, ROUTES)
    assert c.field == "bridge" and "br-x" in c.found
    assert bridge.conflicts("br-x", "10.77.0.0/24", LINKS, ADDRS, ROUTES, ours=True) == []


def test_a_cidr_on_an_interface_or_a_route_is_a_conflict():
    (c,) = bridge.conflicts("fp-1", "192.0.2.128/25", LINKS, ADDRS, ROUTES)
    assert c.field == "network.cidr" and "192.0.2.2/24 on eth0" in c.found
    (c,) = bridge.conflicts("fp-1", "10.50.3.0/24", LINKS, ADDRS, ROUTES)
    assert "route 10.50.0.0/16 via eth0" in c.found


def test_our_own_bridges_address_is_no_conflict():
    addrs = [*ADDRS, {"ifname": "fp-1", "addr_info": [{"family": "inet", "local": "10.77.0.1",
                                                       "prefixlen": 24}]}]
    routes = [*ROUTES, {"dst": "10.77.0.0/24", "dev": "fp-1", "protocol": "kernel"}]
    assert bridge.conflicts("fp-1", "10.77.0.0/24", LINKS, addrs, routes, ours=True) == []
    assert bridge.conflicts("fp-2", "10.77.0.0/24", LINKS, addrs, routes)[0].field == \
        "network.cidr"


def test_operator_address_is_the_first_of_the_cidr():
    assert bridge.operator_address("10.77.0.0/24") == "10.77.0.1/24"


# --- mount and loop scans -------------------------------------------------------------------

MOUNTINFO = (
    "22 1 254:0 / / rw - ext4 /dev/vda rw\n"
    "90 22 0:50 / /b/env/hosts/a/root rw - overlay overlay "
    "rw,lowerdir=/var/cache/fabperf/nspawn/fabperf-x-1/root,upperdir=/b/u,workdir=/b/w\n"
    "91 22 0:51 / /b/env/hosts/a/root/proc rw - proc proc rw\n"
    "92 22 0:52 / /b/env/hosts/ab rw - tmpfs tmpfs rw\n"
)


def test_mounts_under_finds_only_that_tree_deepest_first(tmp_path):
    mi = tmp_path / "mountinfo"
    mi.write_text(MOUNTINFO)
    assert rootfs.mounts_under(Path("/b/env/hosts/a"), mi) == \
        ["/b/env/hosts/a/root/proc", "/b/env/hosts/a/root"]
    assert rootfs.lower_dirs_in_use(mi) == {"/var/cache/fabperf/nspawn/fabperf-x-1/root"}


def test_loops_on_reads_backing_files(tmp_path):
    for name, backing in (("loop0", "/var/cache/fabperf/nspawn/.x.unpack-1/disk.raw"),
                          ("loop1", "/elsewhere/disk.raw")):
        (tmp_path / name / "loop").mkdir(parents=True)
        (tmp_path / name / "loop" / "backing_file").write_text(backing + "\n")
    (tmp_path / "loop2").mkdir()                          # unused: no loop/ directory
    assert rootfs.loops_on(Path("/var/cache/fabperf/nspawn/.x.unpack-1"), tmp_path) == \
        ["/dev/loop0"]


def test_a_cached_tree_is_current_only_for_the_same_qcow2(tmp_path):
    qcow2 = tmp_path / "fabperf-monitor-0123456789ab.qcow2"
    qcow2.write_bytes(b"x")
    cache = tmp_path / "cache"
    e = rootfs.entry(qcow2, cache)
    assert e.name.startswith("fabperf-monitor-0123456789ab-") and len(e.name) == 37
    assert rootfs.up_to_date(qcow2, cache) is None
    (e / "root" / "usr").mkdir(parents=True)
    (e / rootfs.MARKER).write_text(json.dumps(rootfs.Source.of(qcow2).__dict__))
    assert rootfs.up_to_date(qcow2, cache) == e / "root"
    qcow2.write_bytes(b"rebaked")                         # --force under the same name
    assert rootfs.up_to_date(qcow2, cache) is None
    assert rootfs.entry(qcow2, cache) != e                # a new entry: e may be in use


# --- settings, registry, images ----------------------------------------------------------------

def test_registry_and_settings_table(tmp_path):
    ctx = base.ProviderContext("lab", tmp_path / "lab", StateStore(tmp_path / "lab"), {})
    p = base.get_provider("nspawn", ctx)
    assert isinstance(p, NspawnProvider) and p.follows_hosts
    checked = base.check_settings("nspawn", {"bridge": "fp-lab", "hosts": {}}, None)
    assert checked["bridge"] == "fp-lab" and checked["cpus"] == 2
    with pytest.raises(InputError, match="settings.bridge: expected"):
        base.check_settings("nspawn", {"bridge": "a-name-longer-than-15"}, None)
    with pytest.raises(InputError, match="settings.accel"):
        base.check_settings("nspawn", {"accel": "tcg"}, None)       # qemu's, not ours


def test_nspawn_boots_the_qemu_artifacts_of_the_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"images": {
        "monitor": {"qemu": {"fingerprint": "f" * 64, "name": "fabperf-monitor-ffffffffffff",
                             "artifact": {"path": "build/images/m.qcow2"},
                             "built_at": "2026-01-01T00:00:00Z"}}}}))
    assert Provider.NSPAWN.bakes_with() == "qemu"
    ids = plan_mod.manifest_ids(tmp_path / "manifest.json", Provider.NSPAWN)
    assert ids == plan_mod.manifest_ids(tmp_path / "manifest.json", Provider.QEMU)


def fake_plan(image_id: str) -> SimpleNamespace:
    from launch.spec.contract import Role

    host = SimpleNamespace(name="monitor", roles=(Role.MONITOR,), image="monitor",
                           image_id=image_id, address="10.77.0.12")
    return SimpleNamespace(hosts=[host])


def test_an_image_that_is_not_baked_is_input_error_before_anything_is_written(tmp_path):
    edir = tmp_path / "environments" / "lab"
    ctx = base.ProviderContext("lab", edir, StateStore(edir), {}, cidr="10.77.0.0/24",
                               build_dir=tmp_path, repo_root=tmp_path)
    p = NspawnProvider(ctx)
    with pytest.raises(InputError, match=r"(?s)image m.qcow2 of host monitor is not baked"
                                         r".*make bake-images"):
        p.host_requests(fake_plan(str(tmp_path / "m.qcow2")))
    assert not edir.exists()


def test_host_requests_size_each_container_from_settings(tmp_path, monkeypatch):
    edir = tmp_path / "environments" / "lab"
    img = tmp_path / "m.qcow2"
    img.write_bytes(b"")
    settings = base.check_settings("nspawn", {"memory_mb": 1024, "hosts": {
        "monitor": {"cpus": 1, "host_cpus": "0"}}}, None)
    ctx = base.ProviderContext("lab", edir, StateStore(edir), settings, cidr="10.77.0.0/24",
                               build_dir=tmp_path, repo_root=tmp_path)
    p = NspawnProvider(ctx)
    monkeypatch.setattr(p, "check_machine", lambda: None)
    (r,) = p.host_requests(fake_plan(str(img)))
    assert (r.memory_mb, r.cpus, r.host_cpus, r.address) == (1024, 1, (0,), "10.77.0.12")


def test_the_operators_address_is_not_a_hosts(tmp_path):
    edir = tmp_path / "lab"
    ctx = base.ProviderContext("lab", edir, StateStore(edir), {}, cidr="10.77.0.0/24")
    p = NspawnProvider(ctx)
    with pytest.raises(InputError, match="an address other than 10.77.0.1"):
        p.reserve([base.HostRequest("m", ("monitor",), "x", address="10.77.0.1")])


# --- launch up --provider, launch gc ---------------------------------------------------------

def test_a_qemu_spec_runs_on_nspawn_and_nothing_else_changes():
    from launch.lifecycle.up import on_provider
    from launch.spec import env as spec_env

    local = spec_env.load(REPO / "environments" / "local.yaml")
    moved = on_provider(local, "nspawn")
    assert moved.provider is Provider.NSPAWN
    assert moved.name == local.name and moved.placement == local.placement
    assert on_provider(local, "qemu") is local


def test_a_cloud_spec_cannot_move_to_images_it_was_not_baked_for():
    from launch.lifecycle.up import on_provider
    from launch.spec import env as spec_env

    aws = spec_env.load(REPO / "environments" / "aws.yaml")
    with pytest.raises(InputError, match=r"(?s)aws.yaml: provider: expected a provider whose "
                                         r"images nspawn boots \(qemu images\).*found 'aws'"):
        on_provider(aws, "nspawn")
    with pytest.raises(InputError, match="--provider: expected one of"):
        on_provider(aws, "vmware")


def test_gc_asks_every_provider_with_garbage():
    from launch.lifecycle import gc

    assert set(gc.collectors()) == {"aws", "openstack", "nspawn"}


def test_gc_collects_stale_trees_and_interrupted_unpacks_not_current_ones(tmp_path,
                                                                         monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setattr(rootfs, "CACHE", cache)
    monkeypatch.setattr(rootfs, "orphan_loops", lambda cache=None: [])
    current = tmp_path / "fabperf-monitor-000000000001.qcow2"
    gone = tmp_path / "fabperf-monitor-000000000002.qcow2"
    names = {}
    for qcow2 in (current, gone):
        qcow2.write_bytes(b"x")
        e = rootfs.entry(qcow2, cache)
        names[qcow2] = e.name
        (e / "root" / "usr").mkdir(parents=True)
        (e / rootfs.MARKER).write_text(json.dumps(rootfs.Source.of(qcow2).__dict__))
    gone.unlink()
    (cache / ".fabperf-x.unpack-999999999").mkdir()          # no such process
    found = {Path(g.ident).name: g.reason for g in NspawnProvider.collect({}, lambda e, i: True, 0)}
    assert found == {names[gone]: "its image is gone or re-baked",
                     ".fabperf-x.unpack-999999999": "interrupted unpack"}
    two_hours_ago = time.time() - 7200
    os.utime(rootfs.entry(current, cache), (two_hours_ago, two_hours_ago))
    unused = {Path(g.ident).name: g.reason
              for g in NspawnProvider.collect({}, lambda e, i: True, 1)}
    assert unused[names[current]] == "unused"          # --older-than 1h
    assert names[current] not in {
        Path(g.ident).name for g in NspawnProvider.collect({}, lambda e, i: True, 3)}


def test_units_that_cannot_work_in_a_container_are_masked_in_the_overlay(tmp_path):
    from launch.machines.providers.nspawn import CONTAINER_MASKED, mask_units

    mask_units(tmp_path, CONTAINER_MASKED)
    mask_units(tmp_path, CONTAINER_MASKED)                     # again: unchanged
    link = tmp_path / "etc/systemd/system/systemd-remount-fs.service"
    assert link.is_symlink() and str(link.readlink()) == "/dev/null"


def test_a_bridge_carrying_the_environments_tag_is_adopted_any_other_refused(tmp_path,
                                                                             monkeypatch):
    edir = tmp_path / "lab"
    p = NspawnProvider(base.ProviderContext("lab", edir, StateStore(edir), {},
                                            cidr="10.77.0.0/24"))
    monkeypatch.setattr(bridge, "exists", lambda name, sys_net=None: True)
    assert p._bridge_is_ours(bridge.default_name(p.tag))        # left by an earlier run
    assert not p._bridge_is_ours("br-someone")


def test_the_cited_metric_list_is_what_the_sampler_writes(tmp_path):
    write_readings(tmp_path, "c", usage_ns=1, quota=-1, cpus="0")
    text = cgroups.textfile(Cgroup("c", tmp_path).sample((0,)))
    written = {line.split()[2]: line.split()[3] for line in text.splitlines()
               if line.startswith("# TYPE")}
    listed = dict(line.split() for line in
                  (REPO / "tests/data/metric-names/fabperf_cgroup.txt").read_text().splitlines()
                  if line and not line.startswith("#"))
    assert written == listed
