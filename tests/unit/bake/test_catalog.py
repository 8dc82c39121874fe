"""bake.catalog: image.yaml -> ImageSpec, and every kind of bad input named precisely."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from bake_fakerepo import edit_yaml

from bake import catalog
from bake.catalog import Base
from fabkit.errors import InputError


def test_loads_the_three_images(fake_repo: Path) -> None:
    specs = catalog.load_catalog(fake_repo)
    assert [s.name for s in specs] == ["caliper-worker", "fabric-node", "monitor"]
    fabric = specs[1]
    assert fabric.base is Base.DEBIAN_12
    assert fabric.scripts[0] == "common/base.sh" and fabric.scripts[-1] == "common/cleanup.sh"
    assert fabric.versions_dict["FABRIC_REF"] == "v3.0.0"
    assert fabric.script_paths(fake_repo)[0] == fake_repo / "packer/scripts/common/base.sh"


def test_the_real_catalog_loads(repo: Path) -> None:
    # Every script, file and goss spec the real image.yaml files name exists.
    specs = catalog.load_catalog(repo)
    assert [s.name for s in specs] == ["caliper-worker", "fabric-node", "monitor"]
    assert all(s.goss and s.scripts for s in specs)


def _error(root: Path, name: str) -> str:
    with pytest.raises(InputError) as info:
        catalog.load_image(root, name)
    assert info.value.exit_code == 2
    return str(info.value)


def test_misspelled_key_names_file_and_key(fake_repo: Path) -> None:
    path = fake_repo / "images/monitor/image.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["scirpts"] = doc.pop("scripts")
    path.write_text(yaml.safe_dump(doc))
    msg = _error(fake_repo, "monitor")
    assert "images/monitor/image.yaml: scirpts" in msg
    assert "did you mean 'scripts'" in msg


def test_wrong_type_names_field(fake_repo: Path) -> None:
    edit_yaml(fake_repo / "images/monitor/image.yaml", disk_size_gb="ten")
    msg = _error(fake_repo, "monitor")
    assert "images/monitor/image.yaml: disk_size_gb: expected a positive integer" in msg
    assert "'ten'" in msg


def test_unquoted_number_in_versions(fake_repo: Path) -> None:
    edit_yaml(fake_repo / "images/caliper-worker/image.yaml", versions={"NODE_MAJOR": 18})
    msg = _error(fake_repo, "caliper-worker")
    assert "versions.NODE_MAJOR: expected a string (quote numbers), found 18" in msg


def test_missing_script_names_index_and_path(fake_repo: Path) -> None:
    (fake_repo / "packer/scripts/monitor/monitor.sh").unlink()
    msg = _error(fake_repo, "monitor")
    assert "images/monitor/image.yaml: scripts[2]" in msg
    assert "packer/scripts/monitor/monitor.sh" in msg


def test_missing_goss_and_files(fake_repo: Path) -> None:
    (fake_repo / "images/monitor/goss/monitor.yaml").unlink()
    assert "goss[0]" in _error(fake_repo, "monitor")
    edit_yaml(fake_repo / "images/fabric-node/image.yaml", files=["packer/files/nope"])
    assert "files[0]" in _error(fake_repo, "fabric-node")


def test_paths_may_not_escape(fake_repo: Path) -> None:
    edit_yaml(fake_repo / "images/monitor/image.yaml", scripts=["../../etc/passwd"])
    assert "scripts[0]: expected a path inside packer/scripts" in _error(fake_repo, "monitor")


def test_missing_required_key_and_bad_base(fake_repo: Path) -> None:
    path = fake_repo / "images/monitor/image.yaml"
    doc = yaml.safe_load(path.read_text())
    del doc["build_cpus"]
    path.write_text(yaml.safe_dump(doc))
    assert "build_cpus: expected a positive integer, found 'nothing" in _error(fake_repo,
                                                                                "monitor")
    edit_yaml(path, build_cpus=2, base="centos-7")
    assert "base: expected one of debian-12" in _error(fake_repo, "monitor")


def test_name_must_match_directory(fake_repo: Path) -> None:
    edit_yaml(fake_repo / "images/monitor/image.yaml", name="grafana")
    assert "name: expected 'monitor'" in _error(fake_repo, "monitor")


def test_unknown_image(fake_repo: Path) -> None:
    with pytest.raises(InputError, match="unknown image 'nope'") as info:
        catalog.load_catalog(fake_repo, ["nope"])
    assert "caliper-worker, fabric-node, monitor" in str(info.value)


def test_files_of_walks_directories_sorted(fake_repo: Path) -> None:
    spec = catalog.load_image(fake_repo, "monitor")
    rel = [p.relative_to(fake_repo).as_posix() for p in catalog.files_of(fake_repo, spec)]
    assert rel == sorted(rel)
    assert "dashboards/fabperf.json" in rel and "packer/files/monitor/prometheus.yml" in rel
    assert "packer/files/fabric-node/core.yaml" not in rel


@pytest.mark.parametrize(("text", "message"), [
    (b"description: caf\xe9\n", "images/monitor/image.yaml: image file is not UTF-8"),
    (b"name: monitor\nname: monitor\n", "images/monitor/image.yaml: duplicate key 'name'"),
    (b"a0: &a0 [l,l,l,l,l,l,l,l,l]\n" + b"".join(
        b"a%d: &a%d [" % (i, i) + b",".join([b"*a%d" % (i - 1)] * 9) + b"]\n"
        for i in range(1, 9)) + b"description: *a8\n", "alias bomb"),
    (b"description: " + b"[" * 100 + b"]" * 100 + b"\n", "nesting deeper than 64"),
])
def test_hostile_image_yaml_is_an_input_error(fake_repo: Path, text: bytes, message: str) -> None:
    (fake_repo / "images/monitor/image.yaml").write_bytes(text)
    msg = _error(fake_repo, "monitor")
    assert message in msg and len(msg) < 300, msg


def test_image_integer_fields_have_upper_bounds(fake_repo: Path) -> None:
    path = fake_repo / "images/monitor/image.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["build_cpus"] = 100000
    path.write_text(yaml.safe_dump(doc))
    assert "build_cpus: expected at most 256, found 100000" in _error(fake_repo, "monitor")


def test_hostile_profile_config_is_an_input_error(tmp_path: Path) -> None:
    from bake import profiles

    p = tmp_path / "c.yaml"
    p.write_bytes(b"qemu:\n  cpus: \xff\n")
    with pytest.raises(InputError, match="c.yaml: profile config .*is not UTF-8"):
        profiles.load_config(p)
    p.write_bytes(b"qemu: {}\nqemu: {}\n")
    with pytest.raises(InputError, match="duplicate key 'qemu'"):
        profiles.load_config(p)


def test_an_overlong_script_path_is_an_input_error(fake_repo: Path) -> None:
    """Found by benchmarks/fuzz_inputs.py: ENAMETOOLONG escaped from is_file()."""
    path = fake_repo / "images/monitor/image.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["scripts"] = ["a" * 3000]
    path.write_text(yaml.safe_dump(doc))
    msg = _error(fake_repo, "monitor")
    assert "scripts[0]: expected a path of at most 1024 characters" in msg and len(msg) < 300
