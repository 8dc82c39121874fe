"""Every rendered user-data passes the real `cloud-init schema --config-file` (Debian's
cloud-init), and the validator really rejects a malformed one (so a pass means something)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fabkit import runner
from launch.render import bundle, cloudinit
from launch.spec import env as spec

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("cloud-init") is None,
                       reason="cloud-init is not installed (make deps)"),
]


def _schema(path: Path) -> runner.Completed:
    return runner.run(["cloud-init", "schema", "--config-file", str(path)], check=False,
                      what="cloud-init schema")


@pytest.mark.parametrize("example", ["local", "aws", "openstack"])
def test_every_user_data_is_valid_cloud_config(example: str, tmp_path: Path) -> None:
    env = spec.load(REPO / "environments" / f"{example}.yaml")
    result = bundle.render(env, tmp_path / "bundle", manifest_root=tmp_path)
    assert len(result.user_data) == len(result.plan.hosts)
    for host, ud in result.user_data.items():
        assert (tmp_path / "bundle" / "nodes" / host / "user-data").read_bytes() == ud.data
        # cloud-init inflates gzip user-data itself; `schema` wants the text.
        text = tmp_path / f"{host}.cloud-config"
        text.write_bytes(cloudinit.decode(ud.data))
        done = _schema(text)
        assert done.returncode == 0, f"{example}/{host}: {done.stdout}{done.stderr}"
        assert "Valid cloud-config" in done.stdout + done.stderr


def test_the_validator_rejects_a_bad_write_files_entry(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cloud-config"
    bad.write_text("#cloud-config\nwrite_files:\n- path: /etc/x\n  contnt: typo\n")
    done = _schema(bad)
    assert done.returncode != 0
    assert "contnt" in done.stdout + done.stderr
