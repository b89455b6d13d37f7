"""The layers only look down: a test that reads every module's imports (docs/architecture.md draws the layers).

core  <-  data, models, losses, metrics  <-  tasks  <-  engine  <-  entry points
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "distill"

# The layer of each top-level part of the package, and which layers it may import.
LAYERS = {
    "core": 0, "cost": 4,
    "data": 1, "models": 1, "losses": 1, "metrics": 1,
    "tasks": 2,
    "engine": 3,
    "__main__": 4, "__init__": 4, "export": 4, "report": 4, "paper": 0, "cache": 4,
    "compress": 4, "search": 4,
}
ENTRY_POINTS = {"__main__", "export", "report", "cost", "cache", "compress", "search"}


def _part(module: str) -> str | None:
    """'distill.data.views' -> 'data'; None for third-party modules."""
    parts = module.split(".")
    if parts[0] != "distill":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import of a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno, id(node) in top_level))
    return found


def _modules() -> list[tuple[str, Path]]:
    result = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "conf":
            continue
        name = relative.parts[0].removesuffix(".py")
        result.append((name, path))
    return result


def test_every_part_of_the_package_has_a_layer():
    assert {name for name, _ in _modules()} <= set(LAYERS)


@pytest.mark.parametrize("name,path", _modules(), ids=lambda v: str(v).split("distill/")[-1])
def test_imports_only_look_down(name, path):
    layer = LAYERS[name]
    for module, line, _ in _imports(path):
        target = _part(module)
        if target is None or target == name:
            continue
        where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}"
        assert target in LAYERS, where
        if target == "__init__":
            assert name in ENTRY_POINTS, f"{where}: only entry points import the package root"
            continue
        assert LAYERS[target] < layer or (name in ENTRY_POINTS and target in ENTRY_POINTS), \
            f"{where}: {name} (layer {layer}) may only import lower layers, not {target} (layer {LAYERS[target]})"
        if target == "engine":
            assert name in ENTRY_POINTS, f"{where}: only entry points import the engine"


def test_no_import_hides_inside_a_function():
    """Imports of distill modules sit at the top of the file: none dodges a cycle by importing late."""
    late = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}"
            for _, path in _modules() for module, line, top in _imports(path)
            if not top and _part(module) is not None]
    assert late == []


def test_no_star_imports():
    starred = []
    for _, path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names):
                starred.append(str(path))
    assert starred == []
