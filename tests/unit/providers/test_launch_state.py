"""launch.machines.state: atomic 0600 writes, host updates, the environment lock."""

from __future__ import annotations

import json
import stat

import pytest

from fabkit.errors import ExternalError, InputError
from launch.machines.state import (
    CorruptState,
    EnvState,
    HostState,
    Phase,
    StateStore,
    check_env_name,
)


def test_save_is_0600_atomic_and_round_trips(tmp_path):
    store = StateStore(tmp_path / "env")
    saved = store.save(EnvState(environment="lab", provider="qemu",
                                network={"subnet": "10.77.0.0/24"}))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert [p.name for p in store.dir.iterdir()] == ["state.json"]   # no temp file left
    assert saved.created_at and saved.updated_at
    loaded = store.load()
    assert loaded == saved
    assert json.loads(store.path.read_text())["environment"] == "lab"


def test_update_host_merges_files_and_ports(tmp_path):
    store = StateStore(tmp_path)
    store.save(EnvState(environment="lab", provider="qemu"))
    store.update_host("a", address="10.77.0.10", roles=("caliper",))
    store.update_host("a", files={"overlay": "/x/disk.qcow2"}, ports={"ssh": 40022})
    host = store.update_host("a", files={"seed": "/x/seed.iso"}, ports={"9100": 40100},
                             phase=Phase.RUNNING, pid=123)
    assert host == store.load().hosts["a"]
    assert host.address == "10.77.0.10"
    assert dict(host.files) == {"overlay": "/x/disk.qcow2", "seed": "/x/seed.iso"}
    assert dict(host.ports) == {"ssh": 40022, "9100": 40100}
    assert host.phase is Phase.RUNNING and host.pid == 123


def test_host_state_from_json_ignores_unknown_keys():
    h = HostState.from_json({"name": "a", "address": "10.0.0.1", "phase": "ready",
                             "ports": {"ssh": "2222"}, "later_field": 1})
    assert h.phase is Phase.READY and h.ports == {"ssh": 2222}


def test_corrupt_state_is_an_input_error_with_the_down_hint(tmp_path):
    store = StateStore(tmp_path)
    store.path.write_text("{not json")
    with pytest.raises(CorruptState, match="damaged state file: .*not valid JSON") as exc:
        store.load()
    assert exc.value.exit_code == 2 and "launch down" in str(exc.value)
    assert StateStore(tmp_path, tolerate_damage=True).load() is None


@pytest.mark.parametrize(("doc", "message"), [
    ({"environment": "e", "provider": "qemu", "hosts": []}, "hosts: expected a mapping"),
    ({"environment": "e", "provider": "qemu",
      "hosts": {"a": {"name": "a", "ports": {"ssh": 70000}}}},
     "hosts.a.ports.ssh: expected an integer from 1 to 65535, found 70000"),
    ({"environment": "e", "provider": "qemu", "hosts": {"a": {"name": "a", "phase": "x"}}},
     "hosts.a.phase: expected one of reserved"),
    ({"environment": "e", "provider": "qemu", "version": 99}, "version: expected state version 1"),
    ([], "(top level): expected a mapping"),
])
def test_damaged_state_names_the_field(tmp_path, doc, message):
    store = StateStore(tmp_path)
    store.path.write_text(json.dumps(doc))
    with pytest.raises(CorruptState) as exc:
        store.load()
    assert message in str(exc.value)


def test_state_with_duplicate_keys_or_bad_utf8_is_damaged(tmp_path):
    store = StateStore(tmp_path)
    store.path.write_text('{"environment": "e", "environment": "f", "provider": "qemu"}')
    with pytest.raises(CorruptState, match="duplicate key"):
        store.load()
    store.path.write_bytes(b'{"environment": "\xff"}')
    with pytest.raises(CorruptState, match="not UTF-8"):
        store.load()


def test_missing_state_loads_none_and_update_refuses(tmp_path):
    store = StateStore(tmp_path)
    assert store.load() is None
    with pytest.raises(ExternalError, match="no state recorded"):
        store.update(nonce="x")


def test_lock_is_exclusive(tmp_path):
    a, b = StateStore(tmp_path), StateStore(tmp_path)
    with a.lock():
        with pytest.raises(ExternalError, match="busy"):
            with b.lock():
                pass
    with b.lock():   # released
        pass


@pytest.mark.parametrize("name", ["Lab", "-x", "a_b", "x" * 40, ""])
def test_bad_environment_names(name):
    with pytest.raises(InputError):
        check_env_name(name)


def test_good_environment_name():
    assert check_env_name("e2e-lab1") == "e2e-lab1"
