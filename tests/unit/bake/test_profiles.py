"""bake.profiles: defaults < config file < environment < --var, every value type-checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from bake import profiles
from bake.profiles import AwsProfile, OpenstackProfile, Provider, QemuProfile
from fabkit.errors import InputError


def _resolve(provider: Provider, vars_: list[str] = (), env: dict[str, str] | None = None,
             config: str | None = None) -> profiles.CommonProfile:
    return profiles.resolve(provider, profiles.make_overrides(config, list(vars_), env=env or {}))


def test_defaults() -> None:
    aws = _resolve(Provider.AWS)
    assert isinstance(aws, AwsProfile)
    assert aws.encrypt_boot and aws.imdsv2_required and aws.region == "us-east-1"
    q = _resolve(Provider.QEMU)
    assert isinstance(q, QemuProfile) and q.accelerator == "auto" and q.headless
    o = _resolve(Provider.OPENSTACK)
    assert isinstance(o, OpenstackProfile) and o.image_visibility == "private"


def test_layering_last_wins(tmp_path: Path) -> None:
    cfg = tmp_path / "fabperf.yaml"
    cfg.write_text("aws:\n  region: eu-west-1\n  instance_type: t3.xlarge\n"
                   "  encrypt_boot: false\nqemu:\n  memory_mb: 3000\n")
    env = {"FABPERF_AWS_REGION": "eu-central-1", "FABPERF_AWS_SUBNET_ID": "subnet-env"}
    p = _resolve(Provider.AWS, ["region=us-west-2"], env=env, config=str(cfg))
    assert p.region == "us-west-2"              # --var beats env and config
    assert p.subnet_id == "subnet-env"          # env beats default
    assert p.instance_type == "t3.xlarge"       # config beats default
    assert p.encrypt_boot is False
    assert _resolve(Provider.QEMU, config=str(cfg)).memory_mb == 3000


def test_common_keys_from_env_colon_separated() -> None:
    env = {"FABPERF_EXTRA_CA_CERTS": "/a/proxy.pem:/b/corp.pem"}
    assert _resolve(Provider.QEMU, env=env).extra_ca_certs == ("/a/proxy.pem", "/b/corp.pem")
    # the provider-specific variable wins over the common one
    env["FABPERF_QEMU_EXTRA_CA_CERTS"] = "/c/only.pem"
    assert _resolve(Provider.QEMU, env=env).extra_ca_certs == ("/c/only.pem",)
    # another provider's variable does not leak
    assert _resolve(Provider.AWS, env={"FABPERF_QEMU_CPUS": "4"}) == _resolve(Provider.AWS)


def test_typed_values() -> None:
    p = _resolve(Provider.OPENSTACK, ["networks=net-a, net-b", "use_blockstorage_volume=yes",
                                      "volume_size_gb=20"])
    assert p.networks == ("net-a", "net-b")
    assert p.use_blockstorage_volume is True and p.volume_size_gb == 20


@pytest.mark.parametrize(("var", "needle"), [
    ("region", "--var: expected key=value, found 'region'"),
    ("=x", "--var: expected key=value"),
    ("regoin=eu-west-1", "--var regoin: expected a key of the aws profile, found 'regoin'"),
    ("encrypt_boot=maybe", "--var encrypt_boot: expected true or false, found 'maybe'"),
    ("kms_key_id=", None),
])
def test_malformed_vars(var: str, needle: str | None) -> None:
    if needle is None:
        _resolve(Provider.AWS, [var])   # an empty value is a value
        return
    with pytest.raises(InputError) as info:
        _resolve(Provider.AWS, [var])
    assert needle in str(info.value)
    assert info.value.exit_code == 2


def test_bad_values_elsewhere(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--var accelerator: expected one of auto, kvm, tcg"):
        _resolve(Provider.QEMU, ["accelerator=hvf"])
    with pytest.raises(InputError, match="environment FABPERF_QEMU_CPUS: expected a non-neg"):
        _resolve(Provider.QEMU, env={"FABPERF_QEMU_CPUS": "two"})
    cfg = tmp_path / "c.yaml"
    cfg.write_text("vmware:\n  x: 1\n")
    with pytest.raises(InputError, match="expected one of qemu, aws, openstack"):
        _resolve(Provider.QEMU, config=str(cfg))
    cfg.write_text("qemu:\n  cpus: [1]\n")
    with pytest.raises(InputError, match="c.yaml: qemu.cpus: expected a non-negative integer"):
        _resolve(Provider.QEMU, config=str(cfg))
    with pytest.raises(InputError, match="--config: expected an existing YAML file"):
        _resolve(Provider.QEMU, config=str(tmp_path / "missing.yaml"))


def test_unknown_provider() -> None:
    with pytest.raises(InputError, match="--provider: expected one of qemu, aws, openstack"):
        Provider.parse("vmware")


def test_canonical_drops_host_specific_values() -> None:
    a = _resolve(Provider.QEMU, ["base_image=/home/a/base.qcow2", "accelerator=kvm",
                                 "extra_ca_certs=/home/a/ca.pem", "base_image_checksum=ab"])
    b = _resolve(Provider.QEMU, ["base_image=/srv/b/other.qcow2", "accelerator=tcg",
                                 "extra_ca_certs=/etc/ssl/x.pem", "base_image_checksum=ab"])
    assert profiles.canonical(a) == profiles.canonical(b)
    assert profiles.canonical(a).base_image_checksum == "ab"   # the identity stays


def test_tags_must_be_key_value(tmp_path: Path) -> None:
    from bake_fakerepo import make_repo, write_base

    from bake import build

    root = make_repo(tmp_path / "repo")
    write_base(tmp_path / "build")
    with pytest.raises(InputError, match="aws.tags: expected KEY=VALUE items, found 'team'"):
        build.plan(root, tmp_path / "build", Provider.AWS, [],
                   profiles.make_overrides(None, ["tags=team"], env={}))
