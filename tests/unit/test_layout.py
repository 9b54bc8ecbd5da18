"""The layout of the code: what core/'s root holds, and that every core package says what it is.
The import arrows between layers are import-linter's contracts (pyproject.toml, `make lint`)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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
