"""Property-based tests (hypothesis) of the input boundary and the bundle.

- Any mutation of an example spec, and any text handed to the YAML loader, gives a spec or
  fabperf's own InputError: never another exception.
- Every environment the spec accepts renders into a bundle whose private keys are 0600,
  whose user-data parses as YAML and fits the provider's budget.

Bounded in time: a fixed number of examples each (about 30 s in all on a loaded 2-core
machine), derandomized so a CI failure reproduces.
"""

from __future__ import annotations

import copy
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabkit.errors import InputError
from fabkit.inputs import load_yaml
from launch.render import bundle, cloudinit
from launch.spec import env as spec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "launch"))
from launch_testlib import EXAMPLES, example

FAST = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=8, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True),
    st.text(max_size=40), st.sampled_from(["", "\n", "Org1MSP\n", "x" * 300, "1.0", "-1",
                                           "10.77.0.1", "10.77.0.255", "BFT", "none"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=8)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _set(doc: Any, path: tuple, value: Any, delete: bool) -> Any:
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = value
    return doc


BASES = {name: example(name) for name in ("local", "aws", "openstack", "big")}


@FAST
@given(base=st.sampled_from(sorted(BASES)), data=st.data())
def test_any_mutated_spec_is_a_spec_or_an_input_error(base: str, data: st.DataObject) -> None:
    doc = copy.deepcopy(BASES[base])
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = data.draw(st.sampled_from(paths))
        doc = _set(doc, path, data.draw(values), data.draw(st.booleans()))
    try:
        spec.parse(doc, Path("fuzz.yaml"))
    except InputError as exc:
        assert len(str(exc)) < 2000  # bounded excerpts, however big the value


yaml_text = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(["a: 1", "a: 2", "&x [1]", "*x", "- ", "{", "}", "[", "]",
                              "b: &y {c: *y}", "<<: *x", "? [1]", ": x", "'", "\"", "\t",
                              "\xff", "!!python/object:os.system", "%YAML 1.1", "---"]),
             max_size=20).map("\n".join),
)


@FAST
@given(text=yaml_text)
def test_any_text_loads_or_is_an_input_error(text: str) -> None:
    try:
        load_yaml(text, source="fuzz.yaml")
    except InputError:
        pass


topologies = st.fixed_dictionaries({
    "provider": st.sampled_from(["aws", "openstack", "qemu"]),
    "orgs": st.lists(st.tuples(st.integers(1, 3), st.integers(0, 3)), min_size=1, max_size=3),
    "orderers": st.integers(1, 3),
    "bft": st.booleans(),
    "vms": st.integers(1, 3),
    "processes": st.integers(1, 4),
})


def _doc(t: dict) -> dict:
    doc = copy.deepcopy(BASES["aws"])
    doc["provider"] = t["provider"]
    doc["settings"] = {}
    doc["organisations"] = [{"name": f"Org{i + 1}", "peers": p, "users": u}
                            for i, (p, u) in enumerate(t["orgs"])]
    doc["channels"] = [{"name": "mychannel"}]
    doc["orderers"] = {"count": 4 if t["bft"] else t["orderers"],
                       "type": "BFT" if t["bft"] else "etcdraft"}
    doc["caliper"]["workers"] = {"vms": t["vms"], "processes": t["processes"]}
    doc.pop("placement", None)
    return doc


@SLOW
@given(t=topologies)
def test_every_accepted_environment_renders_a_sound_bundle(t: dict, tmp_path_factory) -> None:
    env = spec.parse(_doc(t), Path("prop.yaml"))
    out = tmp_path_factory.mktemp("b") / "bundle"
    old = os.umask(0)  # modes must not depend on it
    try:
        result = bundle.render(env, out, manifest_root=out.parent)
    finally:
        os.umask(old)
    for dirpath, _, files in os.walk(out / "crypto"):
        for f in files:
            mode = stat.S_IMODE(os.stat(os.path.join(dirpath, f)).st_mode)
            secret = f.endswith(("_sk", ".key")) or os.path.basename(dirpath) == "keystore"
            assert mode == (0o600 if secret else 0o644), (dirpath, f, oct(mode))
    assert {h.name for h in result.plan.hosts} == set(result.user_data)
    for host, ud in result.user_data.items():
        raw = (out / "nodes" / host / "user-data").read_bytes()
        assert raw == ud.data and stat.S_IMODE(os.stat(out / "nodes" / host /
                                                       "user-data").st_mode) == 0o600
        text = cloudinit.decode(raw)
        assert text.startswith(cloudinit.HEADER)
        doc = yaml.safe_load(text)
        assert isinstance(doc, dict) and doc["write_files"]
        assert env.provider.facts.user_data.fits(raw)  # within the provider's budget
    assert all(name.startswith("bundle") for name in os.listdir(out.parent)
               if not name.startswith(".bundle.lock"))


def test_examples_are_still_accepted() -> None:
    for name in BASES:
        spec.load(EXAMPLES / f"{name}.yaml")


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
