"""The scrape tests' local website (tests/fakes/site.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.site import FakeSite


@pytest.fixture
def site() -> Iterator[FakeSite]:
    s = FakeSite()
    yield s
    s.close()
