"""Hygiene scan of a FINAL image (after Packer and fabperf-seal): what must never ship.

Finds private keys (PEM / OpenSSH key files outside the allowlist
packer/files/common/private-key-allowlist), SSH host keys, authorized_keys, a non-empty
machine-id, cloud-init instance state and per-environment material launch writes. Works on a
root filesystem directory or a qcow2 disk (converted to raw, attached with losetup -P, the root
partition mounted read-only; root needed; every command through fabkit.runner).

    python -m bake.imagescan ROOTFS_DIR_OR_QCOW2
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from fabkit import runner
from fabkit.errors import ExternalError, InputError

ALLOWLIST = Path(__file__).resolve().parents[1] / "packer/files/common/private-key-allowlist"
# A key file has the armour header on a line of its own (documentation and parsers that merely
# mention the header do not).
KEY_HEADER = re.compile(rb"^-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[ \t\r]*$", re.M)
SKIP_TOP = {"proc", "sys", "dev", "run"}
MAX_BYTES = 64 * 1024 * 1024     # larger files are binaries or data, not key files
PER_ENVIRONMENT = ("etc/fabperf/peer", "etc/fabperf/orderer", "etc/fabperf/bootstrap",
                   "etc/fabperf/peer.env", "etc/fabperf/orderer.env", "etc/fabperf/launch.json",
                   "etc/fabperf/caliper/networkconfig.yaml", "etc/fabperf/monitor/grafana.env",
                   "var/lib/fabperf/ready")


class Kind(StrEnum):
    """What a finding is about."""

    PRIVATE_KEY = "private-key"
    SSH_HOST_KEY = "ssh-host-key"
    AUTHORIZED_KEYS = "authorized-keys"
    MACHINE_ID = "machine-id"
    CLOUD_INIT_STATE = "cloud-init-state"
    PER_ENVIRONMENT = "per-environment"


@dataclass(frozen=True)
class Finding:
    """Something the image must not contain: the kind, the path inside the image, why."""

    kind: Kind
    path: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}: {self.detail}"


def load_allowlist(path: Path = ALLOWLIST) -> list[re.Pattern[str]]:
    """The allowlist's regular expressions (whole-path matches inside the image)."""
    patterns = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            patterns.append(re.compile(line))
        except re.error as exc:
            raise InputError.field(path, f"line {n}", "a regular expression", line) from exc
    return patterns


def _walk_files(root: Path) -> Iterator[Path]:
    """Regular files below root, not following symlinks, skipping the kernel's filesystems."""
    for top in sorted(root.iterdir()):
        if top.name in SKIP_TOP or top.is_symlink():
            continue
        if top.is_file():
            yield top
            continue
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            dirnames.sort()
            for name in filenames:
                yield Path(dirpath) / name


def _has_key(path: Path) -> bool:
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0 or st.st_size > MAX_BYTES:
            return False
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return False
    if b"\0" in data[:8192]:  # binary file (as grep -I)
        return False
    return KEY_HEADER.search(data) is not None


