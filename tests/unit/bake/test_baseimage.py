"""bake.baseimage without root: inputs, cache keys, the files written into the tree."""

from __future__ import annotations

import json

import pytest
import yaml

from bake import baseimage
from fabkit.errors import InputError

PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


def test_inputs_hash_changes_with_every_input(tmp_path):
    ca = tmp_path / "proxy-ca.crt"
    ca.write_text(PEM)
    base = baseimage.make_inputs()
    assert base.mirror == baseimage.DEFAULT_MIRROR and base.extra_cas == ()
    assert base.digest() == baseimage.make_inputs().digest()            # stable
    other = {
        baseimage.make_inputs("http://mirror.example/debian").digest(),
        baseimage.make_inputs(extra_ca_paths=[ca]).digest(),
        base.__class__(base.suite, base.mirror, base.packages, (), "999").digest(),
    }
    assert base.digest() not in other and len(other) == 3
    path = baseimage.image_path(tmp_path, base)
    assert path.name == f"debian-12-{base.digest()[:12]}.qcow2"


def test_packages_include_what_machine_facts_require():
    must = {"systemd-sysv", "udev", "openssh-server", "cloud-init", "python3-cffi-backend",
            "linux-image-cloud-amd64", "ifupdown", "netbase", "isc-dhcp-client", "iproute2",
            "curl", "ca-certificates", "sudo"}
    assert must <= set(baseimage.PACKAGES)


def test_extra_ca_must_be_a_pem_certificate(tmp_path):
    bad = tmp_path / "key.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\n")
    with pytest.raises(InputError, match="--extra-ca"):
        baseimage.load_extra_cas([bad])
    with pytest.raises(InputError, match="--extra-ca"):
        baseimage.load_extra_cas([tmp_path / "missing.crt"])
    with pytest.raises(InputError, match="--mirror"):
        baseimage.make_inputs("ftp://old.example/debian")


def test_configure_writes_datasources_console_network_and_cas(tmp_path):
    root = tmp_path / "root"
    for d in ("etc/network", "etc/cloud/cloud.cfg.d", "etc/apt"):
        (root / d).mkdir(parents=True)
    ca = tmp_path / "proxy.crt"
    ca.write_text(PEM)
    inputs = baseimage.make_inputs(extra_ca_paths=[ca])
    baseimage._configure(root, inputs)
    cfg = yaml.safe_load((root / "etc/cloud/cloud.cfg.d/90-fabperf-datasources.cfg").read_text())
    assert cfg["datasource_list"][:4] == ["NoCloud", "ConfigDrive", "OpenStack", "Ec2"]
    assert cfg["system_info"]["default_user"]["name"] == "fabperf"
    assert cfg["locale"] is False
    grub = (root / "etc/default/grub").read_text()
    assert "console=ttyS0" in grub
    assert (root / "etc/fstab").read_text().startswith("LABEL=root / ext4")
    assert "source /etc/network/interfaces.d/*" in (root / "etc/network/interfaces").read_text()
    sources = (root / "etc/apt/sources.list").read_text()
    assert "bookworm-security" in sources
    installed = list((root / "usr/local/share/ca-certificates").glob("*.crt"))
    assert [p.read_text() for p in installed] == [PEM]


def test_grub_root_is_rewritten_to_the_label(tmp_path):
    cfg = tmp_path / "grub.cfg"
    cfg.write_text("linux /boot/vmlinuz root=/dev/loop0p1 ro console=ttyS0\n"
                   "linux /boot/vmlinuz root=UUID=1234-abcd ro single\n")
    baseimage._fix_grub_root(cfg)
    assert cfg.read_text().count("root=LABEL=root") == 2
    bad = tmp_path / "empty.cfg"
    bad.write_text("menuentry x {}\n")
    with pytest.raises(Exception, match="no root="):
        baseimage._fix_grub_root(bad)


def test_scrub_removes_per_machine_state(tmp_path):
    root = tmp_path
    for d in ("etc/ssh", "var/lib/cloud/instances/x", "var/lib/apt/lists", "var/log/apt",
              "var/lib/dbus", "tmp"):
        (root / d).mkdir(parents=True)
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("k")
    (root / "etc/ssh/sshd_config").write_text("c")
    (root / "etc/machine-id").write_text("abc\n")
    (root / "var/lib/dbus/machine-id").write_text("abc\n")
    (root / "var/lib/apt/lists/deb.debian.org_Packages").write_text("p")
    (root / "var/log/apt/history.log").write_text("h")
    (root / "tmp/x").write_text("x")
    baseimage._scrub(root)
    assert list((root / "etc/ssh").iterdir()) == [root / "etc/ssh/sshd_config"]
    assert (root / "etc/machine-id").read_text() == ""
    assert not (root / "var/lib/dbus/machine-id").exists()
    assert list((root / "var/lib/cloud").iterdir()) == []
    assert [p.name for p in (root / "var/lib/apt/lists").iterdir()] == ["partial"]
    assert (root / "var/log/apt/history.log").read_text() == ""
    assert list((root / "tmp").iterdir()) == []


def test_a_cached_image_returns_at_once_and_writes_the_json(tmp_path, monkeypatch):
    inputs = baseimage.make_inputs()
    base_dir = tmp_path / "build" / "base"
    base_dir.mkdir(parents=True)
    img = baseimage.image_path(base_dir, inputs)
    img.write_bytes(b"QFI\xfb")
    img.with_suffix(".json").write_text(json.dumps({"sha256": "ab" * 32}))
    monkeypatch.setattr(baseimage, "_build", lambda *a: pytest.fail("rebuilt"))
    image = baseimage.build_base_image(base_dir=base_dir, log_dir=tmp_path / "logs",
                                       inputs=inputs, repo_root=tmp_path,
                                       out=tmp_path / "copy.qcow2")
    assert image.cached and image.sha256 == "ab" * 32
    doc = json.loads((base_dir / "base-image.json").read_text())
    assert doc["path"] == str(img.resolve())
    assert doc["path_relative"] == f"build/base/{img.name}"
    assert doc["inputs"]["extra_cas"] == [] and doc["inputs_hash"] == inputs.digest()
    assert (tmp_path / "copy.qcow2").read_bytes() == img.read_bytes()


def test_building_needs_root(tmp_path, monkeypatch):
    monkeypatch.setattr(baseimage.os, "geteuid", lambda: 1000)
    with pytest.raises(Exception, match="needs root"):
        baseimage.build_base_image(base_dir=tmp_path, log_dir=tmp_path,
                                   inputs=baseimage.make_inputs())
