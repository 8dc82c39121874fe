"""bake.goss over SSH, the way `bake build` calls it (ssh://USER@HOST:PORT --ssh-key KEY):
an sshd started from a copy of the Debian root filesystem on a loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from pathlib import Path

import chroot_rootfs
import pytest

from fabkit import runner

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="chroot and mounts need root"),
    pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_validate_over_ssh(tmp_path: Path) -> None:
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap not installed")
    root = chroot_rootfs.copy_rootfs(chroot_rootfs.base_rootfs(), tmp_path / "root")
    key = tmp_path / "id_ed25519"
    runner.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key])
    ak = root / "root/.ssh/authorized_keys"
    ak.parent.mkdir(mode=0o700, exist_ok=True)
    ak.write_text(Path(f"{key}.pub").read_text())
    ak.chmod(0o600)
    (root / "run/sshd").mkdir(parents=True, exist_ok=True)
    port = _free_port()
    spec = tmp_path / "spec.yaml"
    spec.write_text('file:\n  /etc/debian_version:\n    exists: true\n    contents: ["/^12/"]\n'
                    'user:\n  root:\n    uid: 0\ncommand:\n  id -u:\n    exit-status: 0\n'
                    '    stdout: ["/^0$/"]\n')
    bad = tmp_path / "bad.yaml"
    bad.write_text("file:\n  /etc/debian_version:\n    mode: \"0600\"\n")
    with chroot_rootfs.chroot_mounts(root):
        sshd = runner.spawn(["chroot", root, "/usr/sbin/sshd", "-D", "-e", "-p", str(port),
                             "-o", "ListenAddress=127.0.0.1", "-o", "UsePAM=no",
                             "-o", "PermitRootLogin=prohibit-password"],
                            log_path=tmp_path / "sshd.log")
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.2)
            base = [sys.executable, "-m", "bake.goss", "validate", "--host",
                    f"ssh://root@127.0.0.1:{port}", "--ssh-key", key]
            ok = runner.run(base + ["--spec", spec, "--junit", tmp_path / "ok.xml"], cwd=REPO,
                            check=False)
            failing = runner.run(base + ["--spec", bad], cwd=REPO, check=False)
        finally:
            sshd.terminate()
            sshd.wait(timeout=10)
    assert ok.returncode == 0, ok.stdout + ok.stderr + (tmp_path / "sshd.log").read_text()
    assert "5 checks, 0 failed" in ok.stdout
    assert failing.returncode == 1 and "FAIL file: /etc/debian_version: mode" in failing.stdout
