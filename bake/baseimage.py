"""The local Debian 12 cloud base image (qcow2) that the qemu provider bakes from.

Built with debootstrap straight onto a partitioned raw disk (one MBR partition, ext4
labelled ``root``, GRUB on the MBR), so it boots as an ordinary VM without ``-kernel``.
It carries cloud-init (datasources NoCloud, ConfigDrive, OpenStack, Ec2), an SSH server,
sudo, growpart (the root partition grows to the disk), a serial console on ttyS0,
cloud-init's default user named `fabperf` (passwordless sudo, password locked: the user
that key pairs and NoCloud meta-data public-keys authorise), and nothing per-machine: no
SSH host keys, an empty machine-id, no cloud-init state, no apt lists.

Behind a TLS-intercepting proxy (as on the fabperf build machines, where npm's HTTPS is
re-signed by a proxy CA) pass that proxy's CA with ``--extra-ca FILE``: it goes into the
image's trust store (/usr/local/share/ca-certificates), so every later bake and every VM
trusts it. Default: no extra CA.

Cached by content: the hash of the inputs (suite, packages, mirror, extra CA certificates,
``BUILDER_VERSION``) names the file, so a second call with the same inputs returns at once.

``build/base/base-image.json`` (written after every successful build or cache hit) is what
the qemu bake profile reads::

    {
      "path": "/abs/path/build/base/debian-12-<hash12>.qcow2",   # ABSOLUTE path
      "path_relative": "build/base/debian-12-<hash12>.qcow2",    # relative to the repo root
      "sha256": "<hex of the qcow2 file>",
      "format": "qcow2",
      "size_bytes": 123,
      "virtual_size_gb": 3,
      "inputs": {"suite": "bookworm", "mirror": "...", "packages": [...],
                 "extra_cas": [{"name": "...", "sha256": "..."}], "builder_version": "1"},
      "inputs_hash": "<hex>",
      "built_at": "2026-01-01T00:00:00+00:00"
    }

A user-provided base image (an official Debian/Ubuntu cloud image, file or URL + sha256)
is the qemu profile's ``base_image`` setting and bypasses this module entirely.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from bake.chroot import chroot_mounts, remove_tree, umount, unlink_tree
from fabkit import inputs, runner
from fabkit.atomic import write_atomic
from fabkit.errors import ExternalError, InputError
from fabkit.hashing import sha256_file

log = logging.getLogger("fabperf.baseimage")

# Bump when the recipe below changes in a way that changes the image.
BUILDER_VERSION = "6"

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES: tuple[str, ...] = (
    "systemd-sysv", "udev", "openssh-server", "cloud-init",
    # debootstrap misses this virtual dependency of cloud-init
    "python3-cffi-backend",
    "linux-image-cloud-amd64", "ifupdown", "netbase", "isc-dhcp-client", "iproute2",
    "curl", "ca-certificates",
    # minbase lacks sudo; cloud-init's `users: sudo:` and Packer's `sudo poweroff` need it
    "sudo",
    # growpart: cloud-init grows the root partition to the disk (image.yaml disk_size_gb)
    "cloud-guest-utils",
    # What every fabperf image's common/base.sh and common/exporters.sh install anyway:
    # installed natively here, they cost a bake under TCG nothing (apt under emulation takes
    # minutes). The scripts still install them on cloud bases, which lack them.
    "chrony", "jq", "procps", "less", "prometheus-node-exporter",
    "prometheus-process-exporter",
)
DATASOURCES: tuple[str, ...] = ("NoCloud", "ConfigDrive", "OpenStack", "Ec2", "None")
DISK_SIZE_GB = 3
ADMIN_USER = "fabperf"   # cloud-init's default user (launch's SSH user)
JSON_NAME = "base-image.json"


@dataclass(frozen=True)
class ExtraCA:
    """One extra CA certificate to trust inside the image."""

    name: str        # file name in the image, ends in .crt
    sha256: str
    pem: str


@dataclass(frozen=True)
class BaseImageInputs:
    """Everything that determines the image's content."""

    suite: str
    mirror: str
    packages: tuple[str, ...]
    extra_cas: tuple[ExtraCA, ...]
    builder_version: str = BUILDER_VERSION

    def to_json(self) -> dict[str, object]:
        """The inputs as recorded in base-image.json (CA contents by hash only)."""
        return {
            "suite": self.suite,
            "mirror": self.mirror,
            "packages": list(self.packages),
            "extra_cas": [{"name": c.name, "sha256": c.sha256} for c in self.extra_cas],
            "builder_version": self.builder_version,
            "datasources": list(DATASOURCES),
        }

    def digest(self) -> str:
        """A stable hash of the inputs: the cache key."""
        doc = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(doc.encode()).hexdigest()


