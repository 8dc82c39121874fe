"""`--set [IMAGE.]NAME=VALUE` overrides pinned versions, and a typo is an error."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bake import catalog
from bake.cli import cli
from fabkit.errors import InputError

REPO = Path(__file__).resolve().parents[3]


def _specs() -> dict[str, catalog.ImageSpec]:
    return {s.name: s for s in catalog.load_catalog(REPO)}


def test_scoped_override_changes_only_that_image() -> None:
    before = _specs()
    after = {s.name: s for s in catalog.override_versions(
        list(before.values()), ["monitor.GRAFANA_SOURCE=none"])}
    assert after["monitor"].versions_dict["GRAFANA_SOURCE"] == "none"
    assert after["monitor"].raw["versions"]["GRAFANA_SOURCE"] == "none"  # fingerprinted
    assert after["caliper-worker"] == before["caliper-worker"]
    assert after["fabric-node"] == before["fabric-node"]


def test_unscoped_override_goes_to_every_image_that_pins_it() -> None:
    specs = catalog.override_versions(list(_specs().values()), ["NODE_MAJOR=20"])
    pinned = [s.name for s in specs if "NODE_MAJOR" in s.versions_dict]
    assert pinned and all(s.versions_dict["NODE_MAJOR"] == "20" for s in specs
                          if s.name in pinned)


@pytest.mark.parametrize("text", ["GRAFANA_SORCE=none", "caliper-worker.GRAFANA_SOURCE=none",
                                  "no-equals-sign", "lower_case=1"])
def test_bad_override_is_input_error(text: str) -> None:
    with pytest.raises(InputError, match="--set"):
        catalog.override_versions(list(_specs().values()), [text])


def test_cli_bad_override_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    build_dir = tmp_path / "build"
    res = CliRunner().invoke(cli, ["render", "--set", "FABRIC_REFF=v3.0.0",
                                   "--build-dir", str(build_dir)], standalone_mode=False)
    assert isinstance(res.exception, InputError) and res.exception.exit_code == 2
    assert not build_dir.exists()
