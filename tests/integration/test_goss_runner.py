"""bake.goss executes goss specs for real: against a Debian root filesystem through the chroot
backend (a cached `debootstrap --variant=minbase bookworm` tree), and against this machine
through local://. One spec must pass, one must fail check by check; JUnit and exit codes."""

from __future__ import annotations

import os
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import chroot_rootfs
import pytest

from bake import goss
from fabkit import runner

REPO = Path(__file__).resolve().parents[2]

PASSING = """\
file:
  /etc/debian_version:
    exists: true
    mode: "0644"
    owner: root
    group: root
    filetype: file
    contents:
      - "/^12\\\\./"
  /bin:
    filetype: symlink
    linked-to: usr/bin
  /etc/no-such-file:
    exists: false
package:
  dpkg:
    installed: true
  openssh-server:
    installed: true
  no-such-package-fabperf:
    installed: false
user:
  root:
    exists: true
    uid: 0
    home: /root
    shell: /bin/bash
group:
  root:
    exists: true
    gid: 0
service:
  ssh:
    enabled: true
    running: false
command:
  debian release is {{.Vars.RELEASE}}:
    exec: "cat /etc/debian_version"
    exit-status: 0
    stdout:
      - "/^{{.Vars.RELEASE}}\\\\./"
      - "!bullseye"
port:
  tcp:22:
    listening: false
kernel-param:
  vm.swappiness:
    value: "1"
"""

FAILING = """\
file:
  /etc/debian_version:
    mode: "0777"
  /etc/passwd:
    contents:
      - "no-such-user-fabperf:"
package:
  no-such-package-fabperf:
    installed: true
user:
  no-such-user-fabperf:
    exists: true
group:
  root:
    gid: 4242
service:
  ssh:
    enabled: false
command:
  "false":
    exit-status: 0
  echo hello:
    exit-status: 3
    stdout:
      - "goodbye"
"""

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def debian_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cached minbase bookworm tree (debootstrap on first use; root needed)."""
    if os.geteuid() != 0:
        pytest.skip("chroot and debootstrap need root")
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap not installed (make deps)")
    runner.allow_subprocesses(True)
    log = tmp_path_factory.mktemp("debootstrap") / "debootstrap.log"
    return chroot_rootfs.base_rootfs(log_path=log)


def _spec(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_passing_spec_passes_in_a_chroot(debian_root: Path, tmp_path: Path) -> None:
    spec = _spec(tmp_path, "pass.yaml", PASSING)
    results = goss.validate(f"chroot://{debian_root}", [spec], variables={"RELEASE": "12"})
    failed = [f"{r.title}: {r.message}" for r in results if not r.ok]
    assert not failed, failed
    ran = [r for r in results if not r.skipped]
    assert len(ran) >= 20
    skipped = {(r.rtype, r.attribute) for r in results if r.skipped}
    assert skipped == {("port", "listening"), ("kernel-param", "value"), ("service", "running")}


def test_failing_spec_fails_every_check_in_a_chroot(debian_root: Path, tmp_path: Path) -> None:
    spec = _spec(tmp_path, "fail.yaml", FAILING)
    results = goss.validate(f"chroot://{debian_root}", [spec])
    assert results and all(not r.ok for r in results), [r.title for r in results if r.ok]
    by_title = {r.title: r.message for r in results}
    assert by_title["file: /etc/debian_version: mode"] == "expected '0777', found '0644'"
    assert by_title["command: false: exit-status"].startswith("expected 0, found 1")


def test_cli_exit_codes_and_junit(debian_root: Path, tmp_path: Path) -> None:
    good, bad = _spec(tmp_path, "pass.yaml", PASSING), _spec(tmp_path, "fail.yaml", FAILING)
    junit_ok, junit_bad = tmp_path / "ok.xml", tmp_path / "bad.xml"
    base = [sys.executable, "-m", "bake.goss", "validate", "--host", f"chroot://{debian_root}"]
    ok = runner.run(base + ["--spec", good, "--vars-json", '{"RELEASE": "12"}',
                            "--junit", junit_ok], cwd=REPO, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ET.parse(junit_ok).getroot().get("failures") == "0"
    bad_run = runner.run(base + ["--spec", bad, "--junit", junit_bad], cwd=REPO, check=False)
    assert bad_run.returncode == 1
    suite = ET.parse(junit_bad).getroot()
    assert int(suite.get("failures")) == int(suite.get("tests")) == 9
    assert "FAIL package: no-such-package-fabperf: installed" in bad_run.stdout


def test_cli_refuses_an_unknown_resource_type(debian_root: Path, tmp_path: Path) -> None:
    spec = _spec(tmp_path, "http.yaml",
                 "http:\n  http://localhost:9090/-/ready:\n    status: 200\n")
    res = runner.run([sys.executable, "-m", "bake.goss", "validate", "--host",
                      f"chroot://{debian_root}", "--spec", spec], cwd=REPO, check=False)
    assert res.returncode == 2 and "http" in res.stderr


def test_local_host(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "local.yaml", """\
file:
  /etc/os-release:
    exists: true
    contents: ["ID="]
command:
  uname -s:
    exit-status: 0
    stdout: ["Linux"]
""")
    results = goss.validate("local://", [spec])
    assert [r.ok for r in results] == [True, True, True, True]
