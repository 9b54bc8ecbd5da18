"""Client times are stored in UTC and bounded by one horizon (ten years either way): every time field
of the API answers 422 naming the field outside it, never a 500. Rows stored before the bounds (a
year Python cannot read) answer a clear 409 until the scheduler fails them with a code."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from litestar.testing import TestClient

from core.engine.out_of_range import fail_out_of_range
from core.platform.db import transaction
from core.platform.settings import Settings

UNREAD = {"type": "unread_count", "payload": {"chat_id": "c", "user_id": "u"}}
YEAR_10000 = "9999-12-31T23:59:59-14:00"  # a valid ISO time whose UTC instant is in year 10000
YEAR_0 = "0001-01-01T00:00:00+14:00"


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _fields(r: Any, status: int = 422) -> list[str]:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == "validation_error", body
    return [d["field"] for d in body["details"]]


def test_run_at_is_stored_in_utc_within_the_horizon(api: TestClient[Any]) -> None:
    now = datetime.now(UTC)
    nine_years = (now + timedelta(days=9 * 365)).astimezone(timezone(timedelta(hours=-5)))
    r = api.post("/v1/jobs", json={**UNREAD, "run_at": _iso(nine_years)})
    assert r.status_code == 201, r.text
    stored = api.get(f"/v1/jobs/{r.json()['id']}").json()
    assert r.json()["run_at"] == stored["run_at"]  # answered as stored: in UTC
    assert datetime.fromisoformat(stored["run_at"]).utcoffset() == timedelta(0)
    assert datetime.fromisoformat(stored["run_at"]) == nine_years

    # A past time means now: the job is queued at once.
    yesterday = api.post("/v1/jobs", json={**UNREAD, "run_at": _iso(now - timedelta(days=1))})
    assert yesterday.status_code == 201 and yesterday.json()["status"] == "queued"

    for bad in (YEAR_10000, YEAR_0, _iso(now + timedelta(days=3651)), _iso(now - timedelta(days=3651))):
        assert _fields(api.post("/v1/jobs", json={**UNREAD, "run_at": bad})) == ["run_at"], bad
    batch = api.post("/v1/jobs/batch", json={"jobs": [UNREAD, {**UNREAD, "run_at": YEAR_10000}]})
    assert _fields(batch) == ["jobs[1].run_at"]
    assert batch.json()["error"]["details"][0]["index"] == 1
    assert len(api.get("/v1/jobs", params={"limit": 500}).json()["items"]) == 2  # nothing else stored


def test_reschedule_and_sequences_are_bounded(api: TestClient[Any]) -> None:
    now = datetime.now(UTC)
    job = api.post("/v1/jobs", json={**UNREAD, "delay_seconds": 3600}).json()
    assert _fields(api.post(f"/v1/jobs/{job['id']}/reschedule", json={"run_at": YEAR_10000})) == ["run_at"]
    moved = api.post(f"/v1/jobs/{job['id']}/reschedule", json={"run_at": "2030-01-01T12:00:00+05:30"})
    assert moved.status_code == 200 and moved.json()["run_at"] == "2030-01-01T06:30:00Z"
    assert api.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"

    step = {"after_seconds": 0, **UNREAD}
    body = {"business_key": "seq", "anchor_at": YEAR_10000, "steps": [step]}
    assert _fields(api.post("/v1/sequences", json=body)) == ["anchor_at"]
    # Both within the horizon, their sum is not: the step says so.
    far = {**body, "anchor_at": _iso(now + timedelta(days=9 * 365)), "steps": [step, {**step, "after_seconds": 2 * 365 * 86400}]}  # fmt: skip
    assert _fields(api.post("/v1/sequences", json=far)) == ["steps[1].after_seconds"]
    assert api.get("/v1/jobs", params={"business_key": "seq"}).json()["items"] == []


def test_schedules_refuse_bad_times_rules_and_zones(api: TestClient[Any]) -> None:
    every = {**UNREAD, "every_seconds": 60}
    assert _fields(api.post("/v1/schedules", json={**every, "start_at": YEAR_10000})) == ["start_at"]
    assert _fields(api.post("/v1/schedules", json={**UNREAD, "cron": "0 0 31 2 *"})) == ["cron"]
    for zone in ("America", "../etc", "Europe/", "tzdata.zi", "UTC\u0000", "x" * 64):
        assert _fields(api.post("/v1/schedules", json={**every, "timezone": zone})) == ["timezone"], zone
    for zone in ("", "x" * 65):  # refused by the body's own limits, with the field named too
        assert _fields(api.post("/v1/schedules", json={**every, "timezone": zone})) == ["timezone"], zone

    schedule = api.post("/v1/schedules", json={**UNREAD, "cron": "0 8 * * *", "timezone": "Europe/London"})
    assert schedule.status_code == 201, schedule.text
    assert schedule.json()["disabled_code"] is None
    path = f"/v1/schedules/{schedule.json()['id']}"
    assert _fields(api.patch(path, json={"cron": "0 0 30 2 *"})) == ["cron"]
    assert _fields(api.patch(path, json={"timezone": "America"})) == ["timezone"]
    assert api.get(path).json()["cron"] == "0 8 * * *"


def test_time_filters_of_reads_take_any_valid_time(api: TestClient[Any]) -> None:
    api.post("/v1/jobs", json=UNREAD)
    for moment in (YEAR_10000, YEAR_0):
        r = api.get("/v1/jobs", params={"created_after": moment})
        assert r.status_code in (200, 422), r.text
        r = api.get("/v1/jobs", params={"created_before": moment})
        assert r.status_code in (200, 422), r.text


def store_year_10000_rows(settings: Settings) -> tuple[uuid.UUID, uuid.UUID]:
    """Rows as the API stored them before times were bounded."""
    job_id, schedule_id = uuid.uuid4(), uuid.uuid4()
    with transaction(settings) as conn:
        conn.execute(
            sa.text(
                "INSERT INTO jobs (id, type, queue, status, payload, max_retries, run_at) VALUES "
                "(:id, 'unread_count', 'unread_count', 'scheduled', '{\"chat_id\": \"c\", \"user_id\": \"u\"}', 3, "
                "CAST(:run_at AS timestamptz))"
            ),
            {"id": job_id, "run_at": YEAR_10000},
        )
        conn.execute(
            sa.text(
                "INSERT INTO schedules (id, type, payload, every_seconds, start_at, next_run_at) VALUES "
                '(:id, \'unread_count\', \'{"chat_id": "c", "user_id": "u"}\', 60, '
                "CAST(:at AS timestamptz), CAST(:at AS timestamptz))"
            ),
            {"id": schedule_id, "at": YEAR_10000},
        )
    return job_id, schedule_id


def test_a_row_python_cannot_read_answers_409_until_the_scheduler_fails_it(
    api: TestClient[Any], settings: Settings
) -> None:
    job_id, schedule_id = store_year_10000_rows(settings)
    for r in (api.get(f"/v1/jobs/{job_id}"), api.post(f"/v1/jobs/{job_id}/cancel"), api.get("/v1/jobs")):
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert (
            error["code"] == "unreadable_value"
            and "year" in error["message"]
            and "NUL" not in error["message"]
        )
    assert api.get(f"/v1/schedules/{schedule_id}").json()["error"]["code"] == "unreadable_value"

    assert fail_out_of_range(settings) == 2  # what the scheduler runs every half minute
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "dead"
    assert job["error"]["code"] == "run_at_out_of_range" and "10000" in job["error"]["message"]
    schedule = api.get(f"/v1/schedules/{schedule_id}").json()
    assert (schedule["enabled"], schedule["disabled_code"]) == (False, "time_out_of_range")
    assert "10000" in schedule["disabled_reason"] and schedule["disabled_at"] is not None
    assert api.get("/v1/jobs").status_code == 200
    assert fail_out_of_range(settings) == 0


def test_a_value_postgres_refuses_is_named_for_what_it_is(api: TestClient[Any]) -> None:
    nul = api.post("/v1/jobs", json={**UNREAD, "payload": {"chat_id": "c\u0000", "user_id": "u"}})
    assert nul.status_code == 400 and nul.json()["error"]["code"] == "unstorable_value"
    assert "NUL" in nul.json()["error"]["message"] and "c\u0000" not in nul.text
