"""The openstack provider as bake sees it: a Glance image, found again by its fingerprint
tag (openstacksdk, an optional extra, imported only when asked); `packer validate` stays
syntax-only (a full validation authenticates against the cloud)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from bake.profiles import CommonProfile, Provider
from bake.providers.base import Baker


class OpenstackBaker(Baker):
    provider: ClassVar[Provider] = Provider.OPENSTACK
    artifact_key: ClassVar[str] = "image_id"
    validate_syntax_only: ClassVar[bool] = True

    def collect(self, name: str, paths: Mapping[str, str], ids: Sequence[str], build_dir: Path,
                profile: CommonProfile) -> dict[str, str]:
        return {"image_id": ids[-1], "cloud": getattr(profile, "cloud", "")}

    def missing(self, fingerprint: str, artifact: Mapping[str, str],
                profile: CommonProfile) -> str | None:
        import openstack  # lazy: an optional extra, and a slow import

        conn = openstack.connect(cloud=getattr(profile, "cloud", None))
        found = any(img.properties.get("fabperf:fingerprint") == fingerprint
                    or getattr(img, "metadata", {}).get("fabperf:fingerprint") == fingerprint
                    for img in conn.image.images(tag=f"fabperf-fp-{fingerprint}"))
        return None if found else "the manifest's artifact is gone from the cloud"
