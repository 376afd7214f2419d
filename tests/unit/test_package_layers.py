"""The package's layer order (CONTRIBUTING.md, "Layers"): read from every import statement, function-level ones too.

Why a test: cycles and upward imports come back one convenient import at a time, and a function-level import
hides them from anyone reading a module's head. So every ``import`` / ``from … import`` anywhere in a module
counts, and function-level imports are allowed only for the optional heavy packages named below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sap_viz"

#: Lowest first. A module may import its own subpackage (without a cycle) and any lower layer, never a higher one.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("env", "settings", "files", "jsonl", "strict_json", "tables"),
    ("model",),
    ("data",),
    ("method",),
    ("analysis",),
    ("recipe",),
    ("hub",),
    ("serve",),
    ("app_state",),
    ("ui",),
    ("cli",),
    ("__main__",),
)
#: The package's own ``__init__`` re-exports names lazily and sits outside the order.
ROOT_INIT = "sap_viz"
#: Third-party packages that are optional or slow to import, and only these, may be imported inside a function.
LAZY_ALLOWED = frozenset({"ray", "openai", "umap", "uvicorn", "datasets", "huggingface_hub", "sklearn", "pyarrow",
                          "playwright", "gguf", "psutil", "resource"})


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> int:
    parts = module.split(".")
    if module == ROOT_INIT:
        return -1
    top = parts[1]
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    raise AssertionError(f"{module} belongs to no layer: add its subpackage to LAYERS and to CONTRIBUTING.md")


def imports_of(path: Path, modules: set[str], package_dir: Path = PACKAGE) -> list[tuple[str, int, bool]]:
    """(imported sap_viz module, line, inside a function or class) for every import statement of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path, package_dir)
    package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    found: list[tuple[str, int, bool]] = []
    nested: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            nested.update(id(n) for n in ast.walk(node) if n is not node)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            # ``from pkg import mod`` depends on pkg.mod alone (not on pkg's __init__); ``from mod import name`` on mod
            submodules = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
            names = submodules if len(submodules) == len(node.names) else [base, *submodules]
        else:
            continue
        inner = id(node) in nested
        for name in dict.fromkeys(names):
            if name.split(".")[0] != "sap_viz":
                if inner and name == names[0] and name.split(".")[0] not in LAZY_ALLOWED:
                    found.append((name, node.lineno, inner))
                continue
            while name not in modules and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in modules and name != me:
                found.append((name, node.lineno, inner))
    return found


def import_graph(package: Path = PACKAGE) -> tuple[dict[str, set[str]], list[str]]:
    """The import edges between sap_viz modules, and every broken rule as a sentence."""
    files = {module_name(p, package): p for p in package.rglob("*.py")}
    modules = set(files)
    edges: dict[str, set[str]] = {m: set() for m in modules}
    problems: list[str] = []
    for me, path in sorted(files.items()):
        for target, line, inner in imports_of(path, modules, package):
            where = f"{path.relative_to(package.parent)}:{line}"
            if not target.startswith("sap_viz"):
                problems.append(f"{where} imports {target} inside a function (only {sorted(LAZY_ALLOWED)} may be)")
                continue
            if inner:
                problems.append(f"{where} imports {target} inside a function: import it at the top")
            if target == ROOT_INIT or me == ROOT_INIT:
                continue
            edges[me].add(target)
            if layer_of(target) > layer_of(me):
                problems.append(f"{where}: {me} (layer {LAYERS[layer_of(me)]}) imports the higher {target}")
    return edges, problems


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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


def test_no_import_cycle_and_no_import_against_the_layer_order():
    edges, problems = import_graph()
    assert not problems, "\n".join(problems)
    assert not cycles(edges), cycles(edges)


def test_the_check_finds_a_cycle_and_an_upward_import(tmp_path):
    """The check itself can fail: a copy of the package with one import added back from artifact to the recipe layer."""
    import shutil

    copy = tmp_path / "sap_viz"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.jsonl", "*.json", "*.csv", "*.md"))
    artifact = copy / "method" / "artifact.py"
    artifact.write_text(artifact.read_text(encoding="utf-8") + "\nfrom sap_viz.recipe.pipeline import train_and_evaluate  # noqa\n",
                        encoding="utf-8")
    edges, problems = import_graph(copy)
    assert any("imports the higher sap_viz.recipe.pipeline" in p for p in problems), problems
    assert any({"sap_viz.method.artifact", "sap_viz.recipe.pipeline"} <= set(c) for c in cycles(edges))
    scoring = copy / "method" / "scoring.py"
    scoring.write_text(scoring.read_text(encoding="utf-8") + "\n\ndef _late():\n    import pandas  # noqa\n", encoding="utf-8")
    assert any("imports pandas inside a function" in p for p in import_graph(copy)[1])


@pytest.mark.parametrize("layer", [n for names in LAYERS for n in names])
def test_every_layer_is_documented(layer):
    text = (PACKAGE.parent / "CONTRIBUTING.md").read_text(encoding="utf-8")
    assert f"`{layer}`" in text, f"CONTRIBUTING.md's layer order does not name {layer}"