@dataclass(frozen=True)
class BaseImage:
    """A built (or cached) base image."""

    path: Path
    sha256: str
    inputs: BaseImageInputs
    cached: bool
    seconds: float

    def to_json(self, repo_root: Path | None = None) -> dict[str, object]:
        """The base-image.json document."""
        abspath = self.path.resolve()
        rel = None
        if repo_root is not None:
            try:
                rel = str(abspath.relative_to(repo_root.resolve()))
            except ValueError:
                rel = None
        return {
            "path": str(abspath),
            "path_relative": rel,
            "sha256": self.sha256,
            "format": "qcow2",
            "size_bytes": abspath.stat().st_size,
            "virtual_size_gb": DISK_SIZE_GB,
            "inputs": self.inputs.to_json(),
            "inputs_hash": self.inputs.digest(),
        }


def load_extra_cas(paths: Sequence[Path]) -> tuple[ExtraCA, ...]:
    """Read PEM CA certificates given on the command line; each must hold a certificate."""
    cas = []
    for i, p in enumerate(paths):
        # the input boundary: a regular file, at most 1 MiB, UTF-8 (a CA bundle is text)
        pem = inputs.read_text(Path(p), what="CA certificate (--extra-ca)", max_bytes=2**20)
        if "-----BEGIN CERTIFICATE-----" not in pem:
            raise InputError.field(p, "--extra-ca", "a PEM certificate (BEGIN CERTIFICATE)",
                                   pem[:40])
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(p).stem) or "ca"
        cas.append(ExtraCA(f"fabperf-extra-{i}-{stem}.crt",
                           hashlib.sha256(pem.encode()).hexdigest(), pem))
    return tuple(cas)


def make_inputs(mirror: str | None = None,
                extra_ca_paths: Sequence[Path] = ()) -> BaseImageInputs:
    """The inputs for a build from command-line options."""
    mirror = (mirror or DEFAULT_MIRROR).rstrip("/")
    if not re.match(r"^(https?|file)://", mirror):
        raise InputError.field(None, "--mirror", "an http(s):// or file:// URL", mirror)
    return BaseImageInputs(SUITE, mirror, PACKAGES, load_extra_cas(extra_ca_paths))


def image_path(base_dir: Path, inputs: BaseImageInputs) -> Path:
    """build/base/debian-12-<hash12>.qcow2."""
    return base_dir / f"debian-12-{inputs.digest()[:12]}.qcow2"


def read_json(base_dir: Path) -> dict[str, object] | None:
    """The current base-image.json, or None when no base image was built."""
    p = base_dir / JSON_NAME
    if not p.exists():
        return None
    return json.loads(p.read_text())


def _write_json(base_dir: Path, image: BaseImage, repo_root: Path | None) -> None:
    doc = image.to_json(repo_root)
    doc["built_at"] = _dt.datetime.fromtimestamp(
        image.path.stat().st_mtime, tz=_dt.UTC).isoformat(timespec="seconds")
    # Next to the image: the sha256 of a 700 MB file is not recomputed on every cache hit.
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    write_atomic(base_dir / JSON_NAME, text)
    write_atomic(image.path.with_suffix(".json"), text)


def build_base_image(
    *,
    base_dir: Path,
    log_dir: Path,
    inputs: BaseImageInputs,
    out: Path | None = None,
    repo_root: Path | None = None,
    force: bool = False,
) -> BaseImage:
    """Build the base image unless one with the same inputs exists; return it.

    ``out`` additionally places a copy (hard link when possible) at that path.
    Requires root (debootstrap, loop devices, mount, chroot).
    """
    start = time.monotonic()
    base_dir.mkdir(parents=True, exist_ok=True)
    target = image_path(base_dir, inputs)
    side = target.with_suffix(".json")
    if target.exists() and side.exists() and not force:
        recorded = json.loads(side.read_text())
        image = BaseImage(target, str(recorded["sha256"]), inputs, True,
                          time.monotonic() - start)
    else:
        if os.geteuid() != 0:
            raise ExternalError(
                "bake base-image needs root (debootstrap, loop devices, mount, chroot)",
                hint="run it as root, or give the qemu profile a ready base_image "
                     "(an official Debian cloud qcow2 with its sha256)")
        log_path = log_dir / f"base-image-{inputs.digest()[:12]}.log"
        work = base_dir / f"work-{inputs.digest()[:12]}"
        try:
            _build(inputs, work, target, log_path)
        finally:
            remove_tree(work, log_path)
        image = BaseImage(target, sha256_file(target), inputs, False, time.monotonic() - start)
    _write_json(base_dir, image, repo_root)
    if out is not None and out.resolve() != target.resolve():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.unlink(missing_ok=True)
        try:
            os.link(target, out)
        except OSError:
            runner.run(["cp", "--sparse=always", target, out], what="copy base image")
    return image


