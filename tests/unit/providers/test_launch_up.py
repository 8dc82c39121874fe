"""launch.lifecycle.up: reconcile semantics over a fake provider (no VM, no subprocess)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fabkit import runner
from fabkit.errors import ExternalError, InputError
from launch.lifecycle import bootstrap, up
from launch.machines import ssh
from launch.machines.providers.base import DestroyReport, HostRequest
from launch.machines.ready import HostReadiness, Layer, NotReady
from launch.machines.state import Phase, StateStore

REPO = Path(__file__).resolve().parents[3]


class FakeProvider:
    """Records what `up` asks for; hosts are 'alive' once created."""

    name = "qemu"
    SETTINGS = ()
    max_parallel = 1
    follows_hosts = True
    instances: list[FakeProvider] = []

    def __init__(self, ctx, fail_ready: BaseException | None = None) -> None:
        self.ctx, self.store = ctx, ctx.store
        self.created: list[str] = []
        self.destroyed = False
        self.destroyed_hosts: list[str] = []
        self.fail_ready = fail_ready
        FakeProvider.instances.append(self)

    def host_requests(self, plan, only=()):
        from launch.machines.providers.qemu import QemuProvider

        return QemuProvider(self.ctx).host_requests(plan, only)

    def reserve(self, hosts: list[HostRequest]) -> dict[str, str]:
        for h in hosts:
            if h.name not in self.store.load().hosts:
                self.store.update_host(h.name, address=h.address, roles=h.roles,
                                       image=h.image)
        return {h.name: self.store.load().hosts[h.name].address for h in hosts}

    def create(self, host: HostRequest, user_data: bytes) -> None:
        assert user_data.startswith(b"#cloud-config")
        self.created.append(host.name)
        self.store.update_host(host.name, pid=100 + len(self.created), phase=Phase.RUNNING,
                               ports={"ssh": 40000 + len(self.created)})

    def alive(self, host) -> bool:
        return host.pid is not None

    def wait_running(self, hosts):
        pass

    def wait_ready(self, hosts, nonce, timeouts=None):
        if self.fail_ready is not None:
            raise self.fail_ready
        for h in hosts:
            self.store.update_host(h, phase=Phase.READY)
        return [HostReadiness(h, {"ssh": 1.0}) for h in hosts]

    def destroy(self) -> DestroyReport:
        self.destroyed = True
        self.store.remove()
        return DestroyReport(("everything",))

    def destroy_hosts(self, names) -> DestroyReport:
        self.destroyed_hosts += list(names)
        return DestroyReport()

    def find_leaked(self):
        return []

    def target(self, host):
        return ssh.Target(host.name, "127.0.0.1", host.ports["ssh"], "fabperf", Path("key"))


class FakeBootstrapNode:
    """The bootstrap node's answers to launch.lifecycle.bootstrap's poll: the job's journal
    lines and its done (or failed) marker with this launch's nonce."""

    def __init__(self, store: StateStore, failed: dict | None = None) -> None:
        self.store, self.failed, self.polls = store, failed, 0

    def __call__(self, command: str, timeout: float) -> runner.Completed:
        self.polls += 1
        nonce = self.store.load().nonce
        sep = "--fabperf-marker--"
        lines = "[fabperf-bootstrap] orderer0.example.com joined mychannel\n"
        if self.failed:
            out = f"\n{sep}\n{json.dumps({**self.failed, 'nonce': nonce})}\n{sep}\n{lines}"
        else:
            done = {"nonce": nonce, "seconds": 42.0,
                    "package_ids": {"mychannel/fixed-asset": "x"}}
            out = f"{json.dumps(done)}\n{sep}\n\n{sep}\n{lines}"
        return runner.Completed(("ssh",), 0, out, "", None)


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A copy of environments/local.yaml whose images are files under tmp_path."""
    doc = yaml.safe_load((REPO / "environments" / "local.yaml").read_text())
    images = {}
    for name in ("fabric-node", "caliper-worker", "monitor"):
        p = tmp_path / f"{name}.qcow2"
        p.write_bytes(b"QFI")
        images[name] = str(p)
    doc["images"] = images
    doc["name"] = "unit"
    path = tmp_path / "unit.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    FakeProvider.instances.clear()
    failure: dict[str, BaseException | None] = {"ready": None}
    monkeypatch.setattr(up, "get_provider",
                        lambda name, ctx: FakeProvider(ctx, failure["ready"]))
    nodes: list[FakeBootstrapNode] = []
    boot: dict = {"failed": None}

    def runner_for(target):
        store = StateStore(tmp_path / "build" / "environments" / "unit")
        nodes.append(FakeBootstrapNode(store, boot["failed"]))
        return nodes[-1]
    monkeypatch.setattr(bootstrap, "ssh_runner", runner_for)
    return {"path": path, "doc": doc, "build": tmp_path / "build", "failure": failure,
            "bootstrap": boot, "nodes": nodes}


def do_up(env, **kw):
    return up.up(env["path"], build_dir=env["build"], repo_root=REPO, **kw)


def test_up_creates_every_host_then_a_second_up_changes_nothing(env):
    first = do_up(env)
    assert first.changed
    assert FakeProvider.instances[-1].created == ["fabric", "caliper", "monitor"]
    state = StateStore(env["build"] / "environments" / "unit").load()
    assert state.nonce and state.spec_sha256 and Path(state.ssh_key).exists()
    assert {h.address for h in state.hosts.values()} == {"10.77.0.10", "10.77.0.11",
                                                         "10.77.0.12"}
    bundle_ud = env["build"] / "environments" / "unit" / "bundle" / "nodes" / "caliper"
    assert (bundle_ud / "user-data").exists()

    # the last layer: the channel bootstrap on the plan's bootstrap node, followed to its end
    assert state.bootstrap["nonce"] == state.nonce and state.bootstrap["host"] == "fabric"
    assert first.timings["bootstrap_job"] == 42.0
    polls = sum(n.polls for n in env["nodes"])

    second = do_up(env)
    assert not second.changed
    assert FakeProvider.instances[-1].created == []
    assert StateStore(env["build"] / "environments" / "unit").load().nonce == state.nonce
    assert sum(n.polls for n in env["nodes"]) == polls   # not even asked again


def test_a_bootstrap_failure_is_a_readiness_failure_carrying_the_marker(env):
    env["bootstrap"]["failed"] = {"step": "osn-join", "node": "orderer0.example.com",
                                  "error": "osnadmin: Status: 400 bad config"}
    with pytest.raises(bootstrap.BootstrapFailed) as err:
        do_up(env)
    assert "step 'osn-join' on node 'orderer0.example.com'" in err.value.message
    assert "Status: 400 bad config" in err.value.message
    assert FakeProvider.instances[-1].destroyed          # rolled back


def test_without_the_bootstrap_node_no_bootstrap_is_awaited(env):
    do_up(env, only=("caliper",))
    assert env["nodes"] == []


def test_only_brings_up_a_subset_and_sizes_follow_roles(env):
    result = do_up(env, only=("caliper", "monitor"))
    assert [h.name for h in result.hosts] == ["caliper", "monitor"]
    assert FakeProvider.instances[-1].created == ["caliper", "monitor"]
    with pytest.raises(InputError, match="--only"):
        do_up(env, only=("nope",))


def test_a_changed_spec_of_a_running_environment_is_refused(env):
    do_up(env)
    env["path"].write_text(env["path"].read_text() + "# edited\n")
    with pytest.raises(InputError, match="different version"):
        do_up(env)


def test_failure_rolls_back_the_new_environment(env):
    env["failure"]["ready"] = NotReady("caliper", Layer.CLOUD_INIT, "cloud-init failed",
                                       "serial tail")
    with pytest.raises(NotReady):
        do_up(env)
    assert FakeProvider.instances[-1].destroyed


def test_keep_on_failure_keeps_it(env):
    env["failure"]["ready"] = NotReady("caliper", Layer.SSH, "no answer", "")
    with pytest.raises(NotReady):
        do_up(env, keep_on_failure=True)
    assert not FakeProvider.instances[-1].destroyed
    assert StateStore(env["build"] / "environments" / "unit").load() is not None


def test_ctrl_c_rolls_back_too(env):
    env["failure"]["ready"] = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        do_up(env)
    assert FakeProvider.instances[-1].destroyed


def test_failed_resume_rolls_back_only_what_it_created(env):
    do_up(env, only=("monitor",))
    env["failure"]["ready"] = NotReady("caliper", Layer.SSH, "no answer", "")
    with pytest.raises(NotReady):
        do_up(env, only=("monitor", "caliper"))
    p = FakeProvider.instances[-1]
    assert not p.destroyed and p.destroyed_hosts == ["caliper"]


def test_settings_are_validated(tmp_path):
    from launch.machines.providers.base import check_settings

    with pytest.raises(InputError, match="settings.accel"):
        check_settings("qemu", {"accel": "hvf"}, tmp_path / "e.yaml")
    with pytest.raises(InputError, match="(?s)settings.memory.*did you mean '?memory_mb"):
        check_settings("qemu", {"memory": 1}, tmp_path / "e.yaml")
    s = check_settings("qemu", {"accel": "tcg", "memory_mb": 1024}, None)
    assert s == {"accel": "tcg", "memory_mb": 1024, "cpus": 2, "hosts": {}}


def test_per_host_overrides_are_validated(env):
    env["doc"]["settings"] = {"hosts": {"caliper": {"cpus": 0}}}
    env["path"].write_text(yaml.safe_dump(env["doc"], sort_keys=False))
    with pytest.raises(InputError, match="settings.hosts.caliper.cpus"):
        do_up(env)
    assert not env["build"].exists()


def test_unbaked_image_names_the_bake_command(tmp_path):
    from launch.machines.providers.qemu import image_path

    with pytest.raises(InputError, match="bake build --provider qemu --image monitor"):
        image_path("monitor", None, tmp_path, tmp_path)


def test_unbaked_qemu_images_exit_2_before_anything_is_written(tmp_path):
    doc = yaml.safe_load((REPO / "environments" / "local.yaml").read_text())
    doc.pop("images", None)
    doc["manifest"] = str(tmp_path / "nowhere" / "manifest.json")
    spec_path = tmp_path / "env.yaml"
    spec_path.write_text(yaml.safe_dump(doc))
    build_dir = tmp_path / "build"
    with pytest.raises(InputError, match="not been baked") as exc:
        up.up(spec_path, build_dir=build_dir, repo_root=REPO)
    assert exc.value.exit_code == 2
    assert not build_dir.exists()          # no SSH key, no lock, no state


def test_render_and_up_both_refuse_a_settings_typo(tmp_path, capsys):
    from fabkit.clikit import run_main
    from launch.cli import cli

    doc = yaml.safe_load((REPO / "environments" / "local.yaml").read_text())
    doc["settings"] = {"acel": "tcg"}
    spec_path = tmp_path / "env.yaml"
    spec_path.write_text(yaml.safe_dump(doc))
    assert run_main(cli, ["render", str(spec_path), "--out", str(tmp_path / "out")]) == 2
    assert run_main(cli, ["up", str(spec_path), "--build-dir", str(tmp_path / "b")]) == 2
    assert "settings.acel" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "b").exists()


def test_provider_none_settles(tmp_path, monkeypatch):
    doc = yaml.safe_load((REPO / "environments" / "local.yaml").read_text())
    doc["provider"], doc["settings"] = "none", {}
    doc.pop("images", None)
    doc["placement"] = {"hosts": [
        {"name": "fabric", "address": "10.99.0.10", "roles": ["peer", "orderer"]},
        {"name": "caliper", "address": "10.99.0.11", "roles": ["caliper"]},
        {"name": "monitor", "address": "10.99.0.12", "roles": ["monitor"]}]}
    doc["network"] = {"cidr": "10.99.0.0/24"}
    spec_path = tmp_path / "none.yaml"
    spec_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    build = tmp_path / "build"
    first = up.up(spec_path, build_dir=build, repo_root=REPO)
    assert first.changed and {h.phase for h in first.hosts} == {Phase.READY}
    second = up.up(spec_path, build_dir=build, repo_root=REPO)
    assert not second.changed
    up.down(doc["name"], build_dir=build)


def test_down_of_an_unknown_environment_is_input_error(tmp_path):
    with pytest.raises(InputError, match="unknown environment 'never-seen'") as exc:
        up.down("never-seen", build_dir=tmp_path)
    assert exc.value.exit_code == 2


def test_status_of_unknown_environment_is_input_error(tmp_path):
    with pytest.raises(InputError):
        up.status("never-seen", build_dir=tmp_path)


def test_target_needs_a_known_host(env):
    do_up(env)
    with pytest.raises(InputError, match="HOST"):
        up.target("unit", "nope", build_dir=env["build"])


def test_resolve_env_accepts_name_or_spec_path(env):
    name, edir = up.resolve_env(str(env["path"]), env["build"])
    assert name == "unit" and edir == env["build"] / "environments" / "unit"
    with pytest.raises(InputError):
        up.resolve_env("Bad Name", env["build"])


def test_external_errors_are_exit_1():
    assert ExternalError("x").exit_code == 1


def test_cli_down_unknown_exits_2_and_status_json(env, capsys):
    from fabkit.clikit import run_main
    from launch.cli import cli

    assert run_main(cli, ["down", "never-seen", "--build-dir", str(env["build"])]) == 2
    do_up(env)
    capsys.readouterr()
    assert run_main(cli, ["status", "unit", "--build-dir", str(env["build"]),
                          "--output", "json"]) == 0
    import json

    doc = json.loads(capsys.readouterr().out)
    assert [h["name"] for h in doc["hosts"]] == ["fabric", "caliper", "monitor"]
    assert all(h["alive"] and h["phase"] == "ready" for h in doc["hosts"])


@pytest.mark.parametrize("change", [{"provider": "aws"}, {"placement": None, "only": "nosuch"}])
def test_bad_input_to_up_writes_nothing(tmp_path, change):
    doc = yaml.safe_load((REPO / "environments" / "local.yaml").read_text())
    only = ()
    if "provider" in change:
        doc["provider"], doc["settings"] = change["provider"], {}
    else:
        only = (change["only"],)
    spec_path = tmp_path / "env.yaml"
    spec_path.write_text(yaml.safe_dump(doc))
    build_dir = tmp_path / "build"
    with pytest.raises(InputError) as exc:
        up.up(spec_path, build_dir=build_dir, repo_root=REPO, only=only)
    assert exc.value.exit_code == 2
    assert not build_dir.exists()


def test_wait_running_and_none_stop_before_readiness(env):
    env["failure"]["ready"] = NotReady("caliper", Layer.SSH, "never asked", "")
    first = do_up(env, wait="running")           # wait_ready would raise: it is not called
    assert first.changed and first.waited == "running"
    again = do_up(env, wait="none")
    assert not again.changed
    with pytest.raises(InputError, match="--wait"):
        do_up(env, wait="soon")


class RecreatingProvider(FakeProvider):
    """A FakeProvider whose destroy_hosts forgets the hosts (as the real ones do) and whose
    create records the user-data's sha256."""

    def create(self, host: HostRequest, user_data: bytes) -> None:
        import hashlib

        super().create(host, user_data)
        self.store.update_host(host.name, user_data_sha256=hashlib.sha256(user_data).hexdigest())

    def destroy_hosts(self, names) -> DestroyReport:
        from dataclasses import replace

        self.destroyed_hosts += list(names)
        cur = self.store.load()
        self.store.save(replace(cur, hosts={k: v for k, v in cur.hosts.items()
                                            if k not in names}))
        return DestroyReport(tuple(names))


