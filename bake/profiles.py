"""Provider profiles: the settings of one Packer builder (qemu, aws, openstack).

Layering, last wins: built-in defaults < config file (--config FILE, YAML
``{qemu: {...}, aws: {...}, openstack: {...}}``) < environment variables
(``FABPERF_<PROVIDER>_<KEY>``, and ``FABPERF_<KEY>`` for keys every provider has, such as
``FABPERF_EXTRA_CA_CERTS``, colon-separated) < ``--var key=value``. Every value is checked
against the key's type; a bad one is an InputError naming where it came from.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from bake.catalog import Base
from fabkit import inputs
from fabkit.errors import InputError


class Provider(StrEnum):
    """Where an image is baked."""

    QEMU = "qemu"
    AWS = "aws"
    OPENSTACK = "openstack"

    @classmethod
    def parse(cls, value: str, where: str = "--provider") -> Provider:
        """A Provider from user input, or an InputError listing the choices."""
        try:
            return cls(value)
        except ValueError:
            raise InputError.field(None, where, "one of " + ", ".join(p.value for p in cls),
                                   value) from None


class Accelerator(StrEnum):
    """QEMU accelerator; AUTO is resolved by the build (see bake.build.resolve_accelerator)."""

    AUTO = "auto"
    KVM = "kvm"
    TCG = "tcg"


def _opt(default: Any, doc: str, *, sep: str = ",", machine: bool = False,
         choices: tuple[str, ...] = ()) -> Any:
    """A profile field. ``machine``: a host-specific value left out of the fingerprint."""
    meta = {"doc": doc, "sep": sep, "machine": machine, "choices": choices}
    if isinstance(default, list | tuple):
        return field(default=tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class CommonProfile:
    """Keys every provider has."""

    extra_ca_certs: tuple[str, ...] = _opt(
        (), "host PEM files added to the guest trust store during the bake", sep=":",
        machine=True)
    remove_extra_ca_certs: bool = _opt(
        False, "remove the extra CA certificates from the image at cleanup")
    goss_binary: str = _opt(
        "", "a goss linux-amd64 binary to run in the guest (else bake.goss runs from the host)",
        machine=True)
    ssh_username: str = _opt("", "the build user (default: per provider and base OS)")
    ssh_timeout: str = _opt("30m", "how long Packer waits for SSH")


@dataclass(frozen=True)
class QemuProfile(CommonProfile):
    """The qemu builder: a local base qcow2, a NoCloud seed, a qcow2 output."""

    base_image: str = _opt("", "base qcow2 path or URL (default: build/base/base-image.json)",
                           machine=True)
    base_image_checksum: str = _opt("", "sha256 of base_image (hex, or sha256:hex)")
    accelerator: str = _opt("auto", "auto, kvm or tcg", machine=True,
                            choices=tuple(a.value for a in Accelerator))
    memory_mb: int = _opt(0, "guest memory during the bake (0: the image's build_memory_mb)")
    cpus: int = _opt(0, "guest vCPUs during the bake (0: the image's build_cpus)")
    headless: bool = _opt(True, "no QEMU window", machine=True)
    disk_compression: bool = _opt(False, "compress the output qcow2 (slow under TCG)")


@dataclass(frozen=True)
class AwsProfile(CommonProfile):
    """The amazon-ebs builder: private, encrypted, IMDSv2-only AMIs."""

    region: str = _opt("us-east-1", "AWS region")
    instance_type: str = _opt("t3.large", "build instance type")
    source_ami_name: str = _opt("", "source AMI name pattern (default: per base OS)")
    source_ami_owner: str = _opt("", "source AMI owner account (default: per base OS)")
    subnet_id: str = _opt("", "subnet of the build instance (default VPC when empty)")
    vpc_id: str = _opt("", "VPC of the build instance")
    associate_public_ip_address: bool = _opt(True, "give the build instance a public IP")
    encrypt_boot: bool = _opt(True, "encrypt the AMI's snapshots")
    kms_key_id: str = _opt("", "KMS key for encrypt_boot (default: the AWS-managed key)")
    imdsv2_required: bool = _opt(True, "require IMDSv2 on the build instance and the AMI")
    tags: tuple[str, ...] = _opt((), "extra tags KEY=VALUE on AMI, snapshots, instance")


@dataclass(frozen=True)
class OpenstackProfile(CommonProfile):
    """The openstack builder: a Glance image with fabperf properties."""

    cloud: str = _opt("openstack", "cloud name in clouds.yaml")
    source_image_name: str = _opt("", "source image name (default: per base OS)")
    flavor: str = _opt("m1.large", "build flavor")
    networks: tuple[str, ...] = _opt((), "network UUIDs for the build server")
    security_groups: tuple[str, ...] = _opt((), "security groups for the build server")
    floating_ip_network: str = _opt("", "floating IP pool (none when empty)")
    use_blockstorage_volume: bool = _opt(False, "boot the build server from a volume")
    volume_size_gb: int = _opt(0, "volume size (0: the image's disk_size_gb)")
    image_visibility: str = _opt("private", "Glance visibility",
                                 choices=("private", "shared", "community", "public"))
    properties: tuple[str, ...] = _opt((), "extra Glance properties KEY=VALUE")


PROFILE_TYPES: dict[Provider, type[CommonProfile]] = {
    Provider.QEMU: QemuProfile,
    Provider.AWS: AwsProfile,
    Provider.OPENSTACK: OpenstackProfile,
}

# Official images per base OS. Debian: account 136693071363 publishes debian-12-amd64-*;
# Canonical: 099720109477. OpenStack image names are site-specific: only a default guess.
AMI_SOURCES: dict[Base, tuple[str, str]] = {
    Base.DEBIAN_12: ("debian-12-amd64-*", "136693071363"),
    Base.UBUNTU_2204: ("ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*", "099720109477"),
    Base.UBUNTU_2404: ("ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*",
                       "099720109477"),
}
OPENSTACK_IMAGES: dict[Base, str] = {
    Base.DEBIAN_12: "debian-12",
    Base.UBUNTU_2204: "ubuntu-22.04",
    Base.UBUNTU_2404: "ubuntu-24.04",
}
# The default cloud user of each base on clouds; qemu builds create their own user.
CLOUD_USERS: dict[Base, str] = {
    Base.DEBIAN_12: "admin", Base.UBUNTU_2204: "ubuntu", Base.UBUNTU_2404: "ubuntu",
}
OPENSTACK_USERS: dict[Base, str] = {
    Base.DEBIAN_12: "debian", Base.UBUNTU_2204: "ubuntu", Base.UBUNTU_2404: "ubuntu",
}
QEMU_BUILD_USER = "fabperf-build"


@dataclass(frozen=True)
class Overrides:
    """Everything the user said about profiles, before it is applied to a provider."""

    config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    config_file: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    vars: tuple[tuple[str, str], ...] = ()


def keys(provider: Provider) -> dict[str, dataclasses.Field[Any]]:
    """The settable keys of a provider's profile."""
    return {f.name: f for f in fields(PROFILE_TYPES[provider])}


