from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings, SettingsError, documented_settings, get_settings

ROOT = Path(__file__).resolve().parents[2]


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


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [env for env, _, _ in documented_settings() if f"`{env}`" not in readme]
    assert missing == []