def scan_root(root: Path, allowlist: list[re.Pattern[str]] | None = None) -> list[Finding]:
    """Scan a root filesystem directory; an empty list means the image is clean."""
    root = Path(root)
    if not (root / "etc").is_dir():
        raise InputError.field(None, "ROOT", "a root filesystem directory (with etc/)", str(root))
    allow = load_allowlist() if allowlist is None else allowlist
    findings: list[Finding] = []

    def inside(p: Path) -> str:
        return "/" + str(p.relative_to(root))

    for f in sorted((root / "etc/ssh").glob("ssh_host_*")):
        findings.append(Finding(Kind.SSH_HOST_KEY, inside(f),
                                "host keys must be generated per instance at first boot"))
    mid = root / "etc/machine-id"
    if mid.is_file() and mid.read_text(errors="replace").strip() not in ("", "uninitialized"):
        findings.append(Finding(Kind.MACHINE_ID, inside(mid),
                                "not empty: every instance would share one machine-id"))
    cloud = root / "var/lib/cloud"
    for rel in ("instance", "data/instance-id"):
        p = cloud / rel
        if p.exists() or p.is_symlink():
            findings.append(Finding(Kind.CLOUD_INIT_STATE, inside(p),
                                    "cloud-init would not treat the next boot as a first boot"))
    if (cloud / "instances").is_dir() and any((cloud / "instances").iterdir()):
        findings.append(Finding(Kind.CLOUD_INIT_STATE, inside(cloud / "instances"), "not empty"))
    for home in [root / "root", *sorted((root / "home").glob("*"))]:
        ak = home / ".ssh/authorized_keys"
        if ak.is_file() and ak.stat().st_size > 0:
            findings.append(Finding(Kind.AUTHORIZED_KEYS, inside(ak), "build credentials left"))
    for rel in PER_ENVIRONMENT:
        if (root / rel).exists():
            findings.append(Finding(Kind.PER_ENVIRONMENT, "/" + rel,
                                    "written by launch at boot, never baked"))
    for f in _walk_files(root):
        if not _has_key(f):
            continue
        path = inside(f)
        if path.startswith("/etc/ssh/ssh_host_"):
            continue  # reported above
        if any(p.search(path) for p in allow):  # as bash =~ in fabperf-keyscan
            continue
        findings.append(Finding(Kind.PRIVATE_KEY, path, "PEM/OpenSSH private key"))
    return findings


@contextlib.contextmanager
def mounted_qcow2(image: Path, workdir: Path | None = None) -> Iterator[Path]:
    """Mount a qcow2 disk's root partition read-only; yields the mount point. Needs root."""
    image = Path(image)
    if not image.is_file():
        raise InputError.field(None, "IMAGE", "a qcow2 file", str(image))
    if os.geteuid() != 0:
        raise ExternalError(f"scanning {image} needs root (losetup, mount)")
    with tempfile.TemporaryDirectory(prefix="fabperf-imagescan-", dir=workdir) as tmp:
        raw = Path(tmp) / "disk.raw"
        mnt = Path(tmp) / "root"
        mnt.mkdir()
        runner.run(["qemu-img", "convert", "-O", "raw", image, raw], what="qemu-img convert")
        loop = runner.run(["losetup", "-fP", "--show", "--read-only", raw],
                          what="losetup").stdout.strip()
        mounted = False
        try:
            runner.run(["partx", "-u", loop], check=False, what="partx")
            parts = runner.run(["lsblk", "-lnpbo", "NAME,SIZE,TYPE", loop],
                               what="lsblk").stdout.splitlines()
            candidates = []
            for line in parts:
                cols = line.split()
                if len(cols) != 3 or cols[2] != "part":
                    continue
                # blkid -p probes the device itself (no udev database in containers)
                fstype = runner.run(["blkid", "-p", "-o", "value", "-s", "TYPE", cols[0]],
                                    check=False).stdout.strip()
                if fstype in ("ext4", "ext3", "xfs", "btrfs"):
                    candidates.append((int(cols[1]), cols[0]))
            if not candidates:
                raise ExternalError(f"{image}: no Linux root filesystem found on {loop}")
            device = max(candidates)[1]
            # noload: never replay an ext4 journal of the image being inspected
            res = runner.run(["mount", "-o", "ro,noload", device, mnt], check=False, what="mount")
            if not res.ok:
                runner.run(["mount", "-o", "ro", device, mnt], what="mount")
            mounted = True
            yield mnt
        finally:
            if mounted:
                runner.run(["umount", mnt], check=False)
            runner.run(["losetup", "-d", loop], check=False)


def scan_qcow2(path: Path, workdir: Path | None = None) -> list[Finding]:
    """Scan the root filesystem of a qcow2 image (what `bake build` calls after a qemu build)."""
    with mounted_qcow2(Path(path), workdir) as root:
        return scan_root(root)


def scan(target: Path) -> list[Finding]:
    """A directory is scanned as a root filesystem, a file as a qcow2 disk."""
    target = Path(target)
    if target.is_dir():
        return scan_root(target)
    return scan_qcow2(target)