def parse_var(text: str) -> tuple[str, str]:
    """One ``--var key=value`` into (key, value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InputError.field(None, "--var", "key=value", text)
    return key.strip(), value


def load_config(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Read a profile config file: a mapping provider -> mapping key -> value."""
    p = Path(path)
    if not p.is_file():
        raise InputError.field(None, "--config", "an existing YAML file", str(p))
    doc = inputs.load_yaml_file(p, what="profile config (--config)")
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InputError.field(p, "(top level)", "a mapping provider -> settings",
                               type(doc).__name__)
    for k, v in doc.items():
        Provider.parse(str(k), where=f"{p}: {k}")
        if not isinstance(v, dict):
            raise InputError.field(p, str(k), "a mapping key -> value", v)
    return doc


def make_overrides(config_file: str | None, var_texts: Sequence[str],
                   env: Mapping[str, str] | None = None) -> Overrides:
    """Collect --config, --var and the environment (checked later, per provider)."""
    config = load_config(config_file) if config_file else {}
    return Overrides(
        config=config, config_file=config_file,
        env=dict(os.environ if env is None else env),
        vars=tuple(parse_var(t) for t in var_texts),
    )


def resolve(provider: Provider, overrides: Overrides) -> CommonProfile:
    """The provider's profile after defaults, config file, environment and --var."""
    known = keys(provider)
    values: dict[str, Any] = {}
    section = overrides.config.get(provider.value, {})
    for k, v in section.items():
        where = f"{overrides.config_file}: {provider.value}.{k}"
        values[k] = _coerce(known, provider, str(k), v, where)
    for k, f in known.items():
        names = [f"FABPERF_{k.upper()}", f"FABPERF_{provider.value.upper()}_{k.upper()}"]
        for env_name in names:   # the provider-specific one wins
            if env_name in overrides.env and (k in _common_keys() or env_name == names[1]):
                values[k] = _coerce(known, provider, k, overrides.env[env_name],
                                    f"environment {env_name}", sep=f.metadata["sep"])
    for k, v in overrides.vars:
        values[k] = _coerce(known, provider, k, v, f"--var {k}")
    return PROFILE_TYPES[provider](**values)