# --- the recipe ----------------------------------------------------------------------

def _build(inputs: BaseImageInputs, work: Path, target: Path, log_path: Path) -> None:
    """debootstrap onto a loop-mounted raw disk, install GRUB, convert to qcow2."""
    if work.exists():
        remove_tree(work, log_path)  # leftovers of an interrupted build
    work.mkdir(parents=True)
    raw = work / "disk.raw"
    mnt = work / "root"
    mnt.mkdir()
    with open(raw, "wb") as f:
        f.truncate(DISK_SIZE_GB * 1024**3)

    def run(argv: Sequence[str | os.PathLike[str]], what: str, **kw):
        log.info("base image: %s", what)
        return runner.run(argv, log_path=log_path, what=what, **kw)

    run(["sfdisk", "--quiet", raw], "partition the disk", input="label: dos\n,,L,*\n")
    with _loop_device(raw, log_path) as loop:
        part = f"{loop}p1"
        run(["mkfs.ext4", "-q", "-L", "root", part], "make the root filesystem")
        with _mounted(part, mnt, log_path):
            run(["debootstrap", "--variant=minbase", f"--include={','.join(inputs.packages)}",
                 inputs.suite, mnt, inputs.mirror],
                "debootstrap (about 2 minutes)", timeout=1800)
            _configure(mnt, inputs)
            with chroot_mounts(mnt, log_path):
                chroot: list[str | os.PathLike[str]] = ["chroot", mnt]
                env = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"}
                if inputs.extra_cas:
                    run([*chroot, "update-ca-certificates"], "trust the extra CAs", env=env)
                # grub-pc's own upgrades inside a VM then target the virtio disk quietly.
                run([*chroot, "debconf-set-selections"], "preseed grub-pc", env=env,
                    input="grub-pc grub-pc/install_devices multiselect /dev/vda\n"
                          "grub-pc grub-pc/install_devices_empty boolean true\n")
                # Up to date with -updates and -security here, natively: an upgrade in a bake
                # runs under emulation (the ca-certificates trigger alone took 4 min there).
                run([*chroot, "apt-get", "update", "-q"], "apt-get update", env=env,
                    timeout=1200)
                run([*chroot, "apt-get", "dist-upgrade", "-y", "-q", "--no-install-recommends"],
                    "upgrade to -updates/-security", env=env, timeout=1200)
                run([*chroot, "apt-get", "install", "-y", "-q", "--no-install-recommends",
                     "grub-pc"], "install grub-pc", env=env, timeout=1200)
                run([*chroot, "grub-install", "--target=i386-pc", loop], "grub-install",
                    env=env)
                run([*chroot, "update-grub"], "update-grub", env=env)
                _fix_grub_root(mnt / "boot/grub/grub.cfg")
                run([*chroot, "apt-get", "clean"], "apt-get clean", env=env)
            _scrub(mnt)
            # Discard freed blocks so the compressed qcow2 does not carry deleted .debs.
            run(["fstrim", mnt], "fstrim", check=False)
    tmp = target.with_name(f".{target.name}.tmp")
    run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", raw, tmp],
        "convert to compressed qcow2", timeout=1800)
    os.replace(tmp, target)


