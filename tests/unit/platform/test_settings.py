from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from core.errors import SettingsError
from core.platform.settings import Settings, documented_settings, get_settings
from tests.services import ROOT

SETTINGS_PAGE = ROOT / "docs" / "reference" / "settings.md"


def test_defaults_need_no_environment() -> None:
    s = Settings.from_env({})
    assert s.database_url is None
    assert s.redis_url is None
    assert s.home == Path(".jobyard")
    assert (s.api_host, s.api_port) == ("127.0.0.1", 8000)


def test_values_are_parsed_by_type() -> None:
    s = Settings.from_env(
        {
            "JOBYARD_API_PORT": "9001",
            "JOBYARD_SCHEDULER_INTERVAL": "0.25",
            "JOBYARD_JOB_MODULES": "a.b, c.d ,",
            "JOBYARD_HOME": "/srv/jobyard",
            "DATABASE_URL": "postgresql://x/y",
        }
    )
    assert s.api_port == 9001
    assert s.scheduler_interval_s == 0.25
    assert s.job_modules == ("a.b", "c.d")
    assert s.home == Path("/srv/jobyard")
    assert s.database_url == "postgresql://x/y"


def test_a_bad_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="JOBYARD_API_PORT"):
        Settings.from_env({"JOBYARD_API_PORT": "eighty"})


def test_settings_are_read_on_first_use_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBYARD_API_PORT", "8123")
    assert get_settings().api_port == 8123
    monkeypatch.setenv("JOBYARD_API_PORT", "8124")
    assert get_settings().api_port == 8123


def _shown(default: Any) -> str:
    """A default as the settings table shows it."""
    if default is None:
        return "unset"
    if default in ((), ""):
        return "empty"
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


def _table_rows() -> dict[str, str]:
    """variable -> default shown, from the settings table of the reference page."""
    rows = re.findall(
        r"^\| `([A-Z][A-Z0-9_]*)` \| (?:`([^`]*)`|(unset|empty)) \|", SETTINGS_PAGE.read_text(), re.M
    )
    return {name: quoted or word for name, quoted, word in rows}


def test_the_settings_reference_documents_every_setting_with_its_default() -> None:
    rows = _table_rows()
    documented = documented_settings()
    missing = [
        f"| `{env}` | {_row_default(default)} | {doc} |"
        for env, default, doc in documented
        if env not in rows
    ]
    assert missing == [], f"add these rows to {SETTINGS_PAGE.relative_to(ROOT)}:\n" + "\n".join(missing)
    wrong = {
        env: (rows[env], _shown(default)) for env, default, _ in documented if rows[env] != _shown(default)
    }
    assert wrong == {}, "variable: (the table's default, the code's)"
    unknown = sorted(set(rows) - {env for env, _, _ in documented})
    assert unknown == [], "rows for variables core/platform/settings.py does not have"


def _row_default(default: Any) -> str:
    shown = _shown(default)
    return shown if shown in ("unset", "empty") else f"`{shown}`"
