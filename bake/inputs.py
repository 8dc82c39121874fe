"""The one input boundary: reading user files and checking mappings against field rules.

Minimal version for the provider settings (issue 11); the full boundary (issue 9) keeps
these signatures.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bake.errors import InputError


class Required:
    """Sentinel type: a Rule without a default must be given."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = Required()


@dataclass(frozen=True)
class Rule:
    """One field of a mapping: its name, type, default and bounds."""

    name: str
    kind: type | tuple[type, ...]
    default: Any = REQUIRED
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    why: str = ""
    choices: tuple[Any, ...] | None = None
    doc: str = ""


def excerpt(value: Any, limit: int = 80) -> str:
    """A bounded repr for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_text(path: Path, *, what: str, max_bytes: int = 4 * 2**20) -> str:
    """The file's text: size-limited, UTF-8; InputError naming the file otherwise."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what}: {exc.strerror}") from None
    if len(data) > max_bytes:
        raise InputError(f"{path}: the {what} is larger than {max_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: the {what} is not UTF-8 (byte {exc.start})") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses duplicate keys."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise InputError(f"duplicate key {excerpt(key)} at line {key_node.start_mark.line + 1}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml(text: str, *, source: str | Path, max_depth: int = 64,
              max_aliases: int = 100) -> Any:
    """Safe YAML; duplicate keys, too many aliases or too deep nesting -> InputError."""
    if text.count("*") > max_aliases and len(re.findall(r"\*[\w-]+", text)) > max_aliases:
        raise InputError(f"{source}: more than {max_aliases} YAML aliases")
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except InputError as exc:
        raise InputError(f"{source}: {exc.message}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: not valid YAML: {exc}") from None

    def depth(v: Any, d: int) -> None:
        if d > max_depth:
            raise InputError(f"{source}: nested deeper than {max_depth} levels")
        if isinstance(v, Mapping):
            for x in v.values():
                depth(x, d + 1)
        elif isinstance(v, list):
            for x in v:
                depth(x, d + 1)

    depth(data, 0)
    return data


def load_yaml_file(path: Path, *, what: str) -> Any:
    """read_text + load_yaml."""
    return load_yaml(read_text(path, what=what), source=path)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a mapping", type(None): "null"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _is_kind(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, int) and float in kinds:
        return True
    return isinstance(value, tuple(kinds))


def _check(rule: Rule, value: Any, source: str | Path | None, where: str) -> Any:
    if not _is_kind(value, rule.kind):
        raise InputError.field(source, where, _kind_name(rule.kind), value)
    why = f" ({rule.why})" if rule.why else ""
    if rule.choices is not None and value not in rule.choices:
        raise InputError.field(source, where, f"one of {list(rule.choices)}", value)
    if rule.pattern is not None and isinstance(value, str) \
            and not re.fullmatch(rule.pattern, value):
        raise InputError.field(source, where, f"a string matching {rule.pattern}", value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if rule.minimum is not None and value < rule.minimum:
            raise InputError.field(source, where, f"at least {rule.minimum:g}", value)
        if rule.maximum is not None and value > rule.maximum:
            raise InputError.field(source, where, f"at most {rule.maximum:g}{why}", value)
    if isinstance(value, list | dict | str) and rule.maximum is not None \
            and not isinstance(value, str) and len(value) > rule.maximum:
        raise InputError.field(source, where, f"at most {rule.maximum:g} entries{why}",
                               excerpt(value))
    return value


def check_fields(data: Any, rules: Sequence[Rule], *, source: str | Path | None,
                 path: str) -> dict[str, Any]:
    """Check a mapping against its rules; unknown keys name the closest known one."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise InputError.field(source, path, "a mapping", excerpt(data))
    by_name = {r.name: r for r in rules}
    prefix = f"{path}." if path else ""
    for key in data:
        if key not in by_name:
            close = difflib.get_close_matches(str(key), list(by_name), n=1)
            hint = f"did you mean {close[0]!r}?" if close else None
            raise InputError.field(source, f"{prefix}{key}", f"one of {sorted(by_name)}", key,
                                   hint=hint)
    out: dict[str, Any] = {}
    for rule in rules:
        where = f"{prefix}{rule.name}"
        if rule.name in data:
            out[rule.name] = _check(rule, data[rule.name], source, where)
        elif isinstance(rule.default, Required):
            raise InputError.field(source, where, f"{_kind_name(rule.kind)} (required)", None)
        else:
            out[rule.name] = _check(rule, rule.default, source, where)
    return out
