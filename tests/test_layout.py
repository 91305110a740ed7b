"""The repository's layering rules (DESIGN.md section 2), checked on the source."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_plugin_never_imports_the_kernels() -> None:
    offenders = [p.name for p in (REPO / "pytest_moetune").glob("*.py") if "kernels" in imported_modules(p)]
    assert offenders == []


def test_the_kernels_never_import_pytest_or_the_plugin() -> None:
    offenders = [
        p.name for p in (REPO / "kernels").glob("*.py") if {"pytest", "pytest_moetune"} & imported_modules(p)
    ]
    assert offenders == []


def test_test_module_basenames_are_unique() -> None:
    """pytest's default import mode imports test modules by basename; two alike break collection."""
    names = Counter(p.name for folder in ("tests", "suites") for p in (REPO / folder).rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
