"""Every goss spec of every image parses under the REAL goss, with exactly the variables a
bake passes (bake.render.script_environment), through the same single wrapper gossfile the
bake's template writes (goss takes one -g file; the specs are included by a glob).

The goss binary: $GOSS_BINARY (CI passes the shared one), else the cached pinned release."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from bake import build, catalog, profiles, render
from bake.profiles import Provider

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _goss() -> str:
    chosen = os.environ.get("GOSS_BINARY") or str(
        REPO / "build/cache/goss" / f"goss-{build.GOSS_VERSION}-linux-amd64")
    if not Path(chosen).is_file():
        pytest.skip("no goss binary: set GOSS_BINARY=PATH (CI passes the shared one)")
    return chosen


def _vars(image: str) -> str:
    spec = catalog.load_image(REPO, image)
    prof = profiles.resolve(Provider.QEMU, profiles.make_overrides(None, [], env={}))
    return json.dumps(render.script_environment(spec, Provider.QEMU, prof, "f" * 64),
                      sort_keys=True, separators=(",", ":"))


@pytest.mark.parametrize("image", catalog.image_names(REPO))
def test_every_spec_renders_under_real_goss_with_the_bake_s_variables(
        image: str, tmp_path: Path) -> None:
    goss = _goss()
    spec = catalog.load_image(REPO, image)
    specs = tmp_path / "specs"
    specs.mkdir()
    for g in spec.goss:   # as the template uploads them
        (specs / g.replace("/", "__")).write_bytes((REPO / "images" / g).read_bytes())
    wrapper = tmp_path / "goss.yaml"
    wrapper.write_text(f"gossfile:\n  {specs}/*.yaml: {{}}\n")
    for gossfile in [wrapper, *sorted(specs.iterdir())]:
        proc = subprocess.run([goss, "-g", str(gossfile), "--vars-inline", _vars(image),
                               "render"], capture_output=True, text=True, timeout=60,
                              check=False)
        assert proc.returncode == 0, f"{gossfile.name}: {proc.stderr}"
        doc = yaml.safe_load(proc.stdout)
        assert isinstance(doc, dict) and doc, gossfile
    # the wrapper brings in every check of every spec
    merged = yaml.safe_load(subprocess.run(
        [goss, "-g", str(wrapper), "--vars-inline", _vars(image), "render"],
        capture_output=True, text=True, timeout=60, check=True).stdout)
    assert "command" in merged and any("private keys" in k for k in merged["command"])


def test_a_missing_variable_is_an_error_under_real_goss(tmp_path: Path) -> None:
    goss = _goss()
    spec = tmp_path / "s.yaml"
    spec.write_text('{{if .Vars.SEALED}}\ncommand: {}\n{{end}}\nfile: {"/etc": {exists: true}}\n')
    proc = subprocess.run([goss, "-g", str(spec), "--vars-inline", "{}", "render"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0 and "SEALED" in proc.stderr
    # ... which is why hygiene.yaml asks `index .Vars "SEALED"`
    assert '{{if index .Vars "SEALED"}}' in (REPO / "images/common/goss/hygiene.yaml").read_text()
