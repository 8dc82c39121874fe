"""The fingerprint of an image on a provider: sha256 over everything that can change it.

Inputs, each content-addressed and sorted so the hash is the same on every machine and
in every checkout: image.yaml (parsed, canonical JSON), every provisioning script, every
file under the image's ``files`` entries, the goss specs (repo-relative path + sha256 of
the bytes), the pinned versions, the extra CA certificates that enter the image, the
template rendered in canonical mode (no host paths, keys or Packer version), and the
base image identity (qemu: its sha256; aws: the AMI filter; openstack: the source image).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bake import buildroot, prebuild, profiles, render
from bake.catalog import ImageSpec, files_of
from bake.profiles import AwsProfile, CommonProfile, OpenstackProfile, Provider, QemuProfile
from fabkit.hashing import sha256_file

# Bump when the meaning of the inputs changes (a new input, a new layout).
SCHEME = "fabperf-fingerprint-2"   # 2: prebuild inputs; host-path versions by content


@dataclass(frozen=True)
class Fingerprint:
    """A fingerprint and the inputs document it hashes (kept for `bake list -v`, tests)."""

    image: str
    provider: Provider
    digest: str
    inputs: dict[str, Any]

    @property
    def short(self) -> str:
        return self.digest[:12]

    @property
    def name(self) -> str:
        """fabperf-<image>-<hash12>."""
        return render.image_name(self.image, self.digest)


def base_identity(spec: ImageSpec, provider: Provider, profile: CommonProfile) -> dict[str, str]:
    """What the image starts from, as a provider-specific identity."""
    if isinstance(profile, QemuProfile):
        checksum = profile.base_image_checksum.removeprefix("sha256:")
        return {"kind": "qcow2", "sha256": checksum}
    if isinstance(profile, AwsProfile):
        pattern, owner = profiles.AMI_SOURCES[spec.base]
        return {"kind": "ami-filter", "name": profile.source_ami_name or pattern,
                "owner": profile.source_ami_owner or owner}
    if isinstance(profile, OpenstackProfile):
        return {"kind": "glance-image",
                "name": profile.source_image_name or profiles.OPENSTACK_IMAGES[spec.base]}
    raise TypeError(f"unknown profile {profile!r}")


def inputs(root: Path, spec: ImageSpec, provider: Provider,
           profile: CommonProfile) -> dict[str, Any]:
    """The document the fingerprint hashes (JSON-able, host-independent)."""
    def rel(p: Path) -> str:
        return p.relative_to(root).as_posix()

    scripts = {rel(p): sha256_file(p) for p in spec.script_paths(root)}
    files = {rel(p): sha256_file(p) for p in files_of(root, spec)}
    goss = {rel(p): sha256_file(p) for p in spec.goss_paths(root)}
    cas = sorted(sha256_file(Path(c)) for c in profile.extra_ca_certs) \
        if not profile.remove_extra_ca_certs else []

    # the template is hashed with host paths (FABRIC_SOURCE...) as the content they name:
    # the same tarball under another spelling or place is the same image
    ident = prebuild.versions_identity(root, spec)
    canonical_spec = dataclasses.replace(spec, versions=tuple(
        (k, ident[k] if k in prebuild.HOST_PATH_VERSIONS and v else v)
        for k, v in spec.versions))
    template = render.render(root, canonical_spec, provider, profiles.canonical(profile),
                             render.RenderEnv.canonical())

    pre = None
    if spec.prebuild_scripts:
        br = buildroot.make_inputs()
        pre = prebuild.key_inputs(root, spec, f"{br.suite}-{br.digest()[:12]}")
    # Versions appear once, host paths (FABRIC_SOURCE...) by the content they name.
    image_yaml = {k: v for k, v in spec.raw.items() if k != "versions"}
    return {
        "scheme": SCHEME,
        "image": spec.name,
        "provider": provider.value,
        "image_yaml": image_yaml,
        "versions": ident,
        "prebuild": pre,
        "scripts": dict(sorted(scripts.items())),
        "files": dict(sorted(files.items())),
        "goss": dict(sorted(goss.items())),
        "extra_ca_certs": cas,
        "template_sha256": hashlib.sha256(template.encode()).hexdigest(),
        "base": base_identity(spec, provider, profile),
    }


def fingerprint(root: Path, spec: ImageSpec, provider: Provider,
                profile: CommonProfile) -> Fingerprint:
    """The fingerprint of ``spec`` baked on ``provider`` with ``profile``."""
    doc = inputs(root, spec, provider, profile)
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return Fingerprint(spec.name, provider, digest, doc)
