"""Fixtures of the access tests: the dashboard seen from a browser."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from core.platform.settings import Settings


@pytest.fixture
def browser(settings: Settings) -> Iterator[TestClient[Any]]:
    """The app in-process with no API key: a browser, as far as the dashboard can tell."""
    from control_api.app import create_app

    with TestClient(create_app(settings, configure_logs=False)) as client:
        client.follow_redirects = False
        yield client
