"""A provider outage dead-letters 5,000 jobs; after it, one redrive by filter brings them all back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import jobs
from tests.fakes.provider import FakeProvider, Respond
from tests.integration.conftest import Farm
from tests.services import wait_for


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    fake = FakeProvider()
    yield fake
    fake.close()


def _counts(settings: Settings) -> dict[str, int]:
    with transaction(settings) as conn:
        rows = conn.execute(sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status)).all()
    return {status: count for status, count in rows}


def test_outage_dead_letters_are_redriven_by_filter(
    api: TestClient[Any], farm: Farm, settings: Settings, provider: FakeProvider
) -> None:
    provider.default = Respond(500)  # the outage: every call fails
    batch = [
        {"type": "test_provider", "payload": {"url": provider.url, "key": f"k{i}"}, "max_retries": 0}
        for i in range(1000)
    ]
    for _ in range(5):
        assert api.post("/v1/jobs/batch", json={"jobs": batch}).status_code == 201
    farm.worker(processes=2, threads=8)
    farm.scheduler()
    wait_for(
        lambda: _counts(settings) == {"dead": 5000}, timeout=240, interval=0.5, what="5,000 dead letters"
    )

    selection = {"filter": {"type": "test_provider", "error_code": "provider_unavailable"}}
    dry = api.post("/v1/dead-letters/redrive", json={**selection, "reason": "check", "dry_run": True}).json()
    assert dry["matched"] == 5000 and dry["redriven"] == 0 and dry["audit_id"] is None
    assert _counts(settings) == {"dead": 5000}
    assert api.get("/v1/audit").json()["items"] == []

    provider.default = Respond(200)  # the outage is over
    r = api.post("/v1/dead-letters/redrive", json={**selection, "reason": "provider outage over"})
    assert r.status_code == 200, r.text
    assert (r.json()["matched"], r.json()["redriven"]) == (5000, 5000)
    wait_for(
        lambda: _counts(settings) == {"succeeded": 5000}, timeout=240, interval=0.5, what="all succeeded"
    )

    (entry,) = api.get("/v1/audit").json()["items"]
    assert entry["actor"] == "admin"
    assert entry["action"] == "redrive"
    assert entry["reason"] == "provider outage over"
    assert entry["selection"]["filter"]["error_code"] == "provider_unavailable"
    assert entry["counts"] == {"matched": 5000, "redriven": 5000}
