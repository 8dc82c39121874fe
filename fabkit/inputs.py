"""The one input boundary: every file a user (or an earlier run) hands fabperf enters here.

Environment specs, image.yaml, `bake --config`, state.json and manifest.json are read with
``read_text`` (size-limited, UTF-8 decoded) and parsed with ``load_yaml``/``load_json``
(duplicate keys, alias bombs and deep nesting refused), and their fields checked against a
table of ``Rule`` (full-match patterns, bounds that say why, validated defaults). Every
problem is an InputError naming the file and field, with a bounded excerpt of the value.
"""

from __future__ import annotations

import builtins
import copy
import difflib
import json
import math
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import yaml

from fabkit.errors import InputError, excerpt

MAX_BYTES = 4 * 2**20
E = TypeVar("E", bound=StrEnum)


class Required:
    """The type of REQUIRED: a rule without a default."""

    _instance: Required | None = None

    def __new__(cls) -> Required:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = Required()


@dataclass(frozen=True)
class Rule:
    """How one key of a mapping is checked."""

    name: str
    kind: type | tuple[type, ...]
    default: Any = REQUIRED
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    why: str = ""
    choices: tuple[Any, ...] | None = None
    doc: str = ""

    def expected(self) -> str:
        """What a valid value looks like, in words (for error messages and docs)."""
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        words = " or ".join(_KIND_WORDS.get(k, k.__name__) for k in kinds)
        if self.choices is not None:
            words = "one of " + ", ".join(map(str, self.choices))
        if self.pattern is not None:
            words += f" matching {self.pattern}"
        if self.minimum is not None and self.maximum is not None:
            words += f" from {_num(self.minimum)} to {_num(self.maximum)}"
        elif self.minimum is not None:
            words += f" >= {_num(self.minimum)}"
        elif self.maximum is not None:
            words += f" <= {_num(self.maximum)}"
        if self.doc:
            words = f"{self.doc} ({words})"
        return words


_KIND_WORDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "a list", dict: "a mapping"}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def read_text(path: Path, *, what: str, max_bytes: int = MAX_BYTES) -> str:
    """The file's text: read as bytes, at most ``max_bytes``, decoded as UTF-8."""
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise InputError(f"{path}: cannot read the {what}: expected a regular file, "
                         f"found {_file_kind(mode)}", hint="give the path of the file itself")
    with os.fdopen(fd, "rb") as f:
        try:
            raw = f.read(max_bytes + 1)
        except OSError as exc:
            raise InputError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    if len(raw) > max_bytes:
        raise InputError(f"{path}: {what} larger than {max_bytes} bytes",
                         hint="a spec this size is a mistake; check the file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}: {what} is not UTF-8 text (byte {exc.start}, line {line}: "
                         f"{excerpt(raw[exc.start:exc.start + 8])})") from None


def _file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, word in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return word
    return "not a regular file"


