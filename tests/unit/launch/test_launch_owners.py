"""Every file user-data writes is owned by an account the host's image really has."""

from __future__ import annotations

from pathlib import Path

import pytest
from launch_testlib import REPO, cloud_config, render

from bake import catalog, goss
from launch.spec.contract import CALIPER_USER, FABRIC_USER, IMAGE_USERS, Role


@pytest.mark.parametrize("example_name", ["local", "aws"])
def test_write_files_owners_exist_in_the_image(example_name: str, tmp_path: Path) -> None:
    bundle = render(example_name, tmp_path / "bundle")
    for host in bundle.plan.hosts:
        users = {u for role in host.roles for u in IMAGE_USERS[Role(role).image()]}
        doc = cloud_config(bundle.user_data[host.name].data)
        for f in doc["write_files"]:
            user, _, group = f["owner"].partition(":")
            assert {user, group or user} <= users, (host.name, f["path"], f["owner"])


def test_the_images_goss_specs_check_those_accounts() -> None:
    assert IMAGE_USERS["fabric-node"][1] == FABRIC_USER
    assert IMAGE_USERS["caliper-worker"][1] == CALIPER_USER
    for image, users in IMAGE_USERS.items():
        spec = catalog.load_image(REPO, image)
        declared = {c.name: c.attrs for path in spec.goss_paths(REPO)
                    for c in goss.load_spec(path, spec.versions_dict) if c.rtype == "user"}
        for user in users:
            if user != "root":
                assert declared.get(user, {}).get("exists") is True, (image, user)
