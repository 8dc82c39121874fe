"""launch on OpenStack through openstacksdk's real code paths, against a local HTTP double
(Keystone v3 catalog, Nova, Neutron, Glance on 127.0.0.1: openstack_double.py).

The double's servers never boot, so `up` waits for `running` (ACTIVE) only.
"""

from __future__ import annotations

import base64
import json
import random
import shutil
from pathlib import Path

import openstack_double as od
import pytest
import yaml

from fabkit.clikit import run_main
from fabkit.errors import ExternalError
from launch.cli import cli
from launch.lifecycle import up
from launch.machines.state import StateStore

pytest.importorskip("openstack")
pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def osd(tmp_path, monkeypatch):
    double = od.OpenStackDouble()
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(double.clouds_yaml(tmp_path / "clouds.yaml")))
    monkeypatch.setenv("OS_CLIENT_SECURE_FILE", str(tmp_path / "secure.yaml"))
    monkeypatch.delenv("OS_CLOUD", raising=False)
    images = {i: double.cloud.add_image(f"fabperf-{i}", [f"fabperf-fp-{i}"],
                                        {"fabperf:fingerprint": i})
              for i in ("fabric-node", "caliper-worker", "monitor")}
    yield {"double": double, "cloud": double.cloud, "images": images, "tmp": tmp_path,
           "build": tmp_path / "build"}
    double.stop()


def spec(osd, *, images=True, **settings) -> Path:
    doc = yaml.safe_load((REPO / "environments" / "openstack.yaml").read_text())
    doc["name"] = "oslab"
    doc["settings"]["poll_seconds"] = 0.05
    if images:
        doc["settings"]["images"] = dict(osd["images"])
    doc["settings"].update(settings)
    path = osd["tmp"] / "oslab.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def lib_up(osd, path, **kw):
    kw.setdefault("wait", "running")
    return up.up(path, build_dir=osd["build"], repo_root=REPO, **kw)


def nothing_left(osd) -> bool:
    return not any(osd["cloud"].live().values())


