"""Far-future jobs, reschedule, sequences and recurring schedules, with real scheduler processes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from litestar.testing import TestClient

from core.platform.settings import Settings
from tests.integration.conftest import Farm, JobWaiter, make_key
from tests.services import wait_for

UNREAD = {"type": "unread_count", "payload": {"chat_id": "c", "user_id": "u"}}


def _jobs(api: TestClient[Any], **params: Any) -> list[dict[str, Any]]:
    return api.get("/v1/jobs", params={"limit": 500, **params}).json()["items"]  # type: ignore[no-any-return]


def test_reschedule_moves_a_waiting_job_only(api: TestClient[Any]) -> None:
    later = datetime.now(UTC) + timedelta(days=3)
    job = api.post("/v1/jobs", json={**UNREAD, "run_at": later.isoformat()}).json()
    moved = api.post(
        f"/v1/jobs/{job['id']}/reschedule", json={"run_at": (later + timedelta(days=1)).isoformat()}
    )
    assert moved.status_code == 200
    assert datetime.fromisoformat(moved.json()["run_at"]) == later + timedelta(days=1)

    queued = api.post("/v1/jobs", json=UNREAD).json()
    refused = api.post(f"/v1/jobs/{queued['id']}/reschedule", json={"run_at": later.isoformat()})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "not_reschedulable"


def test_a_sequence_runs_its_steps_at_their_times_and_cancels_together(
    api: TestClient[Any], farm: Farm, wait_job: JobWaiter
) -> None:
    farm.worker()
    farm.scheduler()
    anchor = datetime.now(UTC) - timedelta(seconds=10)
    body = {
        "business_key": "order-1",
        "anchor_at": anchor.isoformat(),
        "steps": [
            {"after_seconds": 0, **UNREAD},  # already due
            {"after_seconds": 12, **UNREAD},  # due in about 2 s
        ],
    }
    r = api.post("/v1/sequences", json=body)
    assert r.status_code == 201, r.text
    first, second = r.json()["jobs"]
    assert r.json()["business_key"] == "order-1"
    assert (first["status"], second["status"]) == ("queued", "scheduled")

    second_done = wait_job(second["id"])
    started = datetime.fromisoformat(second_done["started_at"])
    assert started >= anchor + timedelta(seconds=12)
    assert wait_job(first["id"])["status"] == "succeeded"

    other = api.post("/v1/sequences", json={**body, "business_key": "order-2", "anchor_at": datetime.now(UTC).isoformat(),
                                            "steps": [{"after_seconds": 3600, **UNREAD}, {"after_seconds": 7200, **UNREAD}]})  # fmt: skip
    assert api.post("/v1/jobs/cancel", json={"business_key": "order-2"}).json() == {"cancelled": 2}
    assert {j["status"] for j in _jobs(api, business_key="order-2")} == {"cancelled"}
    assert {j["id"] for j in _jobs(api, business_key="order-2")} == {j["id"] for j in other.json()["jobs"]}

    bad = api.post(
        "/v1/sequences", json={**body, "steps": [{"after_seconds": 1, "type": "unread_count", "payload": {}}]}
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "steps[0].payload.chat_id"


def test_a_far_future_job_survives_redis_loss_and_restarts(
    api: TestClient[Any], farm: Farm, settings: Settings, wait_job: JobWaiter
) -> None:
    due = datetime.now(UTC) + timedelta(days=14)
    job = api.post("/v1/jobs", json={**UNREAD, "run_at": due.isoformat()}).json()
    worker, scheduler = farm.worker(), farm.scheduler()
    farm.redis.flushall()
    worker.stop()
    scheduler.stop()
    assert api.get(f"/v1/jobs/{job['id']}").json()["status"] == "scheduled"

    # Fourteen days later, as far as every process of the farm can tell.
    farm.settings = settings.replace(clock_offset_s=14 * 86400 + 1)
    farm.worker()
    farm.scheduler()
    done = wait_job(job["id"])
    assert datetime.fromisoformat(done["started_at"]) >= due


def test_schedule_validation_and_scopes(api: TestClient[Any], settings: Settings) -> None:
    writer = {"Authorization": f"Bearer {make_key(settings, 'jobs:write')}"}
    ok = api.post(
        "/v1/schedules", json={**UNREAD, "cron": "0 10 * * *", "timezone": "Europe/London"}, headers=writer
    )
    assert ok.status_code == 201, ok.text
    schedule = ok.json()
    next_run = datetime.fromisoformat(schedule["next_run_at"])
    assert next_run > datetime.now(UTC)
    assert next_run.astimezone(ZoneInfo("Europe/London")).hour == 10
    assert api.get("/v1/schedules", headers=writer).status_code == 403

    for bad in (
        {**UNREAD, "cron": "61 * * * *"},
        {**UNREAD, "every_seconds": 5, "cron": "* * * * *"},
        {**UNREAD},
        {**UNREAD, "every_seconds": 5, "timezone": "Mars/Olympus"},
        {"type": "unread_count", "payload": {"chat_id": 1}, "every_seconds": 5},
    ):
        r = api.post("/v1/schedules", json=bad)
        assert r.status_code == 422, (bad, r.text)

    listed = api.get("/v1/schedules").json()["items"]
    assert [s["id"] for s in listed] == [schedule["id"]]
    assert api.delete(f"/v1/schedules/{schedule['id']}").status_code == 204
    assert api.get(f"/v1/schedules/{schedule['id']}").status_code == 404


def test_a_recurring_schedule_fires_stops_and_catches_up_once(
    api: TestClient[Any], farm: Farm, settings: Settings
) -> None:
    farm.worker()
    scheduler = farm.scheduler()
    farm.scheduler()  # two schedulers: each slot still fires once
    schedule = api.post("/v1/schedules", json={**UNREAD, "every_seconds": 2, "business_key": "daily"}).json()

    wait_for(lambda: len(_jobs(api, business_key="daily")) >= 3, timeout=20, what="three firings")
    jobs = _jobs(api, business_key="daily")
    created = sorted(datetime.fromisoformat(j["created_at"]) for j in jobs)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(created)]
    assert all(1.5 <= gap <= 3.5 for gap in gaps), gaps

    disabled = api.patch(f"/v1/schedules/{schedule['id']}", json={"enabled": False}).json()
    assert disabled["enabled"] is False
    count = len(_jobs(api, business_key="daily"))
    # Past the next slot it would have fired at, still nothing new.
    slot = datetime.fromisoformat(disabled["next_run_at"])
    wait_for(lambda: datetime.now(UTC) > slot + timedelta(seconds=1.5), timeout=10, what="the slot to pass")
    assert len(_jobs(api, business_key="daily")) == count

    # Ten seconds of downtime (five missed slots): re-enabled, it fires once, then keeps its rhythm.
    for proc in farm.processes:
        if proc.proc.args[-1] == "workers.scheduler":
            proc.stop()
    assert not scheduler.alive()
    api.patch(f"/v1/schedules/{schedule['id']}", json={"enabled": True})
    farm.settings = settings.replace(clock_offset_s=10)
    farm.scheduler()
    wait_for(
        lambda: len(_jobs(api, business_key="daily")) >= count + 1, timeout=10, what="the catch-up firing"
    )
    after = api.get(f"/v1/schedules/{schedule['id']}").json()
    assert len(_jobs(api, business_key="daily")) in (count + 1, count + 2)  # once, maybe plus the next slot
    assert datetime.fromisoformat(after["next_run_at"]) > datetime.now(UTC) + timedelta(seconds=8)
