"""Issue 25, acceptance 3: every option of every `launch` and `bake` command, walked from the
click command tree, gets NaN where it takes a number and a FIFO and a 50 MB file where it
takes a file. Each run ends in < 5 s with exit 2 and an error that names the option (or the
file), never an internal error, never a hang.

The walk is the point: a new command or option is classified automatically by its click
type (numbers, input files, directories, flags, choices); an option typed as plain text must
be listed in ROLES, so a new one that takes a number or a file in a string cannot be
forgotten (test_every_option_is_classified fails until it is listed)."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from hostile_testlib import REPO, assert_refused, big_file, fifo, run_cli

from bake.cli import cli as bake_cli
from fabkit.clikit import FiniteFloat, FiniteFloatList, InputFile
from launch.cli import cli as launch_cli
from launch.lifecycle import up
from launch.machines.state import EnvState, StateStore

PROGRAMS = {"launch": launch_cli, "bake": bake_cli}
SKIPPED_NAMES = {"verbose", "quiet", "help", "output"}
NUMERIC = (click.types.IntParamType, click.types.FloatParamType, FiniteFloat, FiniteFloatList)

SPEC = REPO / "environments/local.yaml"
BYOF = REPO / "environments/byof.yaml"
CALIBRATION = REPO / "tests/data/size/calibration-local.json"
GROUP = REPO / "tests/data/compare/v2.5.12/local"
GOSS = next((REPO / "images").rglob("goss/*.yaml"))

# Options typed as plain text (click's STRING), by "program command... param": what they
# take. "text": names, refs, labels, URLs (no number, no file). ("number", TEMPLATE): the
# hostile number goes into TEMPLATE. ("file"|"source", TEMPLATE): a path goes into
# TEMPLATE (a source may be big: only the FIFO must be refused). "json": JSON text.
ROLES: dict[str, str | tuple[str, str]] = {
    "launch bench env": "text",
    "launch bench rounds": "text",
    "launch bench workers_per_vm": ("number", "{}"),
    "launch bench thresholds": ("number", "worker_cpu={}"),
    "launch bisect good": "text",
    "launch bisect bad": "text",
    "launch bisect round_label": "text",
    "launch bisect name": "text",
    "launch compare refs": "text",
    "launch compare sources": ("source", "v3.0.0={}"),
    "launch compare versions": "text",          # X.Y.Z, checked by the spec (item 7)
    "launch compare rounds": "text",
    "launch compare thresholds": ("number", "worker_cpu={}"),
    "launch down env": "text",
    "launch down region": "text",               # checked by the providers' region rule
    "launch gc older_than": ("number", "{}"),
    "launch gc providers": "text",
    "launch gc regions": "text",
    "launch results compare dirs": ("file", "{}"),
    "launch results compare rounds": "text",
    "launch results list environment": "text",
    "launch size round_label": "text",
    "launch size thresholds": ("number", "worker_cpu={}"),
    "launch ssh env": "text",
    "launch ssh host": "text",
    "launch ssh command": "text",
    "launch status env": "text",
    "launch up only": "text",
    "launch up provider": "text",
    "launch validate env": "text",
    "bake base-image mirror": "text",
    "bake goss validate hostspec": "text",
    "bake goss validate vars_json": "json",
    "bake render packer_version": "text",
    "bake list providers": "text",
    **{f"bake {c} provider": "text" for c in ("build", "render", "validate")},
    **{f"bake {c} images": "text" for c in ("build", "render", "validate")},
    **{f"bake {c} var_texts": ("number", "cpus={}")
       for c in ("build", "list", "render", "validate")},
    **{f"bake {c} version_sets": ("source", "FABRIC_SOURCE={}")
       for c in ("build", "list", "render", "validate")},
}
# Paths typed as files that fabperf writes, not reads.
OUTPUTS = {"bake base-image out", "bake goss validate junit"}

# A valid value for the other arguments of each command (the hostile one replaces its own);
# "{build}", "{out}" are per-test directories. Flags keep a command from doing real work.
VALID: dict[str, dict[str, object]] = {
    "launch bench": {"env": "local", "build_dir": "{build}"},
    "launch bisect": {"env_file": SPEC, "good": "a", "bad": "b", "round_label": "create",
                      "build_dir": "{build}"},
    "launch byof": {"byof_file": BYOF, "check_only": True, "build_dir": "{build}"},
    "launch compare": {"env_file": SPEC, "refs": ["v2.5.12", "v3.0.0"], "dry_run": True,
                       "out": "{out}", "build_dir": "{build}"},
    "launch down": {"env": "local", "build_dir": "{build}"},
    "launch gc": {"dry_run": True, "build_dir": "{build}"},
    "launch render": {"env_file": SPEC, "out": "{out}"},
    "launch results compare": {"dirs": [GROUP], "no_html": True},
    "launch results show": {},
    "launch size": {"env_file": SPEC, "target_tps": "10", "from_file": CALIBRATION},
    "launch up": {"env_file": SPEC, "build_dir": "{build}"},
    "bake base-image": {"build_dir": "{build}"},
    # aws: a qemu bake without a base image stops at that first (exit 2, rightly)
    "bake build": {"provider": "aws", "build_dir": "{build}"},
    "bake list": {"build_dir": "{build}"},
    "bake render": {"provider": "aws", "build_dir": "{build}", "out": "{out}"},
    "bake validate": {"provider": "aws", "build_dir": "{build}"},
    "bake goss validate": {"hostspec": "local://", "specs": [GOSS]},
    "bake imagescan": {},
}


def _commands() -> Iterator[tuple[str, click.Command]]:
    def walk(group: click.Group, prefix: str) -> Iterator[tuple[str, click.Command]]:
        for name, cmd in sorted(group.commands.items()):
            if isinstance(cmd, click.Group):
                yield from walk(cmd, f"{prefix} {name}")
            else:
                yield f"{prefix} {name}", cmd
    for prog, group in PROGRAMS.items():
        yield from walk(group, prog)


def _role(command: str, p: click.Parameter) -> str | tuple[str, str] | None:
    """What a parameter takes (None: nothing this test attacks: flags, choices, dirs)."""
    key = f"{command} {p.name}"
    t = p.type
    if isinstance(p, click.Option) and p.is_flag or isinstance(t, click.Choice):
        return None
    if isinstance(t, NUMERIC):
        return ("number", "{}")
    if isinstance(t, click.Path):
        if key in OUTPUTS or not t.file_okay:
            return None
        return ("file", "{}")
    return ROLES[key]


@dataclass(frozen=True)
class Case:
    command: str
    param: str
    hostile: str        # nan | inf | fifo | big | json-nan
    template: str

    @property
    def id(self) -> str:
        return f"{self.command} {self.param} {self.hostile}"


def _cases() -> list[Case]:
    out = []
    for command, cmd in _commands():
        for p in cmd.params:
            if p.name in SKIPPED_NAMES:
                continue
            role = _role(command, p)
            if role is None or role == "text":
                continue
            kind, template = role if isinstance(role, tuple) else (role, "{}")
            hostile = {"number": ("nan", "inf"), "file": ("fifo", "big"), "source": ("fifo",),
                       "json": ("json-nan",)}[kind]
            out += [Case(command, str(p.name), h, template) for h in hostile]
    return out


CASES = _cases()


def test_every_option_is_classified() -> None:
    missing = []
    for command, cmd in _commands():
        for p in cmd.params:
            if p.name in SKIPPED_NAMES:
                continue
            try:
                _role(command, p)
            except KeyError:
                missing.append(f"{command} {p.name}")
    assert not missing, f"classify these in ROLES (text, a number or a file): {missing}"
    # a file fabperf reads is an InputFile (FIFOs and devices refused while parsing)
    plain = [f"{c} {p.name}" for c, cmd in _commands() for p in cmd.params
             if isinstance(p.type, click.Path) and p.type.file_okay
             and f"{c} {p.name}" not in OUTPUTS and not isinstance(p.type, InputFile)]
    assert not plain, f"use fabkit.clikit.input_file()/input_path() for: {plain}"
    # and the table names nothing that is gone
    known = {f"{c} {p.name}" for c, cmd in _commands() for p in cmd.params}
    assert set(ROLES) <= known, sorted(set(ROLES) - known)


def test_the_walk_covers_every_command_that_takes_a_number_or_a_file() -> None:
    attacked = {c.command for c in CASES}
    assert attacked == set(VALID), (sorted(attacked - set(VALID)), sorted(set(VALID) - attacked))


def _argv(case: Case, cmd: click.Command, value: str, tmp: Path) -> list[str]:
    fill = {"{build}": str(tmp / "build"), "{out}": str(tmp / "out")}
    values: dict[str, object] = {**VALID[case.command], case.param: value}
    args: list[str] = case.command.split()[1:]
    for p in cmd.params:
        if p.name not in values:
            continue
        v = values[p.name]
        items = v if isinstance(v, list) else [v]
        if p.name == case.param and isinstance(VALID[case.command].get(p.name), list):
            items = [*VALID[case.command][p.name], value]  # type: ignore[misc]
        items = [fill.get(str(i), str(i)) for i in items]
        if isinstance(p, click.Argument):
            args += items
        elif p.is_flag:           # type: ignore[union-attr]
            args.append(p.opts[0])
        else:
            for i in items:
                args += [p.opts[0], i]
    return args


@pytest.fixture
def launched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`launch bench local`'s recorded environment; no machine may be asked."""
    spec = tmp_path / "local.yaml"
    shutil.copy(SPEC, spec)
    StateStore(tmp_path / "build" / "environments" / "local").save(EnvState(
        environment="local", provider="qemu", spec_path=str(spec),
        spec_sha256=hashlib.sha256(spec.read_bytes()).hexdigest()))

    def touched(*args: object, **kwargs: object) -> None:
        pytest.fail("a machine was asked before the options were checked")

    monkeypatch.setattr(up, "status", touched)
    monkeypatch.setattr(up, "target", touched)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_value(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                       launched: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FABPERF_BUILD_DIR", str(tmp_path / "build"))
    prog, *_ = case.command.split()
    cmd = dict(_commands())[case.command]
    param = next(p for p in cmd.params if p.name == case.param)
    fifos: tuple[Path, ...] = ()
    if case.hostile in ("nan", "inf"):
        value = case.template.format(case.hostile)
        names = [*param.opts, case.hostile]
    elif case.hostile == "json-nan":
        value = '{"x": NaN}'
        names = [*param.opts]
    else:
        path = fifo(tmp_path / "hostile") if case.hostile == "fifo" else \
            big_file(tmp_path / "hostile.yaml")
        fifos = (path,) if case.hostile == "fifo" else ()
        value = case.template.format(path)
        names = [str(path)]
    ran = run_cli(PROGRAMS[prog], _argv(case, cmd, value, tmp_path), capsys, fifos=fifos)
    assert_refused(ran)
    assert any(n in ran.err for n in names), (names, ran.err[-1500:])
    assert not (tmp_path / "out").exists()
