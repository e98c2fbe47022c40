"""Library below, entry points on top: nothing outside cli/ and serving/ imports them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "transferkit"
ENTRY_POINTS = ("transferkit.cli", "transferkit.serving")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _calls_import_module(node: ast.Call) -> bool:
    """``importlib.import_module("literal")`` or ``import_module("literal")``."""
    name = getattr(node.func, "attr", getattr(node.func, "id", None))
    first = node.args[0] if node.args else None
    return name == "import_module" and isinstance(first, ast.Constant) and isinstance(first.value, str)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every absolute module name ``source`` imports (``from a import b`` yields ``a`` and ``a.b``)."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and _calls_import_module(node):
            found.add(node.args[0].value)
    return found


def _forbidden(names: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == e or n.startswith(e + ".") for e in ENTRY_POINTS))


LIBRARY = sorted(
    p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in ("cli", "serving")
)


def test_library_files_found() -> None:
    names = {_module_name(p) for p in LIBRARY}
    assert {"transferkit.api", "transferkit.config", "transferkit.predictor"} <= names


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_library_never_imports_entry_points(path: Path) -> None:
    names = imported_modules(path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py")
    assert not _forbidden(names), f"{path} imports {_forbidden(names)}"


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("import transferkit.cli.main", "transferkit.api"),
        ("from transferkit.serving import app", "transferkit.api"),
        ("from transferkit import cli", "transferkit.api"),
        ("from .cli import main", "transferkit.api"),
        ("from ..serving.app import x", "transferkit.data.splits"),
        ("import importlib\nimportlib.import_module('transferkit.cli.main')", "transferkit.api"),
    ],
)
def test_checker_catches_every_form(source: str, module: str) -> None:
    assert _forbidden(imported_modules(source, module))


def test_checker_allows_library_imports() -> None:
    source = (
        "from transferkit.config import load_config\nfrom . import registry\nfrom .data import cli_helpers"
    )
    assert not _forbidden(imported_modules(source, "transferkit.api"))
