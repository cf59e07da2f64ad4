"""The house rules of ``src/urban_detection``, read from the source: no import circle (imports inside
functions count), no private name imported across modules, libraries free of Kedro, nodes of one
pipeline not imported by another, modules of one concept (a docstring, at most 500 lines)."""
from __future__ import annotations

import ast
from pathlib import Path

from kedro_project import REPO

SRC = REPO / "src"
PACKAGE = "urban_detection"


def modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package ``__init__``)."""
    found = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def imports(name: str, path: Path, is_package: bool) -> list[tuple[str, str | None]]:
    """(module, imported name or None) of every import of the project's package in a module, at any depth."""
    here = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names if alias.name.split(".")[0] == PACKAGE]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == PACKAGE:
                found += [(target, alias.name) for alias in node.names]
    return found


def graph() -> tuple[dict[str, set[str]], list[str]]:
    """Module -> modules it imports (a package's ``__init__`` counts as the package), and private imports."""
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private = []
    for name, (path, is_package) in mods.items():
        for target, imported in imports(name, path, is_package):
            if imported and f"{target}.{imported}" in mods:
                target = f"{target}.{imported}"  # `from package import module`
            elif imported and imported.startswith("_") and target != name:
                private.append(f"{name} imports {target}.{imported}")
            while target not in mods:
                target = target.rpartition(".")[0]
            if target != name:
                edges[name].add(target)
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_imports_inside_functions():
    edges, _ = graph()
    # hooks/selection.py imports the selection module only inside a hook
    assert f"{PACKAGE}.pipelines.selection" in edges[f"{PACKAGE}.hooks.selection"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle():
    edges, _ = graph()
    assert cycles(edges) == []


def test_no_private_name_is_imported_across_modules():
    _, private = graph()
    assert private == []


def test_the_libraries_know_nothing_of_kedro_and_pipelines_do_not_import_each_others_nodes():
    problems = []
    for name, (path, is_package) in modules().items():
        tree = ast.parse(path.read_text())
        libraries = (f"{PACKAGE}.waymo", f"{PACKAGE}.detection")
        if name.startswith(libraries):
            kedro = [n for n in ast.walk(tree) for a in getattr(n, "names", [])
                     if isinstance(n, (ast.Import, ast.ImportFrom))
                     and ((getattr(n, "module", None) or a.name).split(".")[0] in ("kedro", "kedro_datasets"))]
            problems += [f"{name} imports Kedro"] if kedro else []
        if name.startswith(f"{PACKAGE}.pipelines."):
            own = ".".join(name.split(".")[:3])
            for target, _ in imports(name, path, is_package):
                other = ".".join(target.split(".")[:3])
                if target.startswith(f"{PACKAGE}.pipelines.") and other != own and not target.endswith("selection"):
                    problems.append(f"{name} imports {target}")
    assert problems == []


def test_modules_are_one_concept_each():
    problems = []
    for name, (path, _) in modules().items():
        text = path.read_text()
        lines = text.count("\n")
        if lines > 500:
            problems.append(f"{path.relative_to(REPO)}: {lines} lines")
        if text.strip() and ast.get_docstring(ast.parse(text)) is None:
            problems.append(f"{path.relative_to(REPO)}: no docstring naming its concept")
    assert problems == []
