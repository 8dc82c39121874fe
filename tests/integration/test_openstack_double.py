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
