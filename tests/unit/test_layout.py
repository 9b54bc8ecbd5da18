"""The layout of the code: what core/'s root holds, that every core package says what it is, and
the import arrows between the top-level packages."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_the_root_of_core_holds_at_most_ten_modules() -> None:
    # Everything else lives in a package of its layer (docs/design.md shows them).
    modules = sorted(path.name for path in (ROOT / "core").glob("*.py"))
    assert len(modules) <= 10, modules


def test_every_core_package_says_what_it_is() -> None:
    folders = {path.parent for path in (ROOT / "core").rglob("*.py")}
    for folder in sorted(folders):
        init = folder / "__init__.py"
        assert init.exists(), f"{folder.relative_to(ROOT)} is not a package"
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init.relative_to(ROOT)} has no docstring"


def test_core_imports_neither_workers_nor_control_api() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & {"workers", "control_api"})
        for path in (ROOT / "core").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_workers_and_api_do_not_import_each_other() -> None:
    for package, other in (("workers", "control_api"), ("control_api", "workers")):
        for path in (ROOT / package).rglob("*.py"):
            assert other not in _imports(path), path
