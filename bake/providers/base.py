"""The interface of a provider's bake module (bake.providers.<name>)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from bake.packer import Version
from bake.profiles import CommonProfile, Provider


class Baker:
    """One provider as bake sees it. Class attributes are its facts; the methods are what
    differs between providers around a Packer build."""

    provider: ClassVar[Provider]
    artifact_key: ClassVar[str]
    """The field of the manifest's artifact record that launch boots from."""
    creates_build_user: ClassVar[bool] = False
    """The seed user-data creates the build user (the image has no cloud default user)."""
    validate_syntax_only: ClassVar[bool] = False
    """`packer validate` checks syntax only (a full validation would authenticate)."""
    local_artifact: ClassVar[bool] = False
    """The artifact is a disk image on this machine (the hygiene scan reads it)."""

    def collect(self, name: str, paths: Mapping[str, str], ids: Sequence[str], build_dir: Path,
                profile: CommonProfile) -> dict[str, str]:
        """Packer's artifact ids (and files) -> the manifest's artifact record."""
        raise NotImplementedError

    def present(self, artifact: Mapping[str, str]) -> bool:
        """Whether the artifact is there, asking nobody (`bake list`, `launch compare`):
        a cloud artifact is taken on the manifest's word."""
        return True

    def missing(self, fingerprint: str, artifact: Mapping[str, str],
                profile: CommonProfile) -> str | None:
        """Why the manifest's artifact of `fingerprint` is gone (None: it is there). May ask
        the cloud: raises ImportError without its SDK, anything the SDK raises otherwise."""
        return None

    def notes(self, profile: CommonProfile, packer_version: Version) -> list[str]:
        """What the operator should know before this provider's build (said, not fatal)."""
        return []
