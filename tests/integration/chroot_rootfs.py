"""Run an image's provisioning scripts for real in a chroot of a Debian root filesystem.

The integration stand-in for a Packer build when no VM is wanted: a cached
`debootstrap --variant=minbase bookworm` tree is copied, /proc /sys /dev are bind-mounted,
the host's extra CA certificates go where Packer puts them (/tmp/fabperf/ca, so base.sh's
trust-store path is exercised through the TLS-intercepting proxy), a policy-rc.d stops
packages from starting services, and the image.yaml `files` and `scripts` run as Packer
would run them (root, the image's `versions` plus FABPERF_* as environment).

Usable from tests and by hand (root needed):
    .venv/bin/python tests/integration/chroot_rootfs.py IMAGE ROOT_DIR [--env K=V]... [--log FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fabkit import runner  # noqa: E402

CACHE_DIR = Path(os.environ.get("FABPERF_ROOTFS_CACHE", "/work/scratch/images-helper"))
MIRROR = os.environ.get("FABPERF_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# What a cloud base image has that minbase lacks (and base.sh expects to find).
BASE_INCLUDE = "systemd-sysv,ca-certificates,curl,sudo,iproute2,openssh-server"
HOST_EXTRA_CAS = Path("/usr/local/share/ca-certificates")
MOUNTS = ("proc", "sys", "dev", "dev/pts")


def base_rootfs(cache_dir: Path = CACHE_DIR, log_path: Path | None = None) -> Path:
    """The cached minbase bookworm tree (debootstrap once, ~45 s; reused afterwards)."""
    root = cache_dir / "base-rootfs"
    if (root / "etc/debian_version").exists() and (root / "usr/bin/curl").exists():
        return root
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cache_dir / "base-rootfs.partial"
    if partial.exists():
        runner.run(["rm", "-rf", "--one-file-system", partial])
    runner.run(
        ["debootstrap", "--variant=minbase", f"--include={BASE_INCLUDE}", "bookworm", partial,
         MIRROR],
        log_path=log_path, what="debootstrap",
    )
    partial.rename(root)
    return root


def copy_rootfs(base: Path, dest: Path) -> Path:
    """A throwaway copy of the base tree (cp -a keeps owners, modes, device nodes)."""
    dest.mkdir(parents=True, exist_ok=True)
    runner.run(["cp", "-a", f"{base}/.", dest], what="copy root filesystem")
    return dest


def _mounted(path: Path) -> bool:
    return runner.run(["mountpoint", "-q", path], check=False).ok


def _mounts_below(path: Path) -> list[str]:
    text = Path("/proc/self/mounts").read_text()
    prefix = str(path.resolve()) + "/"
    return [ln.split()[1] for ln in text.splitlines() if ln.split()[1].startswith(prefix)]


@contextlib.contextmanager
def chroot_mounts(root: Path, binds: Mapping[str, str] | None = None) -> Iterator[Path]:
    """Bind /proc /sys /dev /dev/pts (and read-only ``binds``: host dir -> path in root) for
    the duration; always unmounted after."""
    done: list[Path] = []
    try:
        for m in MOUNTS:
            target = root / m
            target.mkdir(parents=True, exist_ok=True)
            runner.run(["mount", "--bind", f"/{m}", target], what=f"bind-mount /{m}")
            done.append(target)
        for src, dest in (binds or {}).items():
            target = root / dest.lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            runner.run(["mount", "--bind", src, target], what=f"bind-mount {src}")
            done.append(target)
            # read-only: nothing in the chroot (or a careless cleanup) can change the host tree
            runner.run(["mount", "-o", "remount,bind,ro", target], what=f"remount {src} ro")
        yield root
    finally:
        for target in reversed(done):
            runner.run(["umount", "-l", target], check=False)


def stage_packer_uploads(root: Path, image: str) -> dict:
    """Copy what Packer uploads (files dirs, scripts, extra CAs) and block service starts."""
    spec = yaml.safe_load((REPO / "images" / image / "image.yaml").read_text())
    stage = root / "tmp/fabperf"
    if busy := _mounts_below(root):
        raise RuntimeError(f"{root} still has mounts below it: {busy}; unmount first")
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "files").mkdir(parents=True)
    for rel in spec.get("files", []):
        src = REPO / rel
        shutil.copytree(src, stage / "files" / src.name, symlinks=True)
    shutil.copytree(REPO / "packer/scripts", stage / "scripts")
    ca_dir = stage / "ca"
    ca_dir.mkdir()
    for crt in sorted(HOST_EXTRA_CAS.glob("*.crt")):
        shutil.copy2(crt, ca_dir / crt.name)
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\n# fabperf chroot test: never start services\nexit 101\n")
    policy.chmod(0o755)
    shutil.copy2("/etc/resolv.conf", root / "etc/resolv.conf")
    return spec


def run_scripts(
    root: Path,
    image: str,
    *,
    env: Mapping[str, str] | None = None,
    log_path: Path,
    scripts: list[str] | None = None,
    binds: Mapping[str, str] | None = None,
) -> list[str]:
    """Run the image's scripts (or the given subset) in order inside root; returns their names.

    A failing script raises ExternalError with the command, exit code and log path.
    """
    spec = stage_packer_uploads(root, image)
    chosen = scripts if scripts is not None else list(spec["scripts"])
    script_env = {str(k): str(v) for k, v in (spec.get("versions") or {}).items()}
    script_env.update({
        "FABPERF_IMAGE": image,
        "FABPERF_PROVIDER": "chroot",
        "FABPERF_FINGERPRINT": "chroot-test",
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
    })
    script_env.update(env or {})
    with chroot_mounts(root, binds):
        for script in chosen:
            argv = ["chroot", root, "env", "-i"]
            argv += [f"{k}={v}" for k, v in sorted(script_env.items())]
            argv += ["bash", f"/tmp/fabperf/scripts/{script}"]
            runner.run(argv, log_path=log_path, what=f"{image}: {script}", timeout=3600)
    (root / "usr/sbin/policy-rc.d").unlink(missing_ok=True)
    return chosen


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: provision ROOT_DIR (a fresh copy of the cached base) for IMAGE."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image")
    p.add_argument("root", type=Path)
    p.add_argument("--env", action="append", default=[], metavar="K=V")
    p.add_argument("--log", type=Path)
    p.add_argument("--script", action="append", dest="scripts",
                   help="run only these scripts (paths under packer/scripts)")
    p.add_argument("--reuse", action="store_true", help="provision ROOT as it is (no fresh copy)")
    p.add_argument("--bind", action="append", default=[], metavar="HOST_DIR:CHROOT_PATH",
                   help="bind-mount a host directory read-only into the chroot")
    args = p.parse_args(argv)
    log_path = args.log or args.root.with_suffix(".log")
    if not args.reuse:
        if args.root.exists():
            print(f"{args.root} exists; pass --reuse or remove it", file=sys.stderr)
            return 2
        copy_rootfs(base_rootfs(log_path=log_path), args.root)
    env = dict(kv.split("=", 1) for kv in args.env)
    binds = dict(b.split(":", 1) for b in args.bind)
    done = run_scripts(args.root, args.image, env=env, log_path=log_path, scripts=args.scripts,
                       binds=binds)
    print(f"{args.image}: ran {', '.join(done)} in {args.root}; log {log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
