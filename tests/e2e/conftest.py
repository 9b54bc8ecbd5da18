"""End-to-end fixtures; closing figures of long runs are shown in pytest's terminal summary."""

from __future__ import annotations

import json
from typing import Any

import pytest

#: (title, figures) appended by tests whose figures a reader of the run should see without -s.
FIGURES: list[tuple[str, dict[str, Any]]] = []


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    for title, figures in FIGURES:
        terminalreporter.write_sep("-", f"{title} figures")
        terminalreporter.write_line(json.dumps(figures))
