"""The qemu provider as bake sees it: a qcow2 on this machine, built from the local base
image, with the build user made by the seed (a Debian cloud image has no default user)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from bake.profiles import CommonProfile, Provider
from bake.providers.base import Baker
from fabkit.errors import ExternalError
from fabkit.hashing import sha256_file


class QemuBaker(Baker):
    provider: ClassVar[Provider] = Provider.QEMU
    artifact_key: ClassVar[str] = "path"
    creates_build_user: ClassVar[bool] = True
    local_artifact: ClassVar[bool] = True

    def collect(self, name: str, paths: Mapping[str, str], ids: Sequence[str], build_dir: Path,
                profile: CommonProfile) -> dict[str, str]:
        produced = Path(paths["output_dir"]) / f"{name}.qcow2"
        if not produced.is_file():
            raise ExternalError(f"packer reported success but {produced} does not exist")
        dest = build_dir / "images" / f"{name}.qcow2"
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(produced, dest)
        shutil.rmtree(paths["output_dir"], ignore_errors=True)
        with contextlib.suppress(OSError):
            Path(paths["output_dir"]).parent.rmdir()
        return {"path": str(dest), "sha256": sha256_file(dest)}

    def present(self, artifact: Mapping[str, str]) -> bool:
        return Path(artifact.get("path", "")).is_file()

    def missing(self, fingerprint: str, artifact: Mapping[str, str],
                profile: CommonProfile) -> str | None:
        path = Path(artifact.get("path", ""))
        return None if path.is_file() else f"artifact {path} is missing"
