"""Render Packer HCL2 for one image on one provider from packer/templates/ (jinja2).

Rendering is a pure function of the ImageSpec, the resolved provider profile and a
RenderEnv (the host-specific values: paths, the Packer version, the goss mode). The
canonical RenderEnv replaces every host-specific value by a fixed placeholder, so the
canonical text is the same on every machine: that text goes into the fingerprint.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from bake.catalog import Base, ImageSpec
from bake.profiles import (
    AMI_SOURCES,
    CLOUD_USERS,
    OPENSTACK_IMAGES,
    OPENSTACK_USERS,
    QEMU_BUILD_USER,
    AwsProfile,
    CommonProfile,
    OpenstackProfile,
    Provider,
    QemuProfile,
)

TEMPLATES_DIR = "packer/templates"
TEMPLATE_FILE = "{image}.pkr.hcl"
GUEST_ROOT = "/tmp/fabperf"
SEAL_PROGRAM = "/usr/local/sbin/fabperf-seal"   # packer/files/common/fabperf-seal
SEAL_COMMAND = f"sudo {SEAL_PROGRAM}"
PREBUILT_GUEST = f"{GUEST_ROOT}/prebuilt.tar.gz"   # bake.prebuild.GUEST_ARTIFACT
# Packer learnt `packer init` / required_plugins in 1.7.0; the amazon plugin that carries
# metadata_options and imds_support is a 1.7+ plugin as well (1.6.6 rejects both).
REQUIRED_PLUGINS_SINCE = (1, 7, 0)
PLUGINS = {
    Provider.QEMU: ("qemu", "github.com/hashicorp/qemu", ">= 1.0.9"),
    Provider.AWS: ("amazon", "github.com/hashicorp/amazon", ">= 1.2.1"),
    Provider.OPENSTACK: ("openstack", "github.com/hashicorp/openstack", ">= 1.1.1"),
}
# Debian's AMIs boot from /dev/xvda, Canonical's from /dev/sda1.
AMI_ROOT_DEVICE = {Base.DEBIAN_12: "/dev/xvda", Base.UBUNTU_2204: "/dev/sda1",
                   Base.UBUNTU_2404: "/dev/sda1"}
PLACEHOLDER_FINGERPRINT = "0" * 64
_TARGET = "FABPERF-SSH-TARGET"  # shlex leaves it unquoted; replaced by ssh://user@host:port

Version = tuple[int, int, int]


@dataclass(frozen=True)
class RenderEnv:
    """Host-specific inputs of a render. ``packer_version`` None = canonical (no packer block)."""

    repo_root: str
    build_dir: str
    python: str
    packer_version: Version | None
    fingerprint: str
    accelerator: str = "tcg"
    goss_binary: str | None = None
    prebuilt: str | None = None   # the image's bake.prebuild artifact on this machine

    @classmethod
    def canonical(cls) -> RenderEnv:
        """Fixed placeholders: the same on every machine."""
        return cls(repo_root="/fabperf/repo", build_dir="/fabperf/build", python="python3",
                   packer_version=None, fingerprint=PLACEHOLDER_FINGERPRINT)


class HclExpr(str):
    """A string that is already an HCL expression (emitted as-is by the ``hcl`` filter)."""


def hcl_escape(text: str) -> str:
    """Escape text for the inside of an HCL quoted string (no interpolation survives)."""
    out = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
           .replace("\r", "\\r").replace("\t", "\\t"))
    return out.replace("${", "$${").replace("%{", "%%{")


def hcl(value: Any) -> str:
    """A Python value as an HCL literal (strings escaped, lists, maps with quoted keys)."""
    if isinstance(value, HclExpr):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return f'"{hcl_escape(value)}"'
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = ", ".join(f"{hcl(str(k))} = {hcl(v)}" for k, v in value.items())
        return "{ " + items + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(hcl(v) for v in value) + "]"
    raise TypeError(f"no HCL literal for {value!r}")


def hcl_interp(parts: Sequence[str | tuple[str]]) -> HclExpr:
    """An HCL string from literal parts and ``(expr,)`` interpolations such as ("build.Host",)."""
    body = "".join("${" + p[0] + "}" if isinstance(p, tuple) else hcl_escape(p) for p in parts)
    return HclExpr(f'"{body}"')


def image_name(image: str, fingerprint: str) -> str:
    """fabperf-<image>-<hash12>: the artifact name on every provider."""
    return f"fabperf-{image}-{fingerprint[:12]}"


def script_environment(spec: ImageSpec, provider: Provider, profile: CommonProfile,
                       fingerprint: str) -> dict[str, str]:
    """What every provisioning script gets in its environment; also goss's --vars."""
    env = dict(spec.versions)
    env["FABPERF_IMAGE"] = spec.name
    env["FABPERF_PROVIDER"] = provider.value
    env["FABPERF_FINGERPRINT"] = fingerprint
    env["REMOVE_EXTRA_CA_CERTS"] = "1" if profile.remove_extra_ca_certs else "0"
    return env


