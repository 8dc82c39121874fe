"""bake.prebuild: what keys a prebuilt artifact, and the image.yaml `prebuild` field."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import yaml

from bake import catalog, fingerprint, prebuild, profiles
from bake.profiles import Provider
from fabkit.errors import InputError

ROOT_ID = "bookworm-000000000000"


@pytest.fixture
def fake(fake_repo: Path) -> Path:
    return fake_repo


def _spec(root: Path, name: str = "fabric-node", sets: tuple[str, ...] = ()):
    return catalog.override_versions(catalog.load_catalog(root, [name]), list(sets))[0]


def test_the_real_images_declare_their_prebuild(repo: Path) -> None:
    fab = catalog.load_image(repo, "fabric-node")
    assert fab.prebuild_scripts == ("fabric-node/go.sh", "fabric-node/fabric.sh",
                                    "fabric-node/chaincode.sh")
    assert "/opt/fabric" in fab.prebuild_outputs
    assert catalog.load_image(repo, "caliper-worker").prebuild_outputs == ("/opt/fabperf/caliper",)
    assert catalog.load_image(repo, "monitor").prebuild_scripts == ()


def test_key_follows_the_scripts_and_versions(fake: Path) -> None:
    spec = _spec(fake)
    k = prebuild.key(fake, spec, ROOT_ID)
    assert k == prebuild.key(fake, spec, ROOT_ID)
    assert k != prebuild.key(fake, spec, "bookworm-111111111111")   # other Go/Node packages
    assert k != prebuild.key(fake, _spec(fake, sets=("FABRIC_REF=v2.5.12",)), ROOT_ID)
    (fake / "packer/scripts/fabric-node/fabric.sh").write_text("#!/bin/bash\necho changed\n")
    assert prebuild.key(fake, spec, ROOT_ID) != k


def test_a_host_path_source_counts_by_content_not_spelling(fake: Path, tmp_path: Path) -> None:
    src = tmp_path / "fabric.tar.gz"
    src.write_bytes(b"fabric source v1")
    a = _spec(fake, sets=(f"fabric-node.FABRIC_SOURCE={src}",))
    link = tmp_path / "other" / "name.tar.gz"
    link.parent.mkdir()
    shutil.copy(src, link)
    b = _spec(fake, sets=(f"fabric-node.FABRIC_SOURCE={link}",))
    assert prebuild.key(fake, a, ROOT_ID) == prebuild.key(fake, b, ROOT_ID)
    ident = prebuild.versions_identity(fake, a)["FABRIC_SOURCE"]
    assert ident.startswith("sha256:") and str(src) not in ident
    # the image fingerprint too (the rendered template names the path: hashed by content)
    prof = profiles.resolve(Provider.QEMU, profiles.make_overrides(None, [], env={}))
    prof = dataclasses.replace(prof, base_image_checksum="ab" * 32)
    assert fingerprint.fingerprint(fake, a, Provider.QEMU, prof).digest == \
        fingerprint.fingerprint(fake, b, Provider.QEMU, prof).digest
    src.write_bytes(b"fabric source v2")
    assert prebuild.key(fake, a, ROOT_ID) != prebuild.key(fake, b, ROOT_ID)
    # ... and a change of content changes both
    assert fingerprint.fingerprint(fake, a, Provider.QEMU, prof).digest != \
        fingerprint.fingerprint(fake, b, Provider.QEMU, prof).digest


def test_a_relative_host_path_is_from_the_repository_root(fake: Path) -> None:
    (fake / "src.tar.gz").write_bytes(b"x")
    spec = _spec(fake, sets=("fabric-node.FABRIC_SOURCE=src.tar.gz",))
    env, binds = prebuild.guest_env(fake, spec, {})
    assert env["FABRIC_SOURCE"] == "/tmp/fabperf/inputs/fabric_source/src.tar.gz"
    assert any(b.source == (fake / "src.tar.gz").resolve() and b.read_only for b in binds)


def test_a_missing_host_path_is_bad_input(fake: Path) -> None:
    spec = _spec(fake, sets=("fabric-node.FABRIC_SOURCE=/nonexistent/fabric.tar.gz",))
    with pytest.raises(InputError, match="FABRIC_SOURCE.*existing file"):
        prebuild.key(fake, spec, ROOT_ID)


@pytest.mark.parametrize("doc, field", [
    ({"scripts": [], "outputs": ["/opt/x"]}, "prebuild.scripts"),
    ({"scripts": ["fabric-node/fabric.sh"], "outputs": ["opt/x"]}, "prebuild.outputs"),
    ({"scripts": ["fabric-node/fabric.sh"], "outputs": ["/opt"]}, "prebuild.outputs"),
    ({"scripts": ["fabric-node/fabric.sh"], "outputs": ["/opt/../etc"]}, "prebuild.outputs"),
    ({"scripts": ["nope.sh"], "outputs": ["/opt/x"]}, "prebuild.scripts"),
    ({"scripts": ["fabric-node/fabric.sh"], "outputs": ["/opt/x"], "extra": 1}, "prebuild.extra"),
])
def test_bad_prebuild_fields_are_named(fake: Path, doc: dict, field: str) -> None:
    path = fake / "images/fabric-node/image.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["prebuild"] = doc
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError, match=field.replace(".", r"\.")):
        catalog.load_image(fake, "fabric-node")
