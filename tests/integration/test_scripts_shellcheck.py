"""shellcheck (the real one) on every provisioning script and baked shell program."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fabkit import runner

REPO = Path(__file__).resolve().parents[2]
SHELL_FILES = sorted((REPO / "packer/scripts").rglob("*.sh")) + sorted(
    p for p in (REPO / "packer/files").rglob("*")
    if p.is_file() and p.read_bytes()[:2] == b"#!" and b"bash" in p.read_bytes().split(b"\n")[0])

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed"),
]


def test_there_is_something_to_check() -> None:
    names = {p.name for p in SHELL_FILES}
    assert {"base.sh", "fabric.sh", "caliper.sh", "monitor.sh", "lib.sh", "fabperf-seal",
            "fabperf-node-ready", "fabperf-keyscan"} <= names


@pytest.mark.parametrize("path", SHELL_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_shellcheck_clean(path: Path) -> None:
    # -x follows the `source=` directives into packer/files/common/lib.sh; default severity
    # (style included): a clean script has no finding at all.
    result = runner.run(["shellcheck", "-x", "--shell=bash", path], cwd=REPO, check=False)
    assert result.ok, f"shellcheck {path}:\n{result.stdout}{result.stderr}"