def check_vars(provider: Provider, overrides: Overrides) -> None:
    """Fail early (before anything is written) on a --var this provider does not know."""
    resolve(provider, overrides)


def _common_keys() -> set[str]:
    return {f.name for f in fields(CommonProfile)}


def _coerce(known: Mapping[str, dataclasses.Field[Any]], provider: Provider, key: str,
            value: Any, where: str, sep: str | None = None) -> Any:
    if key not in known:
        raise InputError.field(None, where, f"a key of the {provider.value} profile", key,
                               hint="known keys: " + ", ".join(sorted(known)))
    f = known[key]
    default = f.default
    expected = type(default).__name__
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no"}:
            return value.lower() in {"true", "1", "yes"}
        raise InputError.field(None, where, "true or false", value)
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        raise InputError.field(None, where, "a non-negative integer", value)
    if isinstance(default, tuple):
        if isinstance(value, list | tuple) and all(isinstance(x, str) for x in value):
            return tuple(value)
        if isinstance(value, str):
            s = sep or f.metadata["sep"]
            parts = value.replace(",", s).split(s) if s != "," else value.split(",")
            return tuple(p.strip() for p in parts if p.strip())
        raise InputError.field(None, where, "a list of strings", value)
    if not isinstance(value, str):
        raise InputError.field(None, where, expected, value)
    choices = f.metadata["choices"]
    if choices and value not in choices:
        raise InputError.field(None, where, "one of " + ", ".join(choices), value)
    return value


def canonical(profile: CommonProfile) -> CommonProfile:
    """The profile with host-specific values replaced by fixed placeholders (for fingerprints)."""
    changes: dict[str, Any] = {}
    for f in fields(profile):
        if f.metadata.get("machine"):
            v = getattr(profile, f.name)
            if isinstance(v, tuple):
                changes[f.name] = tuple(f"/fabperf/{f.name}-{i:02d}" for i in range(len(v)))
            elif isinstance(v, bool):
                changes[f.name] = f.default
            elif f.name == "accelerator":
                changes[f.name] = Accelerator.TCG.value
            else:
                changes[f.name] = f"/fabperf/{f.name}" if v else ""
    return dataclasses.replace(profile, **changes)


def describe(profile: CommonProfile) -> dict[str, Any]:
    """The profile as plain JSON-able data."""
    return json.loads(json.dumps(dataclasses.asdict(profile)))
