"""goss specs: they parse, use only the resource types and attributes goss (and bake.goss)
know, with every variable combination the bake passes; the template subset; errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bake import goss
from fabkit.errors import InputError

REPO = Path(__file__).resolve().parents[3]
# The resource types of goss itself (goss docs/gossfile.md), a superset of what the runner does.
GOSS_TYPES = {"addr", "command", "dns", "file", "gossfile", "group", "http", "interface",
              "kernel-param", "matching", "mount", "package", "port", "process", "service",
              "user"}


def _versions(image: str) -> dict:
    return yaml.safe_load((REPO / "images" / image / "image.yaml").read_text())["versions"]


def _cases() -> list[tuple[str, str, dict]]:
    cases = []
    for image in ("fabric-node", "caliper-worker", "monitor"):
        spec = yaml.safe_load((REPO / "images" / image / "image.yaml").read_text())
        variants = [_versions(image)]
        if image == "monitor":
            variants.append({**_versions(image), "GRAFANA_SOURCE": "none"})
        variants.append({**_versions(image), "SEALED": True})
        for rel in spec["goss"]:
            for v in variants:
                cases.append((image, rel, v))
    return cases


@pytest.mark.parametrize(("image", "rel", "variables"), _cases(),
                         ids=lambda x: x if isinstance(x, str) else "")
def test_spec_parses_with_known_types_only(image: str, rel: str, variables: dict) -> None:
    path = REPO / "images" / rel
    checks = goss.load_spec(path, variables)
    assert checks, f"{rel}: no checks"
    assert {c.rtype for c in checks} <= GOSS_TYPES
    rendered = yaml.safe_load(goss.render(path.read_text(), variables, str(path)))
    assert set(rendered) <= GOSS_TYPES


def test_grafana_checks_are_skipped_only_when_grafana_source_is_none() -> None:
    path = REPO / "images/monitor/goss/monitor.yaml"
    names = lambda v: {(c.rtype, c.name) for c in goss.load_spec(path, v)}  # noqa: E731
    base = _versions("monitor")
    assert ("package", "grafana") in names({**base, "GRAFANA_SOURCE": "apt"})
    assert ("service", "grafana-server") in names({**base, "GRAFANA_SOURCE": "deb"})
    assert ("package", "grafana") not in names({**base, "GRAFANA_SOURCE": "none"})


def test_sealed_hygiene_adds_the_post_seal_checks() -> None:
    path = REPO / "images/common/goss/hygiene.yaml"
    connected = {c.name for c in goss.load_spec(path, {})}
    sealed = {c.name for c in goss.load_spec(path, {"SEALED": True})}
    assert "machine-id is empty" in sealed - connected
    assert "/var/lib/cloud/instance" in sealed - connected


def test_fabric_node_units_are_installed_disabled_and_ports_closed() -> None:
    checks = goss.load_spec(REPO / "images/fabric-node/goss/fabric-node.yaml", {})
    svc = {c.name: c.attrs for c in checks if c.rtype == "service"}
    assert svc["fabric-peer"] == {"enabled": False, "running": False}
    assert svc["fabric-orderer"] == {"enabled": False, "running": False}
    ports = {c.name for c in checks if c.rtype == "port" and c.attrs["listening"] is False}
    assert {"tcp:7050", "tcp:7051", "tcp:9443", "tcp:8443"} <= ports


def test_template_subset() -> None:
    text = ('a: "{{.Vars.X}}"\n{{if .Vars.F}}b: 1\n{{else}}b: 2\n{{end}}'
            '{{if eq .Vars.X "v"}}c: 3\n{{end}}{{if ne .Vars.X "v"}}d: 4\n{{end}}'
            '{{if not .Vars.F}}e: 5\n{{end}}{{if index .Vars "MISSING"}}f: 6\n{{end}}'
            '{{if index .Vars "X"}}g: 7\n{{end}}')
    out = yaml.safe_load(goss.render(text, {"X": "v", "F": False}))
    assert out == {"a": "v", "b": 2, "c": 3, "e": 5, "g": 7}


def test_a_missing_var_in_a_condition_is_an_error_as_in_real_goss() -> None:
    # Real goss runs templates with missingkey=error: `{{if .Vars.SEALED}}` without SEALED
    # fails there, so the runner must fail too (optional ones use `index .Vars "X"`).
    with pytest.raises(InputError, match='no entry for key "SEALED"'):
        goss.render("{{if .Vars.SEALED}}a: 1\n{{end}}", {}, "s.yaml")


def test_template_refuses_unsupported_actions() -> None:
    with pytest.raises(InputError, match="template"):
        goss.render("{{range .Vars.L}}x{{end}}", {"L": [1]}, "s.yaml")


def test_template_refuses_printing_a_missing_var() -> None:
    with pytest.raises(InputError, match="MISSING"):
        goss.render("a: {{.Vars.MISSING}}", {}, "s.yaml")


def test_unknown_resource_type_is_an_error(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("http:\n  http://localhost:9090:\n    status: 200\n")
    with pytest.raises(InputError, match="http"):
        goss.load_spec(spec)


def test_unknown_attribute_is_an_error(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("file:\n  /etc/passwd:\n    exists: true\n    sha256: abc\n")
    with pytest.raises(InputError, match=r"file\./etc/passwd\.sha256"):
        goss.load_spec(spec)


def test_pattern_matcher_semantics() -> None:
    text = "Version: 3.0.0\nCommit SHA: abc"
    ok, _ = goss._match_patterns(text, ["3.0.0", "/^Commit/", "!dev"], "x")
    assert ok
    ok, msg = goss._match_patterns("Version: 3.0.0", ["!3.0.0"], "x")
    assert not ok and "found" in msg
    ok, msg = goss._match_patterns("abc", ["/^b/"], "x")
    assert not ok and "not found" in msg


def test_junit_output(tmp_path: Path) -> None:
    results = [goss.Result("s.yaml", "file", "/a", "exists", ok=True),
               goss.Result("s.yaml", "file", "/b", "mode", ok=False, message="expected 0644"),
               goss.Result("s.yaml", "port", "tcp:1", "listening", ok=True, skipped=True,
                           message="chroot")]
    out = tmp_path / "junit.xml"
    goss.write_junit(results, out)
    import xml.etree.ElementTree as ET

    suite = ET.parse(out).getroot()
    assert suite.get("tests") == "3" and suite.get("failures") == "1"
    assert suite.get("skipped") == "1"
    assert suite.find("testcase/failure").get("message") == "expected 0644"
