"""The package's layers: no module imports one of a layer above it (docs/development.md)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "segaudit"

#: Lowest first. A module may import its own layer and the ones below it.
LAYERS = [
    {"errors", "results"},
    {"io"},
    {"core"},
    {"methods", "calibration"},
    {"engine", "distributed"},
    {"api", "compat"},
    {"ci"},
    {"outputs"},
    {"evaluation"},
    {"cli", "__main__"},
]
LAYER = {name: level for level, names in enumerate(LAYERS) for name in names}


def top_level(module: str) -> str:
    """``segaudit.io.masks`` -> ``io``."""
    return module.split(".")[1] if module.count(".") else ""


def imported(path: Path) -> set[str]:
    """The segaudit modules a file imports, as absolute dotted names (function-level imports too)."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = parts if parts[-1] == "__init__" else parts[:-1]
    package = [p for p in package if p != "__init__"]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "segaudit" or module.startswith("segaudit."):
                names = [a.name for a in node.names]
                found |= {f"{module}.{n}" if module == "segaudit" else module for n in names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("segaudit.")}
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_module_has_a_layer():
    for path in MODULES:
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        assert top_level(name) in LAYER, f"{path} is in no layer of {LAYERS}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_layer_above_its_own(path):
    name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    own = LAYER[top_level(name)]
    above = {m for m in imported(path) if top_level(m) in LAYER and LAYER[top_level(m)] > own}
    assert not above, f"{name} (layer {own}) imports {sorted(above)} from layers above it"
