"""Post-order WhatsApp sequences and far-future sends, against the fake Cloud API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from core.platform.settings import Settings
from tests.fakes.whatsapp import PHONE_NUMBER_ID, TOKEN, VERSION, FakeWhatsApp
from tests.integration.conftest import Farm, JobWaiter

CUSTOMER = "+447700900123"


@pytest.fixture
def settings(settings: Settings, whatsapp: FakeWhatsApp) -> Settings:
    return settings.replace(
        whatsapp_api_base_url=whatsapp.url,
        whatsapp_api_version=VERSION,
        whatsapp_token=TOKEN,
        whatsapp_phone_number_id=PHONE_NUMBER_ID,
        quiet_hours="off",  # the tests run at any hour
    )


def _step(after_seconds: int, template: str) -> dict[str, Any]:
    return {
        "after_seconds": after_seconds,
        "type": "whatsapp_message",
        "payload": {"to": CUSTOMER, "template": {"name": template, "language": "en"}},
    }


def test_an_order_sequence_sends_each_step_once_at_its_time(
    api: TestClient[Any], farm: Farm, whatsapp: FakeWhatsApp, wait_job: JobWaiter
) -> None:
    farm.worker()
    farm.scheduler()
    delivered = datetime.now(UTC) - timedelta(days=3, seconds=1)  # the check-in is already due
    body = {
        "business_key": "order-123",
        "anchor_at": delivered.isoformat(),
        "steps": [_step(3 * 86400, "order_check_in"), _step(3 * 86400 + 3, "order_review_request")],
    }
    r = api.post("/v1/sequences", json=body)
    assert r.status_code == 201, r.text
    check_in, review = r.json()["jobs"]
    returned = api.post(
        "/v1/sequences",
        json={**body, "business_key": "order-456", "anchor_at": datetime.now(UTC).isoformat()},
    ).json()["jobs"]
    assert api.post("/v1/jobs/cancel", json={"business_key": "order-456"}).json() == {"cancelled": 2}

    wait_job(check_in["id"])
    done = wait_job(review["id"])
    sent = whatsapp.requests(CUSTOMER)
    assert len(whatsapp.requests()) == 2  # the cancelled order's steps sent nothing
    assert [req.body["template"]["name"] for req in sent] == ["order_check_in", "order_review_request"]
    # Each went out at its time: the review not before anchor + its offset.
    review_due = delivered + timedelta(days=3, seconds=3)
    assert sent[1].at >= review_due.timestamp()
    assert done["result"]["status"] == "sent"
    assert {api.get(f"/v1/jobs/{j['id']}").json()["status"] for j in returned} == {"cancelled"}


def test_a_send_14_days_ahead_survives_redis_loss_and_restarts(
    api: TestClient[Any], farm: Farm, settings: Settings, whatsapp: FakeWhatsApp, wait_job: JobWaiter
) -> None:
    due = datetime.now(UTC) + timedelta(days=14)
    body = {
        "type": "whatsapp_message",
        "payload": {"to": CUSTOMER, "text": "How did you like your order?"},
        "run_at": due.isoformat(),
        "business_key": "order-789",
    }
    job = api.post("/v1/jobs", json=body).json()
    first = [farm.worker(), farm.scheduler()]
    farm.redis.flushall()
    for proc in first:
        proc.stop()
    assert api.get(f"/v1/jobs/{job['id']}").json()["status"] == "scheduled"
    assert whatsapp.requests() == []

    # Every process restarts with the clock fourteen days on.
    farm.settings = settings.replace(clock_offset_s=14 * 86400 + 1)
    farm.worker()
    farm.scheduler()
    done = wait_job(job["id"])
    assert done["result"]["status"] == "sent"
    (sent,) = whatsapp.requests(CUSTOMER)
    assert sent.body["text"] == {"body": "How did you like your order?"}