def test_recreate_puts_the_fabric_hosts_on_another_image(env, monkeypatch, tmp_path):
    monkeypatch.setattr(up, "get_provider", lambda name, ctx: RecreatingProvider(ctx))
    do_up(env)
    before = StateStore(env["build"] / "environments" / "unit").load()
    other = tmp_path / "fabric-node-other.qcow2"
    other.write_bytes(b"QFI")
    doc = {**env["doc"], "images": {**env["doc"]["images"], "fabric-node": str(other)},
           "fabric": {**env["doc"]["fabric"], "version": "2.5.12"}}   # as launch compare does
    derived = tmp_path / "derived.yaml"
    derived.write_text(yaml.safe_dump(doc, sort_keys=False))
    polls = len(env["nodes"])

    with pytest.raises(InputError, match="different version"):   # without recreate
        up.up(derived, build_dir=env["build"], repo_root=REPO)
    result = up.up(derived, build_dir=env["build"], repo_root=REPO, only=("fabric",),
                   recreate=True)
    p = FakeProvider.instances[-1]
    assert result.changed and p.destroyed_hosts == ["fabric"] and p.created == ["fabric"]
    after = StateStore(env["build"] / "environments" / "unit").load()
    assert after.hosts["fabric"].image == str(other)
    assert after.hosts["caliper"] == before.hosts["caliper"]           # untouched
    assert after.spec_sha256 != before.spec_sha256 and after.spec_path == str(derived)
    assert len(env["nodes"]) > polls and after.bootstrap["nonce"] == after.nonce
    plan = json.loads((env["build"] / "environments/unit/bundle/plan.json").read_text())
    assert {h["name"]: h["image_id"] for h in plan["hosts"]}["fabric"] == str(other)


