"""The README's first screen: two commands (the main job, the tests) that work as written in
a fresh Debian 12 root shell, and a main job that is the whole loop."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def first_block() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "README has no sh block"
    return [ln for ln in block.group(1).splitlines() if ln.strip() and not ln.startswith("#")]


def recipe(target: str) -> list[str]:
    lines = (REPO / "Makefile").read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"{target}:"))
    out = []
    for ln in lines[start + 1:]:
        if not ln.startswith("\t"):
            break
        out.append(ln.strip())
    return out


def test_two_commands_without_sudo() -> None:
    cmds = first_block()
    assert len(cmds) == 2, cmds
    assert all("sudo" not in c.split() for c in cmds)
    assert cmds[0].endswith("make deps lab") and cmds[1].endswith("make deps test")


def test_the_main_job_is_the_whole_loop() -> None:
    # bake what is missing (a prerequisite), launch + bootstrap, benchmark
    head = next(ln for ln in (REPO / "Makefile").read_text().splitlines()
                if ln.startswith("lab:"))
    assert "bake-images" in head.split("##")[0]
    steps = recipe("lab")
    assert [s.split()[1] for s in steps if s.startswith("$(BIN)/launch")] == \
        ["up", "status", "bench"]


def test_the_test_command_runs_every_test_tier() -> None:
    (cmd,) = recipe("test")
    assert cmd.startswith("$(BIN)/pytest tests") and "e2e" not in cmd
