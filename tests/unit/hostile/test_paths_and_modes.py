"""Issue 25, items 8 and 9: spec paths that escape are refused; the state's folders are
not writable by others whatever the umask."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hostile_testlib import REPO, assert_refused, run_cli

from launch.cli import cli

LOCAL = yaml.safe_load((REPO / "environments/local.yaml").read_text())


def _none(doc: dict[str, Any]) -> dict[str, Any]:
    doc["provider"] = "none"
    for i, h in enumerate(doc["placement"]["hosts"]):
        h["address"] = f"127.0.0.{10 + i}"
    return doc


def _module(value: str) -> Any:
    def change(doc: dict[str, Any]) -> dict[str, Any]:
        doc["caliper"]["rounds"][0]["workload"]["module"] = value
        return doc
    return change


def _image(value: str) -> Any:
    def change(doc: dict[str, Any]) -> dict[str, Any]:
        _none(doc)["placement"]["hosts"][0]["image"] = value
        return doc
    return change


@pytest.mark.parametrize(("change", "field"), [
    (_module("../../../../etc/shadow"), "caliper.rounds[0].workload.module"),
    (_module("/etc/shadow.js"), "caliper.rounds[0].workload.module"),
    (_module("workloads/../../../etc/x.js"), "caliper.rounds[0].workload.module"),
    (_module(".hidden/x.js"), "caliper.rounds[0].workload.module"),
    (_image("../../../../etc/passwd"), "placement.hosts[0].image"),
    (_image("/etc/passwd"), "placement.hosts[0].image"),
])
@pytest.mark.parametrize("command", ["render", "up"])
def test_a_spec_path_that_escapes_is_refused(tmp_path, capsys, change, field,
                                             command) -> None:
    spec = tmp_path / "env.yaml"
    spec.write_text(yaml.safe_dump(change(copy.deepcopy(LOCAL)), sort_keys=False))
    out, bdir = tmp_path / "out", tmp_path / "build"
    argv = [command, str(spec), *(["--out", str(out)] if command == "render" else
                                  ["--build-dir", str(bdir)])]
    assert_refused(run_cli(cli, argv, capsys), field)
    assert not out.exists() and not bdir.exists()


def test_the_workloads_in_use_still_pass(tmp_path, capsys) -> None:
    doc = _module("workloads/sub.dir/read_asset-2.js")(copy.deepcopy(LOCAL))
    spec = tmp_path / "env.yaml"
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    ran = run_cli(cli, ["render", str(spec), "--out", str(tmp_path / "out")], capsys)
    assert ran.code == 0, ran.err


def test_the_state_folders_are_not_writable_by_others_under_umask_000(tmp_path) -> None:
    # issue 25, item 9: `launch up` made build/, build/environments/ and the environment's
    # folder 0777 under umask 000 (mkdir's mode is filtered by the umask)
    import os
    import stat

    from launch.machines.state import EnvState, StateStore

    build = tmp_path / "build"
    edir = build / "environments" / "lab"
    old = os.umask(0)
    try:
        store = StateStore(edir)
        with store.lock():
            store.save(EnvState(environment="lab", provider="qemu"))
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (build, edir.parent, edir)}
    assert modes == {"build": 0o755, "environments": 0o755, "lab": 0o700}
    assert stat.S_IMODE((edir / "state.json").stat().st_mode) == 0o600
    # folders that exist already are not changed
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o750)
    os.chmod(mine, 0o750)
    StateStore(mine / "environments" / "x").save(EnvState(environment="x", provider="qemu"))
    assert stat.S_IMODE(mine.stat().st_mode) == 0o750


def test_make_dirs_sets_exact_modes(tmp_path: Path) -> None:
    import os
    import stat

    from fabkit.atomic import make_dirs

    old = os.umask(0o077)
    try:
        make_dirs(tmp_path / "a" / "b", mode=0o755, leaf_mode=0o700)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700
