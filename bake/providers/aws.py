"""The aws provider as bake sees it: an AMI in the build region, found again by its
fabperf:fingerprint tag (boto3, an optional extra, imported only when asked)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from bake import packer, render
from bake.profiles import CommonProfile, Provider
from bake.providers.base import Baker


class AwsBaker(Baker):
    provider: ClassVar[Provider] = Provider.AWS
    artifact_key: ClassVar[str] = "ami"

    def collect(self, name: str, paths: Mapping[str, str], ids: Sequence[str], build_dir: Path,
                profile: CommonProfile) -> dict[str, str]:
        # "region:ami-id[,region:ami-id]": the first is the build region.
        region, _, ami = ids[-1].split(",")[0].partition(":")
        return {"ami": ami, "region": region}

    def missing(self, fingerprint: str, artifact: Mapping[str, str],
                profile: CommonProfile) -> str | None:
        import boto3  # lazy: an optional extra, and a slow import

        region = artifact.get("region") or getattr(profile, "region", None)
        ec2 = boto3.client("ec2", region_name=region)
        images = ec2.describe_images(
            Owners=["self"], Filters=[{"Name": "tag:fabperf:fingerprint", "Values": [fingerprint]}],
        )["Images"]
        return None if images else "the manifest's artifact is gone from the cloud"

    def notes(self, profile: CommonProfile, packer_version: packer.Version) -> list[str]:
        """Packer 1.6.6's amazon-ebs rejects metadata_options (render leaves it out before
        the plugin era): say that IMDSv2 is not enforced."""
        if packer_version < render.REQUIRED_PLUGINS_SINCE and \
                getattr(profile, "imdsv2_required", False):
            return [f"Packer {packer.format_version(packer_version)} cannot require IMDSv2 "
                    "(metadata_options needs Packer >= 1.7); launch must set it on instances"]
        return []
