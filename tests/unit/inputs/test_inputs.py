"""fabkit.inputs: the one input boundary (reading, YAML/JSON, field rules, excerpts)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fabkit import inputs
from fabkit.errors import InputError, excerpt
from fabkit.inputs import REQUIRED, Rule, check_fields, load_yaml


def bomb(levels: int = 9, width: int = 9) -> str:
    """The billion-laughs document of the issue: `name: *a8`, nine levels of nine."""
    lines = ["a0: &a0 [" + ",".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + f"\nname: *a{levels - 1}\n"


def test_alias_bomb_is_refused_quickly_with_a_bounded_message():
    t0 = time.monotonic()
    with pytest.raises(InputError, match="alias bomb") as exc:
        load_yaml(bomb(), source="s.yaml")
    assert time.monotonic() - t0 < 1
    assert len(str(exc.value)) < 200


def test_few_aliases_expanding_hugely_are_refused_too():
    with pytest.raises(InputError, match="expand the document beyond"):
        load_yaml(bomb(levels=10, width=10), source="s.yaml", max_aliases=1000)


def test_too_many_aliases_are_refused():
    text = "a: &a 1\nb: [" + ",".join(["*a"] * 101) + "]\n"
    with pytest.raises(InputError, match="more than 100 aliases"):
        load_yaml(text, source="s.yaml")
    assert load_yaml("a: &a {x: 1}\nb: *a\n", source="s") == {"a": {"x": 1}, "b": {"x": 1}}


@pytest.mark.parametrize(("text", "message"), [
    ("a: 1\nb: 2\na: 3\n", "duplicate key 'a' (line 3, column 1)"),
    ("x:\n  y: 1\n  y: 1\n", "duplicate key 'y'"),
    ("&a [*a]", "recursive alias"),
    ("x: " + "[" * 65 + "]" * 65, "nesting deeper than 64 levels"),
    ("x: {a: 1", "not valid YAML"),
    ("? [1, 2]\n: x\n", "not a scalar"),
])
def test_bad_yaml_is_an_input_error(text, message):
    with pytest.raises(InputError) as exc:
        load_yaml(text, source="s.yaml")
    assert message in str(exc.value) and str(exc.value).startswith("s.yaml: ")


def test_merge_keys_still_work():
    assert load_yaml("b: &b {x: 1}\nc:\n  <<: *b\n  y: 2\n", source="s")["c"] == {"x": 1, "y": 2}


def test_read_text_refuses_non_utf8_big_and_missing(tmp_path: Path):
    p = tmp_path / "f.yaml"
    p.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(InputError, match=r"f.yaml: spec is not UTF-8 text \(byte 9, line 1"):
        inputs.read_text(p, what="spec")
    p.write_bytes(b"x" * 101)
    with pytest.raises(InputError, match="larger than 100 bytes"):
        inputs.read_text(p, what="spec", max_bytes=100)
    with pytest.raises(InputError, match="cannot read the spec"):
        inputs.read_text(tmp_path / "nope", what="spec")
    with pytest.raises(InputError, match="cannot read the spec"):
        inputs.read_text(tmp_path, what="spec")


def test_json_refuses_duplicates_and_depth():
    with pytest.raises(InputError, match="duplicate key 'a'"):
        inputs.load_json('{"a": 1, "a": 2}', source="s.json")
    with pytest.raises(InputError, match="nesting deeper than 64"):
        inputs.load_json("[" * 100000 + "]" * 100000, source="s.json")


RULES = (
    Rule("name", str, pattern=r"[a-z]+"),
    Rule("count", int, default=1, minimum=1, maximum=10, why="ten is plenty"),
    Rule("ratio", float, default=0.5),
    Rule("on", bool, default=False),
    Rule("kind", str, default="a", choices=("a", "b")),
)


def test_check_fields_fills_validated_defaults():
    assert check_fields({"name": "x", "ratio": 1}, RULES, source="f", path="top") == {
        "name": "x", "count": 1, "ratio": 1.0, "on": False, "kind": "a"}


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "x\n"}, "top.name: expected a string matching [a-z]+, found 'x\\n'"),
    ({"name": "x", "count": True}, "top.count: expected an integer from 1 to 10, found True"),
    ({"name": "x", "count": 11}, "hint: the limit is 10: ten is plenty"),
    ({"name": "x", "on": 1}, "top.on: expected true or false, found 1"),
    ({"name": "x", "kind": "c"}, "top.kind: expected one of a, b, found 'c'"),
    ({"nmae": "x"}, "top.nmae: expected one of the known keys"),
    ({"count": 2}, "top.name: expected a string matching [a-z]+ (required field)"),
    ([1], "top: expected a mapping, found [1]"),
])
def test_check_fields_errors(data, message):
    with pytest.raises(InputError) as exc:
        check_fields(data, RULES, source="f", path="top")
    assert message in str(exc.value), str(exc.value)


def test_a_bad_default_is_caught_too():
    with pytest.raises(InputError, match="expected an integer"):
        check_fields({}, [Rule("n", int, default="x")], source=None, path="")


def test_excerpt_is_bounded():
    assert excerpt("x" * 10000).endswith("(10002 chars)") and len(excerpt("x" * 10000)) < 90
    loop: list = []
    loop.append(loop)
    assert len(excerpt(loop)) <= 80
    assert repr(REQUIRED) == "REQUIRED"


def test_control_characters_are_an_input_error():
    """Found by the property test: PyYAML's reader rejects them in the loader's constructor."""
    with pytest.raises(InputError, match="not valid YAML"):
        load_yaml("\x1f", source="s.yaml")


def test_json_brackets_inside_strings_are_not_nesting():
    """A state file's error text may hold a log tail full of ANSI escapes (ESC[0m)."""
    doc = inputs.load_json('{"error": "' + "\\u001b[0m" * 500 + '"}', source="s.json")
    assert doc["error"].count("[") == 500
    with pytest.raises(InputError, match="nesting deeper than 3 levels"):
        inputs.load_json('[[[[1]]]]', source="s.json", max_depth=3)


def test_mutable_defaults_are_not_shared():
    rules = [Rule("items", list, default=[])]
    a = check_fields({}, rules, source=None, path="")
    a["items"].append(1)
    assert check_fields({}, rules, source=None, path="")["items"] == [] and rules[0].default == []