def build_user(spec: ImageSpec, provider: Provider, profile: CommonProfile) -> str:
    """The SSH user Packer connects as."""
    if profile.ssh_username:
        return profile.ssh_username
    if provider is Provider.QEMU:
        return QEMU_BUILD_USER
    if provider is Provider.AWS:
        return CLOUD_USERS[spec.base]
    return OPENSTACK_USERS[spec.base]


def paths(spec: ImageSpec, provider: Provider, build_dir: str) -> dict[str, str]:
    """Where a build of (image, provider) keeps its files under the build dir."""
    keys = f"{build_dir}/keys/{spec.name}-{provider.value}"
    return {
        "key_dir": keys,
        "ssh_key": f"{keys}/id_ed25519",
        "user_data": f"{keys}/seed/user-data",
        "meta_data": f"{keys}/seed/meta-data",
        "output_dir": f"{build_dir}/packer-out/{spec.name}-{provider.value}",
        "junit": f"{build_dir}/goss/{spec.name}-{provider.value}.xml",
        "goss_dir": f"{build_dir}/goss",
    }


def _context(repo: Path, spec: ImageSpec, provider: Provider, profile: CommonProfile,
             env: RenderEnv) -> dict[str, Any]:
    root = env.repo_root
    p = paths(spec, provider, env.build_dir)
    name = image_name(spec.name, env.fingerprint)
    user = build_user(spec, provider, profile)
    environment = script_environment(spec, provider, profile, env.fingerprint)
    uploads = []
    for entry in spec.files:
        src = f"{root}/{entry}"
        # A directory without a trailing slash lands as /tmp/fabperf/files/<basename>/.
        is_dir = (repo / entry).is_dir()
        dest = f"{GUEST_ROOT}/files/" if is_dir else f"{GUEST_ROOT}/files/{Path(entry).name}"
        uploads.append({"source": src, "destination": dest})
    cas = [{"source": c, "destination": f"{GUEST_ROOT}/ca/fabperf-extra-{i:02d}.crt"}
           for i, c in enumerate(profile.extra_ca_certs)]
    # Each script is named in its log lines (Packer uploads it as script_NNNN.sh).
    scripts = [{"path": f"{root}/packer/scripts/{s}", "name": s} for s in spec.scripts]
    prebuilt = None
    if spec.prebuild_scripts and (env.prebuilt or env.packer_version is None):
        prebuilt = {"source": env.prebuilt or f"{env.build_dir}/prebuilt/{spec.name}.tar.gz",
                    "destination": PREBUILT_GUEST}
    specs = [f"{root}/images/{g}" for g in spec.goss]
    goss_vars = json.dumps(environment, sort_keys=True, separators=(",", ":"))
    goss_local = None
    if env.goss_binary is None:
        argv = [env.python, "-m", "bake.goss", "validate", "--host", _TARGET,
                "--ssh-key", p["ssh_key"]]
        for s in specs:
            argv += ["--spec", s]
        argv += ["--junit", p["junit"], "--vars-json", goss_vars]
        cmd = shlex.join(argv)
        head, _, tail = cmd.partition(_TARGET)
        goss_local = hcl_interp([head, "ssh://", ("build.User",), "@", ("build.Host",), ":",
                                 ("build.Port",), tail])
    plugin = PLUGINS[provider]
    emit_new = env.packer_version is None or env.packer_version >= REQUIRED_PLUGINS_SINCE
    tags = {
        "Name": name,
        "fabperf:image": spec.name,
        "fabperf:fingerprint": env.fingerprint,
        "fabperf:provider": provider.value,
    }
    ctx: dict[str, Any] = {
        "spec": spec,
        "provider": provider.value,
        "profile": profile,
        "name": name,
        "fingerprint": env.fingerprint,
        "user": user,
        "paths": p,
        "uploads": uploads,
        "extra_cas": cas,
        "scripts": scripts,
        "prebuilt": prebuilt,
        "environment_vars": [f"{k}={v}" for k, v in environment.items()],
        "goss_specs": specs,
        "goss_spec_dests": [f"{GUEST_ROOT}/goss/specs/{g.replace('/', '__')}"
                            for g in spec.goss],
        "goss_vars": goss_vars,
        "goss_binary": env.goss_binary,
        "goss_local": goss_local,
        "guest": GUEST_ROOT,
        "seal_command": SEAL_COMMAND,
        "seal_program": SEAL_PROGRAM,
        "required_plugins": (env.packer_version is not None
                             and env.packer_version >= REQUIRED_PLUGINS_SINCE),
        "plugin": {"name": plugin[0], "source": plugin[1], "version": plugin[2]},
        "modern": emit_new,
        "tags_all": tags,
        "execute_command": "chmod +x {{ .Path }}; sudo -E env {{ .Vars }} {{ .Path }}",
    }
    if isinstance(profile, QemuProfile):
        checksum = profile.base_image_checksum
        ctx["qemu"] = {
            "iso_url": profile.base_image,
            "iso_checksum": checksum if ":" in checksum or checksum == "none"
            else f"sha256:{checksum}",
            "accelerator": env.accelerator,
            "memory": profile.memory_mb or spec.build_memory_mb,
            "cpus": profile.cpus or spec.build_cpus,
            "disk_size": f"{spec.disk_size_gb}G",
        }
    elif isinstance(profile, AwsProfile):
        pattern, owner = AMI_SOURCES[spec.base]
        extra = dict(t.split("=", 1) for t in profile.tags if "=" in t)
        ctx["tags_all"] = {**extra, **tags}
        ctx["aws"] = {
            "ami_name_filter": profile.source_ami_name or pattern,
            "ami_owner": profile.source_ami_owner or owner,
            "root_device": AMI_ROOT_DEVICE[spec.base],
        }
    elif isinstance(profile, OpenstackProfile):
        extra = dict(t.split("=", 1) for t in profile.properties if "=" in t)
        distro, _, version = spec.base.value.partition("-")
        ctx["openstack"] = {
            "source_image": profile.source_image_name or OPENSTACK_IMAGES[spec.base],
            "volume_size": profile.volume_size_gb or spec.disk_size_gb,
            "metadata": {**extra, **tags, "os_distro": distro, "os_version": version,
                         "hw_disk_bus": "virtio", "hw_vif_model": "virtio"},
            "image_tags": ["fabperf", f"fabperf-{spec.name}", f"fabperf-fp-{env.fingerprint}"],
        }
    return ctx


def environment(root: Path) -> jinja2.Environment:
    """The jinja2 environment over packer/templates/ (StrictUndefined, the ``hcl`` filter)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root / TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["hcl"] = hcl
    return env


def render(root: Path, spec: ImageSpec, provider: Provider, profile: CommonProfile,
           env: RenderEnv) -> str:
    """The HCL2 text of (image, provider)."""
    template = environment(root).get_template(f"{provider.value}.pkr.hcl.j2")
    return template.render(**_context(root, spec, provider, profile, env))


def write(out_dir: Path, spec: ImageSpec, provider: Provider, text: str) -> Path:
    """Write rendered HCL to <out>/<image>/<provider>/<image>.pkr.hcl (atomically)."""
    d = out_dir / spec.name / provider.value
    d.mkdir(parents=True, exist_ok=True)
    for stale in d.glob("*.pkr.hcl"):
        if stale.name != TEMPLATE_FILE.format(image=spec.name):
            stale.unlink()
    target = d / TEMPLATE_FILE.format(image=spec.name)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    return target
