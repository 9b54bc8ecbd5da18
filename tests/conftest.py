"""Fixtures shared by every test layer. Global state (settings cache, structlog, env) is reset per test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import structlog

from core.platform.settings import get_settings
from tests.services import TestServices

_OURS = ("JOBYARD_", "DATABASE_URL", "REDIS_URL", "WHATSAPP_")


@pytest.fixture(autouse=True)
def _clean_global_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A developer's own JOBYARD_* variables must not change what the tests see
    # (the JOBYARD_TEST_* service URLs are read once, at session start, before this runs).
    for name in list(os.environ):
        if name.startswith(_OURS) and not name.startswith("JOBYARD_TEST_"):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestServices]:
    """Real Postgres and Redis for the whole session (integration and end-to-end tests)."""
    started = TestServices.start(tmp_path_factory.mktemp("services"))
    yield started
    started.stop()
