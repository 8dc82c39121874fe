"""`launch down` / `launch status` of a damaged state.json, through the real CLI (issue 25
items 2 and 5 for state.json; issue 22 items 1 and 2): never an internal error, never a
hang, never "success" while the environment may run where `down` could not look."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from fabkit.clikit import run_main
from launch.cli import cli
from launch.machines.state import EnvState, HostState, StateStore, salvage

ENV = "lab"


@pytest.fixture
def nowhere(monkeypatch, tmp_path):
    """No cloud configured: no AWS region anywhere, no OpenStack cloud."""
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL",
                "OS_CLOUD", "OS_AUTH_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "no-clouds.yaml"))
    return tmp_path / "build"


@dataclass(frozen=True)
class Ran:
    exit_code: int
    output: str


@pytest.fixture
def invoke(capsys):
    """The CLI (its exit codes and messages) in a thread joined with a deadline: a FIFO
    opened for reading would block for ever, and a hang must fail the test, not stall
    the suite."""
    def call(build: Path, *args: str) -> Ran:
        box: dict[str, int] = {}

        def run() -> None:
            box["code"] = run_main(cli, [*args, "--build-dir", str(build)])

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(60)
        assert not t.is_alive(), f"launch {' '.join(args)} hung"
        out = capsys.readouterr()
        return Ran(box["code"], out.out + out.err)
    return call


def damage(build: Path, kind: str) -> Path:
    edir = build / "environments" / ENV
    edir.mkdir(parents=True)
    path = edir / "state.json"
    if kind == "nested":
        path.write_text("[" * 200_000)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
        (path / "x").write_text("{}")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 64)
    elif kind == "wrong-types":
        path.write_text(json.dumps({"environment": ENV, "provider": 7, "hosts": []}))
    return path


KINDS = ["nested", "dev-zero", "directory", "fifo", "binary", "wrong-types"]


@pytest.mark.parametrize("kind", KINDS)
def test_down_of_a_damaged_state_naming_no_provider_is_exit_2_and_kept(nowhere, invoke, kind):
    path = damage(nowhere, kind)
    r = invoke(nowhere, "down", ENV)
    assert r.exit_code == 2, r.output
    assert "internal error" not in r.output and "Traceback" not in r.output
    assert "could not be asked" in r.output and "--from ENV.yaml" in r.output
    assert os.path.lexists(path)                      # the only record is kept
    assert not (path.parent / ".lock").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_down_of_a_damaged_qemu_state_removes_it(nowhere, invoke, kind):
    """The bundle's plan.json names the provider: its scan finds nothing running, so the
    damaged file goes (exit 0), whatever it is (a directory, a FIFO, a link to a device)."""
    path = damage(nowhere, kind)
    bundle = path.parent / "bundle"
    bundle.mkdir()
    (bundle / "plan.json").write_text(json.dumps({"environment": ENV, "provider": "qemu"}))
    r = invoke(nowhere, "down", ENV)
    assert r.exit_code == 0, r.output
    assert "(damaged)" in r.output and "qemu" in r.output
    assert not os.path.lexists(path) and Path("/dev/zero").exists()
    assert not bundle.exists()


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory", "nested"])
def test_status_of_a_damaged_state_is_exit_2_naming_it(nowhere, invoke, kind):
    damage(nowhere, kind)
    r = invoke(nowhere, "status", ENV)
    assert r.exit_code == 2, r.output
    assert "damaged state file" in r.output and f"launch down {ENV}" in r.output


def test_a_truncated_state_still_names_provider_and_settings(tmp_path):
    """The provider, the settings and spec_path are written before the hosts."""
    store = StateStore(tmp_path)
    store.save(EnvState(environment=ENV, provider="aws", spec_path="/x/lab.yaml",
                        network={"settings": {"region": "eu-west-1", "subnet_id": "s"}},
                        hosts={f"h{i}": HostState(f"h{i}", f"10.0.0.{i}") for i in range(50)}))
    text = store.path.read_text()
    assert text.index('"provider"') < text.index('"region"') < text.index('"hosts"')
    store.path.write_text(text[:text.index('"hosts"') + 40])
    saved = salvage(store.path)
    assert (saved.provider, saved.spec_path) == ("aws", "/x/lab.yaml")
    assert saved.settings["region"] == "eu-west-1"


def test_down_of_a_never_seen_environment_says_how_to_point_it(nowhere, invoke):
    r = invoke(nowhere, "down", "never-seen")
    assert r.exit_code == 2
    assert "unknown environment 'never-seen'" in r.output and "--from ENV.yaml" in r.output


def test_a_second_down_asks_where_the_first_removed_it(nowhere, invoke):
    """`down` twice is clean: the first leaves where the environment ran (removed.json),
    so the second asks there and answers "nothing to remove" (exit 0) instead of saying
    the other providers could not be asked; `up` forgets it."""
    edir = nowhere / "environments" / ENV
    StateStore(edir).save(EnvState(environment=ENV, provider="qemu"))
    first = invoke(nowhere, "down", ENV)
    assert first.exit_code == 0, first.output
    assert json.loads((edir / "removed.json").read_text())["provider"] == "qemu"
    again = invoke(nowhere, "down", ENV)
    assert again.exit_code == 0, again.output
    assert "nothing to remove" in again.output and "qemu" in again.output
