"""The browser without a page (core/providers/browser.py): finding Chromium, and Chromium getting none
of the worker's environment but what it needs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.errors import PermanentError
from core.providers.browser import BROWSER_NAMES, PASSED_ENV, browser_env, find_chromium
from tests.services import TEST_DATA_KEY


def test_chromium_gets_none_of_the_workers_environment_but_what_it_needs() -> None:
    environ = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": "Europe/Berlin",
        "HOME": "/home/jobyard",
        "DATABASE_URL": "postgresql://u:p@h/db",
        "REDIS_URL": "redis://:p@h/0",
        "JOBYARD_DATA_KEY": TEST_DATA_KEY,
        "WHATSAPP_TOKEN": "t",
        "OPENAI_API_KEY": "sk-x",
        "AWS_SECRET_ACCESS_KEY": "aws",
        "http_proxy": "http://corp-proxy:3128",  # the guard proxy must be the only way out
    }
    env = browser_env(Path("/tmp/jobyard-chromium-x"), environ)  # noqa: S108 - a path it is given
    assert env == {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": "Europe/Berlin",
        "HOME": "/tmp/jobyard-chromium-x",  # noqa: S108
        "XDG_CONFIG_HOME": "/tmp/jobyard-chromium-x/.config",  # noqa: S108
        "XDG_CACHE_HOME": "/tmp/jobyard-chromium-x/.cache",  # noqa: S108
        "XDG_DATA_HOME": "/tmp/jobyard-chromium-x/.local",  # noqa: S108
    }
    assert not any(
        "KEY" in name or "TOKEN" in name or "SECRET" in name or "URL" in name for name in PASSED_ENV
    )


def test_chromium_is_found(tmp_path: Path) -> None:
    own = tmp_path / "chrome"
    own.write_text("")
    assert find_chromium(None, str(own)) is None  # Playwright's own browser, when installed
    # Else the first on PATH: the headless shell before the full browser (.ci/run installs both).
    on_path = [found for name in BROWSER_NAMES if (found := shutil.which(name))]
    assert on_path and Path(on_path[0]).name == "chromium-headless-shell"
    assert find_chromium(None, str(tmp_path / "missing")) == on_path[0]
    assert find_chromium("chromium", None) == shutil.which("chromium")
    with pytest.raises(PermanentError, match="JOBYARD_CHROMIUM_PATH"):
        find_chromium(str(tmp_path / "nope"), None)