def check_regular_file(path: Path, *, what: str) -> Path:
    """Refuse a path that is not an existing regular file (symlinks followed) without opening
    it: a FIFO would block, a device never end, a directory fail later with a traceback."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise InputError(f"{path}: cannot read the {what}: expected a regular file, "
                         f"found {_file_kind(mode)}", hint="give the path of the file itself")
    return path


# --- YAML ---------------------------------------------------------------------------------


MAX_NODES = 200_000  # expanded size: an alias bomb of few aliases still expands to billions


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, too many aliases, an expanded size beyond
    MAX_NODES (aliases counted as often as used) and deep nesting."""

    max_depth = 64
    max_aliases = 100

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > self.max_aliases:
                mark = self.peek_event().start_mark
                raise _Refused(f"more than {self.max_aliases} aliases (*name)", mark)
        self.depth += 1
        if self.depth > self.max_depth:
            raise _Refused(f"nesting deeper than {self.max_depth} levels",
                           self.peek_event().start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        if self.aliases:
            _expanded_size(node)
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                dup = key in seen
            except TypeError:
                raise _Refused(f"a mapping key that is not a scalar ({excerpt(key, 40)})",
                               key_node.start_mark) from None
            if dup:
                raise _Refused(f"duplicate key {excerpt(key, 60)}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: Any) -> int:
    """Nodes of the document with every alias expanded (memoised: linear in real nodes)."""
    sizes: dict[int, int] = {}
    busy: set[int] = set()

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in busy:
            raise _Refused("a recursive alias (an anchor used inside itself)", node.start_mark)
        busy.add(key)
        n = 1
        if isinstance(node, yaml.SequenceNode):
            n += sum(size(c) for c in node.value)
        elif isinstance(node, yaml.MappingNode):
            n += sum(size(k) + size(v) for k, v in node.value)
        busy.discard(key)
        sizes[key] = n
        if n > MAX_NODES:
            raise _Refused(f"aliases expand the document beyond {MAX_NODES} nodes "
                           "(an alias bomb?)", node.start_mark)
        return n

    return size(root)


class _Refused(Exception):
    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.message, self.mark = message, mark


def load_yaml(text: str, *, source: str | Path, max_depth: int = 64,
              max_aliases: int = 100) -> Any:
    """Parse one YAML document safely: duplicate keys, more than ``max_aliases`` alias uses
    (an alias bomb expands exponentially) or nesting deeper than ``max_depth`` are InputErrors."""
    loader = None
    try:
        loader = _Loader(text)  # (the reader checks the characters here already)
        loader.max_depth, loader.max_aliases = max_depth, max_aliases
        return loader.get_single_data()
    except _Refused as exc:
        where = f" (line {exc.mark.line + 1}, column {exc.mark.column + 1})" if exc.mark else ""
        raise InputError(f"{source}: {exc.message}{where}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: not valid YAML: {_bounded(str(exc))}") from None
    except RecursionError:
        raise InputError(f"{source}: nesting too deep") from None
    finally:
        if loader is not None:
            loader.dispose()


def _bounded(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def load_yaml_file(path: Path, *, what: str) -> Any:
    """read_text + load_yaml."""
    return load_yaml(read_text(path, what=what), source=path)


def load_json(text: str, *, source: str | Path, max_depth: int = 64) -> Any:
    """Parse JSON refusing duplicate keys and nesting deeper than ``max_depth``."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                raise _Refused(f"duplicate key {excerpt(k, 60)}", None)
            out[k] = v
        return out

    def constant(name: str) -> Any:
        # Python's json reads NaN and Infinity, which are not JSON: every bound lets NaN by
        raise _Refused(f"{name} is not a JSON number (NaN and infinity are refused)", None)

    try:
        doc = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except _Refused as exc:
        raise InputError(f"{source}: {exc.message}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError(f"{source}: nesting deeper than {max_depth} levels") from None
    if _depth(doc) > max_depth:
        raise InputError(f"{source}: nesting deeper than {max_depth} levels")
    return doc


def _depth(doc: Any) -> int:
    """How deeply lists and mappings nest (iteratively: no recursion limit)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, (list, dict)):
            deepest = max(deepest, level)
            stack.extend((c, level + 1) for c in (node.values() if isinstance(node, dict)
                                                  else node))
    return deepest


def load_json_file(path: Path, *, what: str) -> Any:
    """read_text + load_json."""
    return load_json(read_text(path, what=what), source=path)


def check_path_text(value: Any, *, source: str | Path | None, path: str) -> str:
    """A path given in an input file: a string within the filesystem's limits (1024
    characters, 255 per component, no NUL), so using it never raises ENAMETOOLONG."""
    if (not isinstance(value, str) or not value or "\0" in value or len(value) > 1024
            or any(len(part) > 255 for part in value.split("/"))):
        where = f"{source}: " if source is not None else ""
        raise InputError(f"{where}{path}: expected a path of at most 1024 characters, 255 "
                         f"per component (the filesystem's limits), found {excerpt(value)}")
    return value


# --- field rules --------------------------------------------------------------------------


def _where(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check_value(value: Any, rule: Rule, *, source: str | Path | None, path: str) -> Any:
    """One value against one rule (``path`` is the value's own field path)."""
    kinds = rule.kind if isinstance(rule.kind, tuple) else (rule.kind,)
    ok = isinstance(value, kinds) and not (
        isinstance(value, bool) and bool not in kinds)  # bool is not int
    if not ok and float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise _bad(source, path, rule, value)
    if rule.choices is not None and value not in rule.choices:
        raise _bad(source, path, rule, value)
    if rule.pattern is not None and isinstance(value, str) and not re.fullmatch(
            rule.pattern, value):
        raise _bad(source, path, rule, value)
    if isinstance(value, float) and not math.isfinite(value):
        # every comparison with NaN is false: a bound would let it through and switch the
        # rule that reads it off
        raise _bad(source, path, rule, value, hint="NaN and infinity are not accepted numbers")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if rule.minimum is not None and value < rule.minimum:
            raise _bad(source, path, rule, value)
        if rule.maximum is not None and value > rule.maximum:
            raise _bad(source, path, rule, value,
                       hint=f"the limit is {_num(rule.maximum)}: {rule.why}" if rule.why else None)
    return value


def _bad(source: str | Path | None, path: str, rule: Rule, value: Any,
         hint: str | None = None) -> InputError:
    where = f"{source}: " if source is not None else ""
    return InputError(f"{where}{path}: expected {rule.expected()}, found {excerpt(value)}",
                      hint=hint)


def unknown_keys(data: Mapping[Any, Any], known: Sequence[str], *, source: str | Path | None,
                 path: str) -> None:
    """Refuse a key not in ``known`` (a typo must not be ignored), suggesting the closest."""
    unknown = sorted(str(k) for k in data if str(k) not in known)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        where = f"{source}: " if source is not None else ""
        raise InputError(
            f"{where}{_where(path, unknown[0])}: expected one of the known keys "
            f"{sorted(known)}, found unknown key {excerpt(unknown[0], 60)}",
            hint=f"did you mean {close[0]}?" if close else None)


def check_fields(data: Any, rules: Sequence[Rule], *, source: str | Path | None,
                 path: str) -> dict[str, Any]:
    """Check a mapping against ``rules``: unknown keys refused, every value checked, defaults
    (validated like given values) filled in. A key given as null counts as absent."""
    if not isinstance(data, Mapping):
        where = f"{source}: " if source is not None else ""
        raise InputError(f"{where}{path or '(top level)'}: expected a mapping, "
                         f"found {excerpt(data)}")
    fields = Fields(source, path, data)
    fields.done([r.name for r in rules])   # a misspelt key before the values it hides
    return {rule.name: fields.rule(rule) for rule in rules}


class Fields:
    """A mapping of an input file being read: typed getters that name file + field path,
    rules (``Rule``, as ``check_fields`` applies them) and unknown-key checks. Specs read
    their sections through it; ``check_fields`` is a table of rules read through it."""

    def __init__(self, file: builtins.str | Path | None, path: builtins.str, raw: object) -> None:
        if not isinstance(raw, Mapping):
            raise InputError.field(file, path or "(top level)", "a mapping", raw)
        self.file, self.path, self.raw = file, path, raw
        self.seen: set[str] = set()

    def where(self, key: builtins.str) -> builtins.str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: builtins.str, expected: builtins.str, found: object, *,
             hint: builtins.str | None = None) -> InputError:
        return InputError.field(self.file, self.where(key), expected, found, hint=hint)

    def get(self, key: builtins.str, default: object = ..., *, required: bool = False) -> Any:
        self.seen.add(key)
        if key not in self.raw or self.raw[key] is None:
            if required or default is ...:
                raise self.fail(key, "a value (required field)", None)
            return default
        return self.raw[key]

    def str(self, key: builtins.str, default: object = ..., *, pattern: re.Pattern | None = None,
            what: builtins.str = "a string") -> Any:
        value = self.get(key, default)
        if value is default and default is not ...:
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # versions like 2.5 arrive as floats
        if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
            raise self.fail(key, what, value)
        return value

    def int(self, key: builtins.str, default: object = ..., *, minimum: builtins.int = 0,
            maximum: builtins.int = 10**9,
            why: builtins.str = "a larger number is a mistake") -> Any:
        value = self.get(key, default)
        if value is default and default is not ...:
            return value
        rule = Rule(key, int, minimum=minimum, maximum=maximum, why=why)
        return check_value(value, rule, source=self.file, path=self.where(key))

    def map(self, key: builtins.str, *, required: bool = False) -> Fields:
        return Fields(self.file, self.where(key), self.get(key, {}, required=required))

    def list(self, key: builtins.str, *, required: bool = False) -> builtins.list[Any]:
        value = self.get(key, [], required=required)
        if not isinstance(value, list):
            raise self.fail(key, "a list", value)
        return value

    def item(self, key: builtins.str, index: builtins.int, raw: object) -> Fields:
        return Fields(self.file, f"{self.where(key)}[{index}]", raw)

    def done(self, known: Iterable[builtins.str] | None = None) -> None:
        """Reject keys nobody read (or not in `known`): a typo must not be silently ignored."""
        allowed = set(known) if known is not None else self.seen
        unknown_keys(self.raw, sorted(allowed), source=self.file, path=self.path)

    def enum(self, key: builtins.str, enum: type[E], default: object = ...) -> E:
        """One of a StrEnum's values."""
        value = self.get(key, default)
        try:
            return enum(value)
        except ValueError:
            raise self.fail(key, f"one of {[e.value for e in enum]}", value) from None

    def rule(self, rule: Rule) -> Any:
        """The value of ``rule.name`` checked against the rule; absent or null: the rule's
        default (validated like a given value), or an error when it has none."""
        self.seen.add(rule.name)
        value = self.raw.get(rule.name)
        if value is None:
            if isinstance(rule.default, Required):
                raise InputError(f"{self._at()}{self.where(rule.name)}: expected "
                                 f"{rule.expected()} (required field), found nothing")
            value = copy.deepcopy(rule.default)  # a mutable default is not shared
            if value is None:
                return None
        return check_value(value, rule, source=self.file, path=self.where(rule.name))

    def _at(self) -> builtins.str:
        return f"{self.file}: " if self.file is not None else ""