def _configure(root: Path, inputs: BaseImageInputs) -> None:
    """Files that make the tree a cloud image: fstab, network, datasources, grub, apt."""
    (root / "etc/fstab").write_text("LABEL=root / ext4 errors=remount-ro 0 1\n")
    (root / "etc/hostname").write_text("debian\n")
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")
    # cloud-init renders its network config to interfaces.d/50-cloud-init for ifupdown.
    (root / "etc/network/interfaces").write_text(
        "auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n")
    (root / "etc/network/interfaces.d").mkdir(parents=True, exist_ok=True)
    ds = root / "etc/cloud/cloud.cfg.d/90-fabperf-datasources.cfg"
    ds.write_text("# written by fabperf bake base-image\n"
                  f"datasource_list: [{', '.join(DATASOURCES)}]\n"
                  # minbase has no `locales`: generating en_US.UTF-8 would fail cloud-init
                  "locale: false\n"
                  # sudo warns "unable to resolve host" without a 127.0.1.1 line
                  "manage_etc_hosts: localhost\n"
                  # The admin user that key pairs (EC2, OpenStack) and NoCloud's meta-data
                  # public-keys authorise: the same name on every provider.
                  "system_info:\n"
                  "  default_user:\n"
                  f"    name: {ADMIN_USER}\n"
                  "    gecos: fabperf admin\n"
                  "    groups: [adm, sudo]\n"
                  "    sudo: ['ALL=(ALL) NOPASSWD:ALL']\n"
                  "    shell: /bin/bash\n"
                  "    lock_passwd: true\n")
    security = inputs.mirror + "-security" if inputs.mirror.endswith("/debian") else None
    sources = [f"deb {inputs.mirror} {inputs.suite} main",
               f"deb {inputs.mirror} {inputs.suite}-updates main"]
    if security:
        sources.append(f"deb {security} {inputs.suite}-security main")
    (root / "etc/apt/sources.list").write_text("\n".join(sources) + "\n")
    # A serial console: boot messages and cloud-init output land in QEMU's serial log.
    grub = root / "etc/default/grub"
    grub.parent.mkdir(parents=True, exist_ok=True)
    grub.write_text(
        "# written by fabperf bake base-image\n"
        "GRUB_DEFAULT=0\nGRUB_TIMEOUT=1\nGRUB_DISTRIBUTOR=Debian\n"
        'GRUB_CMDLINE_LINUX_DEFAULT=""\n'
        'GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8 net.ifnames=0"\n'
        'GRUB_TERMINAL="console serial"\n'
        'GRUB_SERIAL_COMMAND="serial --speed=115200 --unit=0 --word=8 --parity=no --stop=1"\n'
        "GRUB_DISABLE_OS_PROBER=true\n")
    for ca in inputs.extra_cas:
        dest = root / "usr/local/share/ca-certificates" / ca.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(ca.pem)
        dest.chmod(0o644)


def _fix_grub_root(cfg: Path) -> None:
    """update-grub in a chroot names the loop device; boot by filesystem label instead."""
    text = cfg.read_text()
    fixed, n = re.subn(r"root=(/dev/\S+|UUID=\S+)", "root=LABEL=root", text)
    if n == 0 and "root=LABEL=root" not in text:
        raise ExternalError(f"{cfg}: no root= kernel argument found to rewrite")
    cfg.write_text(fixed)


def _scrub(root: Path) -> None:
    """Remove everything that must be unique per machine or per boot."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    # An empty machine-id makes systemd generate a fresh one at first boot.
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for sub in ("var/lib/cloud", "var/lib/apt/lists", "tmp", "var/tmp"):
        d = root / sub
        if d.exists():
            for child in d.iterdir():
                unlink_tree(child)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    for logf in (root / "var/log").rglob("*"):
        if logf.is_file():
            logf.write_bytes(b"")
    (root / "root/.bash_history").unlink(missing_ok=True)


@contextmanager
def _loop_device(raw: Path, log_path: Path) -> Iterator[str]:
    res = runner.run(["losetup", "-fP", "--show", raw], log_path=log_path,
                     what="attach loop device")
    loop = res.stdout.strip()
    try:
        # The pN node does not appear on these machines without partx.
        runner.run(["partx", "-u", loop], log_path=log_path, what="partx", check=False)
        for _ in range(50):
            if Path(f"{loop}p1").exists():
                break
            time.sleep(0.1)
        else:
            raise ExternalError(f"partition {loop}p1 did not appear", hint=f"log: {log_path}")
        yield loop
    finally:
        runner.run(["losetup", "-d", loop], log_path=log_path, what="detach loop device",
                   check=False)


@contextmanager
def _mounted(dev: str, mnt: Path, log_path: Path) -> Iterator[None]:
    runner.run(["mount", dev, mnt], log_path=log_path, what="mount root filesystem")
    try:
        yield
    finally:
        umount(mnt, log_path)


def describe(image: BaseImage) -> dict[str, object]:
    """A short summary for the CLI."""
    return {"path": str(image.path), "sha256": image.sha256, "cached": image.cached,
            "seconds": round(image.seconds, 1), "inputs_hash": image.inputs.digest(),
            **{k: v for k, v in asdict(image.inputs).items() if k in ("suite", "mirror")}}