def test_up_status_down(osd, capsys):
    path = spec(osd, floating_network="public", config_drive=True)
    assert run_main(cli, ["up", str(path), "--build-dir", str(osd["build"]),
                          "--wait", "running"]) == 0
    assert "running; readiness not waited for" in capsys.readouterr().out
    edir = osd["build"] / "environments" / "oslab"
    plan = json.loads((edir / "bundle" / "plan.json").read_text())
    want = {h["name"]: h["address"] for h in plan["hosts"]}
    cloud = osd["cloud"]
    assert len(cloud.servers) == len(cloud.ports) == len(cloud.fips) == len(want) == 10
    state = StateStore(edir).load()
    for name, h in state.hosts.items():
        port = cloud.ports[h.resources["port"]]
        assert port["fixed_ips"][0] == {"subnet_id": "sub-lab", "ip_address": want[name]}
        assert port["security_groups"] == ["sg-1"]      # Neutron's wire name
        server = cloud.servers[h.resources["server"]]
        assert server["status"] == "ACTIVE" and server["config_drive"] is True
        assert f"fabperf-host={name}" in server["tags"] and "fabperf" in port["tags"]
        assert server["metadata"]["fabperf-env"] == "oslab"
        ud = (edir / "bundle" / "nodes" / name / "user-data").read_bytes()
        assert base64.b64decode(server["user_data"]) == ud
        role = h.roles[0]
        flavor = {"peer": "m1.xlarge", "orderer": "m1.large", "caliper": "m1.xlarge",
                  "monitor": "m1.large"}[role]
        assert server["flavor"]["id"] == f"fl-{flavor}"
        assert h.resources["public_ip"].startswith("203.0.113.")
    assert run_main(cli, ["status", "oslab", "--build-dir", str(osd["build"]),
                          "--output", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["hosts"]) == 10 and all(h["alive"] for h in doc["hosts"])
    assert run_main(cli, ["down", "oslab", "--build-dir", str(osd["build"])]) == 0
    assert nothing_left(osd), osd["cloud"].live()
    assert not StateStore(edir).exists()


def test_image_found_by_its_fingerprint_tag(osd, monkeypatch):
    from launch.machines.providers import openstack as os_mod

    monkeypatch.setattr(os_mod.OpenStackProvider, "_fingerprint", lambda self, image: image)
    lib_up(osd, spec(osd, images=False))
    state = StateStore(osd["build"] / "environments" / "oslab").load()
    assert {h.image for h in state.hosts.values()} == set(osd["images"].values())
    up.down("oslab", build_dir=osd["build"])
    assert nothing_left(osd)


@pytest.mark.parametrize(("method", "path", "k"), [
    ("POST", r"/ports$", 1), ("POST", r"/ports$", 6),
    ("POST", r"/servers$", 1), ("POST", r"/servers$", 4), ("POST", r"/servers$", 10),
    ("POST", r"/floatingips$", 3),
])
def test_an_error_at_the_kth_create_leaves_nothing(osd, method, path, k):
    osd["cloud"].fail(method, path, k, 500)
    with pytest.raises(ExternalError, match="OpenStack"):
        lib_up(osd, spec(osd, floating_network="public"))
    assert nothing_left(osd), osd["cloud"].live()
    assert not StateStore(osd["build"] / "environments" / "oslab").exists()


@pytest.mark.parametrize("seed", [1, 2])
def test_ctrl_c_at_a_random_point_leaves_nothing(osd, seed):
    import os
    import signal

    rng = random.Random(seed)
    path, k = rng.choice([r"/ports$", r"/servers$"]), rng.randint(1, 8)
    fired = []

    def ctrl_c():
        fired.append(1)
        os.kill(os.getpid(), signal.SIGINT)

    osd["cloud"].on("POST", path, k, ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        lib_up(osd, spec(osd))
    assert fired
    assert nothing_left(osd), osd["cloud"].live()


def test_lost_state_is_recovered_by_down_and_gc_through_tags(osd, capsys):
    path = spec(osd)
    lib_up(osd, path)
    edir = osd["build"] / "environments" / "oslab"
    (edir / "state.json").unlink()
    result = up.down(str(path), build_dir=osd["build"])
    assert {x.kind for x in result.report.leaked_found} == {"server", "port"}
    assert nothing_left(osd)

    lib_up(osd, path)
    shutil.rmtree(edir)                     # the environment is gone from this machine
    args = ["gc", "--provider", "openstack", "--from", str(path),
            "--build-dir", str(osd["build"])]
    assert run_main(cli, [*args, "--dry-run", "--output", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["garbage"]) == 20 and {g["reason"] for g in doc["garbage"]} == \
        {"environment gone"}
    assert len(osd["cloud"].servers) == 10
    assert run_main(cli, args) == 0
    assert nothing_left(osd)


def test_unknown_network_is_exit_2_and_leaves_nothing(osd, capsys):
    path = spec(osd, network="nosuch")
    assert run_main(cli, ["up", str(path), "--build-dir", str(osd["build"]),
                          "--wait", "running"]) == 2
    assert "settings.network" in capsys.readouterr().err
    assert nothing_left(osd)


# --- issue 22: recovery paths (faults through the double's own switches) ---------------

def launch(osd, *args):
    return run_main(cli, [*args, "--build-dir", str(osd["build"])])


def test_one_busy_answer_from_nova_or_neutron_is_retried(osd):
    """Item 9: a 429 from Nova or a 503 from Neutron failed and rolled back the whole `up`."""
    cloud = osd["cloud"]
    cloud.fail("POST", r"/servers$", 3, 429)
    cloud.fail("POST", r"/ports$", 2, 503)
    cloud.fail("GET", r"/servers/[^/]+$", 4, 503)
    lib_up(osd, spec(osd))
    assert len(cloud.servers) == len(cloud.ports) == 10
    assert sum(1 for m, p in cloud.requests if m == "POST" and p.endswith("/servers")) == 11
    up.down("oslab", build_dir=osd["build"])
    assert nothing_left(osd)


def test_up_makes_again_a_port_deleted_behind_its_back(osd):
    """Item 4: the recorded port is gone (with its server): a second `up` makes another at
    the same address. Before: the server create failed and the host was rolled back."""
    path = spec(osd)
    lib_up(osd, path)
    store = StateStore(osd["build"] / "environments" / "oslab")
    h = store.load().hosts["peer0-org1"]
    cloud = osd["cloud"]
    with cloud.lock:
        del cloud.servers[h.resources["server"]]
        del cloud.ports[h.resources["port"]]
    assert lib_up(osd, path).changed
    again = store.load().hosts["peer0-org1"]
    assert again.resources["port"] != h.resources["port"] and again.address == h.address
    assert len(cloud.servers) == 10
    up.down("oslab", build_dir=osd["build"])
    assert nothing_left(osd)


def test_security_groups_that_do_not_open_the_role_ports_are_exit_2(osd, capsys):
    """Item 10: the user's groups are checked before anything is created."""
    osd["cloud"].security_groups["sg-2"] = {
        "id": "sg-2", "name": "ssh-only", "tags": [], "security_group_rules": [
            {"id": "r-2", "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
             "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0",
             "remote_group_id": None}]}
    path = spec(osd, security_groups=["ssh-only"])
    assert launch(osd, "up", str(path), "--wait", "running") == 2
    err = capsys.readouterr().err
    assert "not open from network.cidr 192.168.50.0/24" in err and "7051" in err
    assert nothing_left(osd) and not osd["build"].exists()


def test_addresses_other_ports_hold_are_left_out_of_the_plan(osd):
    """Item 10: a router port at .10 (the first planned address) made the port create
    fail with IpAddressAlreadyAllocated and rolled the `up` back."""
    cloud = osd["cloud"]
    cloud.ports["router"] = {"id": "router", "network_id": "net-lab", "device_id": "r1",
                             "fixed_ips": [{"subnet_id": "sub-lab",
                                            "ip_address": "192.168.50.10"}], "tags": []}
    lib_up(osd, spec(osd))
    state = StateStore(osd["build"] / "environments" / "oslab").load()
    addresses = {h.address for h in state.hosts.values()}
    assert len(addresses) == 10 and "192.168.50.10" not in addresses
    up.down("oslab", build_dir=osd["build"])
    assert set(cloud.ports) == {"router"}


@pytest.mark.parametrize("damage", ["lost", "truncated"])
def test_down_of_a_lost_or_damaged_state_removes_everything(osd, monkeypatch, capsys, damage):
    """Items 1 and 2 on OpenStack: before, `down NAME` fell back to the qemu scan and
    answered "nothing to remove" (exit 0) with every server running."""
    lib_up(osd, spec(osd))
    path = osd["build"] / "environments" / "oslab" / "state.json"
    if damage == "lost":
        path.unlink()
        monkeypatch.setenv("OS_CLOUD", "fabperf")     # the user's configuration says where
    else:
        path.write_text(path.read_text()[:1500])
    assert launch(osd, "down", "oslab") == 0
    assert nothing_left(osd), osd["cloud"].live()
    assert "openstack cloud fabperf" in capsys.readouterr().out