def test_recreate_refuses_a_change_that_reaches_the_kept_hosts(env, monkeypatch, tmp_path):
    monkeypatch.setattr(up, "get_provider", lambda name, ctx: RecreatingProvider(ctx))
    do_up(env)
    doc = {**env["doc"], "caliper": {**env["doc"]["caliper"],
                                     "workers": {"vms": 1, "processes": 3}}}
    derived = tmp_path / "derived.yaml"
    derived.write_text(yaml.safe_dump(doc, sort_keys=False))
    before = StateStore(env["build"] / "environments" / env["doc"]["name"]).load()
    bundle = env["build"] / "environments" / env["doc"]["name"] / "bundle"
    ud = (bundle / "nodes" / "caliper" / "user-data").read_bytes()
    with pytest.raises(InputError, match="reaches hosts that keep running"):
        up.up(derived, build_dir=env["build"], repo_root=REPO, only=("fabric",),
              recreate=True)
    # refused before anything was removed or rewritten
    after = StateStore(env["build"] / "environments" / env["doc"]["name"]).load()
    assert after == before
    assert (bundle / "nodes" / "caliper" / "user-data").read_bytes() == ud
    assert not list(bundle.parent.glob(".trial-*"))
    with pytest.raises(InputError, match="--only"):
        up.up(derived, build_dir=env["build"], repo_root=REPO, recreate=True)
