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
import logging
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
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
QCOW2_MAGIC = b"QFI\xfb"
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


UMOUNT_TRIES = 5          # a busy mount point is often busy for a moment (udev, a scanner)
UMOUNT_BACKOFF = 0.25     # seconds, doubled after each try: about 4 s in all


def _log(message: str) -> None:
    logging.getLogger("fabperf").info(message)


def unmount(mnt: Path, progress: Callable[[str], None] = _log) -> None:
    """Unmount ``mnt``: a busy unmount is tried again, then detached lazily (said through
    ``progress``); an unmount that cannot be done at all raises ExternalError."""
    delay, res = UMOUNT_BACKOFF, None
    for attempt in range(UMOUNT_TRIES):
        res = runner.run(["umount", mnt], check=False, what="umount")
        if res.ok or not os.path.ismount(mnt):
            return
        if attempt + 1 < UMOUNT_TRIES:
            time.sleep(delay)
            delay *= 2
    why = (res.stderr or res.stdout).strip().splitlines()[-1:] if res is not None else []
    lazy = runner.run(["umount", "--lazy", mnt], check=False, what="umount --lazy")
    if lazy.ok and not os.path.ismount(mnt):
        progress(f"WARNING: {mnt} stayed busy after {UMOUNT_TRIES} unmounts "
                 f"({why[0] if why else 'busy'}); detached it lazily: the kernel releases "
                 "it when the last process using it lets go")
        return
    raise ExternalError(f"cannot unmount {mnt}: {(lazy.stderr or lazy.stdout).strip()}",
                        hint=f"see what holds it (fuser -vm {mnt}), then `umount {mnt}`")


def _remove_workdir(tmp: Path, mnt: Path) -> None:
    """Remove the scan's work directory, never anything inside a mount point: a mount that
    could not be removed keeps the whole directory (and says where it is)."""
    if os.path.ismount(mnt):
        raise ExternalError(f"{mnt} is still mounted; left {tmp} in place (nothing deleted "
                            "inside a mount point)",
                            hint=f"`umount {mnt} && rm -r {tmp}` once it is free")
    shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def mounted_qcow2(image: Path, workdir: Path | None = None,
                  progress: Callable[[str], None] = _log) -> Iterator[Path]:
    """Mount a qcow2 disk's root partition read-only; yields the mount point. Needs root.

    On the way out the mount is removed (a busy one tried again, then detached lazily:
    ``progress`` says so), the loop device detached, then the work directory deleted;
    nothing is ever deleted inside a mount point."""
    image = Path(image)
    if not image.is_file():
        raise InputError.field(None, "IMAGE", "a qcow2 file", str(image))
    with open(image, "rb") as f:      # a regular file (is_file): no FIFO can block here
        magic = f.read(4)
    if magic != QCOW2_MAGIC:
        raise InputError.field(image, "IMAGE", "a qcow2 image (it starts with QFI\\xfb) or a "
                               "root filesystem directory", magic)
    if os.geteuid() != 0:
        raise ExternalError(f"scanning {image} needs root (losetup, mount)")
    tmp = Path(tempfile.mkdtemp(prefix="fabperf-imagescan-", dir=workdir))
    raw = tmp / "disk.raw"
    mnt = tmp / "root"
    failed = False
    try:
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
            try:
                if mounted:
                    unmount(mnt, progress)
            finally:
                # a loop device still in use (a lazy unmount) is detached when released
                runner.run(["losetup", "-d", loop], check=False, what="losetup -d")
    except BaseException:
        failed = True
        raise
    finally:
        try:
            _remove_workdir(tmp, mnt)
        except ExternalError:
            if not failed:  # the first error is the one to report
                raise


def scan_qcow2(path: Path, workdir: Path | None = None,
               progress: Callable[[str], None] = _log) -> list[Finding]:
    """Scan the root filesystem of a qcow2 image (what `bake build` calls after a qemu build)."""
    with mounted_qcow2(Path(path), workdir, progress) as root:
        return scan_root(root)


def scan(target: Path) -> list[Finding]:
    """A directory is scanned as a root filesystem, a file as a qcow2 disk."""
    target = Path(target)
    if target.is_dir():
        return scan_root(target)
    return scan_qcow2(target)
