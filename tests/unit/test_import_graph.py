"""The import graph of fabkit, bake and launch: no cycle, no import that points up a stage,
and no import of a project module hidden inside a function unless it says why.

Read from the source (AST), function-level imports included, so a circle hidden behind a
function-level import is still a circle. The stages, bottom to top, and what each may
import (besides itself) are the table below (launch: spec < render < machines < lifecycle <
bench < compare < cli; the providers read the plans render makes): a new package or an
import against the arrows fails here, with the edge named.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("fabkit", "bake", "launch")

# stage -> the stages it may import (its own is always allowed). Longest prefix wins.
ALLOWED: dict[str, frozenset[str]] = {
    "fabkit": frozenset(),
    "bake": frozenset({"fabkit"}),
    "bake.cli": frozenset({"fabkit", "bake"}),
    # `python -m bake.goss` (the Packer templates run it): an entry point beside the CLI
    "bake.goss.__main__": frozenset({"fabkit", "bake", "bake.cli"}),
    "launch": frozenset(),                      # the package's own __init__
    "launch.spec": frozenset({"fabkit"}),
    "launch.render": frozenset({"fabkit", "bake", "launch.spec"}),
    "launch.machines": frozenset({"fabkit", "bake", "launch.spec", "launch.render"}),
    "launch.lifecycle": frozenset({"fabkit", "bake", "launch.spec", "launch.render",
                                   "launch.machines"}),
    "launch.bench": frozenset({"fabkit", "launch.spec", "launch.render", "launch.machines",
                               "launch.lifecycle"}),
    "launch.compare": frozenset({"fabkit", "bake", "launch.spec", "launch.render",
                                 "launch.machines", "launch.lifecycle", "launch.bench"}),
    "launch.cli": frozenset({"fabkit", "bake", "launch.spec", "launch.render",
                             "launch.machines", "launch.lifecycle", "launch.bench",
                             "launch.compare"}),
}
# A function-level import of a project module is allowed only when it keeps a cloud SDK or
# a heavy library out of the importer's start-up, and says so on its line.
LAZY_MARK = "# lazy:"


@dataclass(frozen=True)
class Edge:
    source: str           # importing module
    target: str           # imported module
    path: Path
    line: int
    nested: bool          # inside a function (or class body)
    entry: bool           # inside `if __name__ == "__main__":`
    text: str


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def stage(module: str) -> str:
    best = max((s for s in ALLOWED if module == s or module.startswith(s + ".")), key=len,
               default=None)
    assert best is not None, f"{module}: in no stage of ALLOWED"
    return best


def _is_main_guard(node: ast.AST) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def _imports(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    def walk(node: ast.AST, nested: bool, entry: bool) -> Iterator[
            tuple[ast.Import | ast.ImportFrom, bool, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, nested, entry
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                                    ast.Lambda)):
                yield from walk(child, True, entry)
            elif node is tree and _is_main_guard(child):
                yield from walk(child, nested, True)
            else:
                yield from walk(child, nested, entry)
    yield from walk(tree, False, False)


def edges() -> list[Edge]:
    known = modules()
    out = []
    for source, path in known.items():
        text = path.read_text()
        lines = text.splitlines()
        for node, nested, entry in _imports(ast.parse(text)):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = source.rsplit(".", node.level - (path.name == "__init__.py"))[0]
                    mod = f"{base}.{node.module}" if node.module else base
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod
                           for a in node.names]
            for t in dict.fromkeys(targets):
                if t.split(".")[0] in PACKAGES and t != source:
                    out.append(Edge(source, t, path, node.lineno, nested, entry,
                                    lines[node.lineno - 1].strip()))
    return out


def where(e: Edge) -> str:
    return f"{e.path.relative_to(REPO)}:{e.line}: {e.text}"


def test_every_module_is_in_a_stage() -> None:
    for m in modules():
        stage(m)


def test_every_import_points_down_the_stages() -> None:
    bad = []
    for e in edges():
        if e.entry:
            # `python -m bake.goss` (pinned by the Packer templates) is an entry point: its
            # guard sits at the top, with the package's CLI, whatever module it is in
            src = f"{e.source.split('.')[0]}.cli"
        else:
            src = stage(e.source)
        dst = stage(e.target)
        if dst != src and dst not in ALLOWED[src]:
            bad.append(f"{where(e)}  ({src} -> {dst})")
    assert not bad, "imports against the stages:\n" + "\n".join(bad)


def test_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {m: set() for m in modules()}
    for e in edges():
        if not e.entry and e.target in graph:
            graph[e.source].add(e.target)
    # a module importing `pkg.sub` runs `pkg/__init__` first: the package is an edge too
    for m in list(graph):
        for e in list(graph[m]):
            parent = e.rpartition(".")[0]
            if parent in graph and parent != m and not m.startswith(parent + "."):
                graph[m].add(parent)
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_function_level_imports_say_why() -> None:
    hidden = [where(e) for e in edges() if e.nested and LAZY_MARK not in e.text]
    assert not hidden, (f"imports of project modules inside functions (move them to the top, "
                        f"or keep an SDK lazy and say so with `{LAZY_MARK} why`):\n"
                        + "\n".join(hidden))
