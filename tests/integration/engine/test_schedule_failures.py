"""One schedule or job the scheduler cannot process fails alone, with a code, and the scheduler goes
on: a real scheduler process, broken rows as an older release or a deploy leaves them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from litestar.testing import TestClient

from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import schedule_firings
from tests.integration.conftest import Farm, JobWaiter
from tests.integration.engine.test_time_bounds import store_year_10000_rows
from tests.services import Process, wait_for

UNREAD = {"type": "unread_count", "payload": {"chat_id": "c", "user_id": "u"}}


def _jobs(api: TestClient[Any], business_key: str) -> list[dict[str, Any]]:
    return api.get("/v1/jobs", params={"business_key": business_key, "limit": 500}).json()["items"]  # type: ignore[no-any-return]


def _schedule(api: TestClient[Any], key: str, **rule: Any) -> dict[str, Any]:
    r = api.post("/v1/schedules", json={**UNREAD, "business_key": key, **(rule or {"every_seconds": 1})})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def _disabled(api: TestClient[Any], schedule: dict[str, Any], code: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        s: dict[str, Any] = api.get(f"/v1/schedules/{schedule['id']}").json()
        return s if s["disabled_code"] == code else None

    return wait_for(check, timeout=20, what=f"schedule disabled with {code}")  # type: ignore[no-any-return]


def _log_events(proc: Process) -> list[dict[str, Any]]:
    events = []
    for line in proc.log().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def test_a_broken_schedule_is_disabled_with_a_code_and_the_others_fire_on(
    api: TestClient[Any], farm: Farm, settings: Settings
) -> None:
    good = _schedule(api, "good")
    gone = _schedule(api, "gone", every_seconds=2)
    bad_payload = _schedule(api, "bad-payload", every_seconds=2)
    with transaction(settings) as conn:
        # A deploy removed the job type; a payload written by an older release no longer validates.
        conn.execute(sa.text("UPDATE schedules SET type = 'removed_type' WHERE id = :id"), {"id": gone["id"]})
        conn.execute(
            sa.text("""UPDATE schedules SET payload = '{"chat_id": 5}' WHERE id = :id"""),
            {"id": bad_payload["id"]},
        )
    job_id, schedule_id = store_year_10000_rows(settings)  # and rows holding a time Python cannot read
    farm.worker()
    scheduler = farm.scheduler()

    gone_now = _disabled(api, gone, "unknown_job_type")
    assert gone_now["enabled"] is False and "removed_type" in gone_now["disabled_reason"]
    assert "chat_id" in _disabled(api, bad_payload, "payload_invalid")["disabled_reason"]
    assert _jobs(api, "gone") == [] and _jobs(api, "bad-payload") == []
    # The scheduler reaches the unreadable rows in its own order: wait for each, do not assume it.
    wait_for(
        lambda: (
            (api.get(f"/v1/jobs/{job_id}").json().get("error") or {}).get("code") == "run_at_out_of_range"
        ),
        timeout=20,
        what="the year-10000 job dead with run_at_out_of_range",
    )
    wait_for(
        lambda: api.get(f"/v1/schedules/{schedule_id}").json()["disabled_code"] == "time_out_of_range",
        timeout=20,
        what="the year-10000 schedule disabled with time_out_of_range",
    )

    # The good one fires on, every second.
    count = len(_jobs(api, "good"))
    wait_for(lambda: len(_jobs(api, "good")) >= count + 2, timeout=15, what="two more firings")
    assert api.get(f"/v1/schedules/{good['id']}").json()["disabled_code"] is None

    # Re-enabled after a fix, the schedule fires again and its reason is gone.
    api.patch(f"/v1/schedules/{bad_payload['id']}", json={"payload": UNREAD["payload"]})
    again = api.patch(f"/v1/schedules/{bad_payload['id']}", json={"enabled": True}).json()
    assert (again["enabled"], again["disabled_code"], again["disabled_reason"]) == (True, None, None)
    wait_for(lambda: _jobs(api, "bad-payload"), timeout=15, what="the repaired schedule to fire")

    assert scheduler.alive()
    failures = [
        e
        for e in _log_events(scheduler)
        if e.get("event") in ("scheduler_step_failed", "scheduler_loop_failed")
    ]
    assert failures == []  # every failure was an item's, handled where it happened


def test_a_client_job_with_a_slots_old_idempotency_key_does_not_break_the_schedule(
    api: TestClient[Any], farm: Farm, settings: Settings, wait_job: JobWaiter
) -> None:
    start = datetime.now(UTC) + timedelta(seconds=3)
    schedule = _schedule(api, "slot", every_seconds=3600, start_at=start.isoformat())
    slot = datetime.fromisoformat(schedule["next_run_at"])
    # The key the scheduler used for this slot before it had a namespace of its own, another payload.
    taken = api.post(
        "/v1/jobs",
        json={
            "type": "unread_count",
            "payload": {"chat_id": "other", "user_id": "mallory"},
            "idempotency_key": f"schedule:{schedule['id']}:{slot.isoformat()}",
            "delay_seconds": 3600,
        },
    )
    assert taken.status_code == 201, taken.text
    farm.worker()
    scheduler = farm.scheduler()

    fired = wait_for(lambda: _jobs(api, "slot"), timeout=20, what="the slot to fire")
    assert len(fired) == 1 and fired[0]["id"] != taken.json()["id"]
    assert fired[0]["payload"]["user_id"] == "u" and fired[0]["idempotency_key"] is None
    assert wait_job(fired[0]["id"])["status"] == "succeeded"
    after = api.get(f"/v1/schedules/{schedule['id']}").json()
    assert after["last_job_id"] == fired[0]["id"] and after["disabled_code"] is None
    assert datetime.fromisoformat(after["next_run_at"]) == slot + timedelta(hours=1)
    with transaction(settings) as conn:
        firings = conn.execute(sa.select(schedule_firings)).all()
    assert [(f.schedule_id, f.slot, f.job_id) for f in firings] == [
        (uuid.UUID(schedule["id"]), slot, uuid.UUID(fired[0]["id"]))
    ]
    assert scheduler.alive()


def test_a_slot_already_fired_is_not_fired_again(
    api: TestClient[Any], farm: Farm, settings: Settings
) -> None:
    """Should next_run_at ever point back at a fired slot (a clock set back, a restore), the firing
    table keeps the slot from making a second job, and the schedule moves on."""
    schedule = _schedule(api, "once", every_seconds=3600)
    slot = datetime.fromisoformat(schedule["next_run_at"])
    with transaction(settings) as conn:
        conn.execute(sa.insert(schedule_firings).values(schedule_id=uuid.UUID(schedule["id"]), slot=slot))
    farm.scheduler()
    moved = wait_for(
        lambda: (
            (s := api.get(f"/v1/schedules/{schedule['id']}").json())["next_run_at"] != schedule["next_run_at"]
            and s
        ),
        timeout=15,
        what="the schedule to move past the fired slot",
    )
    assert _jobs(api, "once") == [] and moved["enabled"] is True


def test_a_step_failing_for_the_farms_own_reason_backs_off_alone_and_blames_no_item(
    api: TestClient[Any], farm: Farm, settings: Settings, wait_job: JobWaiter
) -> None:
    """A table the firing step needs is gone (a botched migration): that step fails and backs off,
    logged with its traceback; it disables no schedule; due jobs are still published; the process
    lives; once the table is back, the schedule fires again."""
    schedule = _schedule(api, "systemic")
    farm.worker()
    with transaction(settings) as conn:
        conn.execute(sa.text("ALTER TABLE schedule_firings RENAME TO schedule_firings_away"))
    scheduler = farm.scheduler()

    def failures() -> list[dict[str, Any]]:
        events = _log_events(scheduler)
        return [
            e for e in events if e.get("event") == "scheduler_step_failed" and e["step"] == "fire_schedules"
        ]

    wait_for(lambda: len(failures()) >= 2, timeout=20, what="the firing step to fail twice")
    failed = failures()
    # The firing step, and the history's upkeep, which prunes old firing records: both need the table.
    steps = {e["step"] for e in _log_events(scheduler) if e.get("event") == "scheduler_step_failed"}
    assert steps <= {"fire_schedules", "prune_history"}
    assert failed[1]["retry_in_s"] > failed[0]["retry_in_s"]  # backing off, not spinning
    assert "exception" in failed[0]  # with its traceback
    job = api.post("/v1/jobs", json={**UNREAD, "delay_seconds": 1}).json()
    assert wait_job(job["id"])["status"] == "succeeded"  # the other steps go on
    assert api.get(f"/v1/schedules/{schedule['id']}").json()["disabled_code"] is None

    with transaction(settings) as conn:
        conn.execute(sa.text("ALTER TABLE schedule_firings_away RENAME TO schedule_firings"))
    wait_for(lambda: _jobs(api, "systemic"), timeout=20, what="the schedule to fire once the table is back")
    assert scheduler.alive()
    wait_for(
        lambda: any(e.get("event") == "scheduler_step_recovered" for e in _log_events(scheduler)),
        what="the scheduler_step_recovered line",
    )
