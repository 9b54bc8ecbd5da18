"""Retention (core/engine/retention.py) with real worker, scheduler and API processes: finished jobs go
after their retention with their attempts, scrapes, outbound rows and idempotency keys, dead letters
and the audit log stay for their own, domain data stays, /metrics counts it all; and two schedulers
prune side by side, each row once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from core.engine import stats as job_stats
from core.engine.jobs import utcnow
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import (
    audit_log,
    chat_messages,
    chats,
    job_attempts,
    jobs,
    outbound_messages,
    prune_counts,
    schedule_firings,
    schedules,
    scrapes,
)
from tests.integration.conftest import Farm, JobWaiter, count_rows
from tests.services import wait_for

DIES = {"fail_times": 9, "error": "permanent"}


@pytest.fixture
def settings(settings: Settings) -> Iterator[Settings]:
    """Succeeded and cancelled jobs kept two seconds, dead letters an hour, pruning every 0.2 s."""
    yield settings.replace(
        retain_succeeded_s=2.0,
        retain_cancelled_s=2.0,
        retain_dead_s=3600.0,
        prune_interval_s=0.2,
        prune_batch=7,
    )


def _metrics(api: TestClient[Any]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = api.get("/metrics")
    assert r.status_code == 200, r.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def _pruned(api: TestClient[Any], table: str, status: str) -> float:
    return _metrics(api)[("jobyard_pruned_rows_total", (("status", status), ("table", table)))]


def _hang_things_off(settings: Settings, job_id: str) -> dict[str, uuid.UUID]:
    """A scrape with its screenshot, two outbound rows (one past its window), a chat message naming
    the job, two audit entries (one past its retention), and a paused hourly schedule with the
    records of two slots it fired (one older than any job is kept); their ids."""
    now = utcnow()
    names = ("scrape", "old_out", "new_out", "message", "old_audit", "audit", "schedule")
    ids = {name: uuid.uuid4() for name in names}
    outbound = {
        "attempt": 1,
        "to_sealed": "jy2:test",
        "to_hash": "h",
        "to_key_id": "k",
        "kind": "text",
        "body": {},
        "status": "delivered",
    }
    with transaction(settings) as conn:
        conn.execute(
            sa.insert(scrapes).values(
                id=ids["scrape"],
                job_id=job_id,
                url="https://example.com/",
                final_url="https://example.com/",
                title="t",
                text="x" * 10_000,
                fields={},
                links=[],
                blocked_requests=[],
                content_sha256="0" * 64,
                screenshot=b"\x89PNG" + b"0" * 50_000,
            )
        )
        conn.execute(
            sa.insert(outbound_messages),
            [
                {**outbound, "id": ids["old_out"], "job_id": job_id, "created_at": now - timedelta(days=31)},
                {**outbound, "id": ids["new_out"], "job_id": job_id, "attempt": 2, "created_at": now},
            ],
        )
        conn.execute(sa.insert(chats).values(id="retention-chat"))
        conn.execute(
            sa.insert(chat_messages).values(
                id=ids["message"], chat_id="retention-chat", role="assistant", content="hi", job_id=job_id
            )
        )
        entry = {"actor": "ops", "action": "discard", "selection": {}, "reason": "test", "counts": {}}
        conn.execute(
            sa.insert(audit_log),
            [
                {**entry, "id": ids["old_audit"], "at": now - timedelta(days=366)},
                {**entry, "id": ids["audit"], "at": now},
            ],
        )
        conn.execute(
            sa.insert(schedules).values(
                id=ids["schedule"],
                type="test_flaky",
                payload={},
                every_seconds=3600,
                enabled=False,
                next_run_at=now + timedelta(hours=1),
            )
        )
        conn.execute(
            sa.insert(schedule_firings),
            [
                {"schedule_id": ids["schedule"], "slot": now - timedelta(hours=2), "job_id": job_id},
                {"schedule_id": ids["schedule"], "slot": now - timedelta(minutes=1), "job_id": job_id},
            ],
        )
    return ids


def test_finished_jobs_go_after_their_retention_and_dead_letters_after_theirs(
    farm: Farm, settings: Settings, api: TestClient[Any], wait_job: JobWaiter
) -> None:
    farm.worker()
    enqueued = api.post(
        "/v1/jobs/batch",
        json={
            "jobs": [{"type": "test_flaky", "payload": {}} for _ in range(20)]
            + [{"type": "test_flaky", "payload": DIES}] * 3
        },
    )
    assert enqueued.status_code == 201, enqueued.text
    ids = [j["id"] for j in enqueued.json()["items"]]
    keyed = api.post("/v1/jobs", json={"type": "test_flaky", "payload": {}, "idempotency_key": "once"}).json()
    later = api.post("/v1/jobs", json={"type": "test_flaky", "payload": {}, "delay_seconds": 3600}).json()
    cancelled = api.post("/v1/jobs", json={"type": "test_flaky", "payload": {}, "delay_seconds": 3600}).json()
    assert api.post(f"/v1/jobs/{cancelled['id']}/cancel").status_code == 200
    succeeded, dead = [*ids[:20], keyed["id"]], ids[20:]
    for job_id in succeeded:
        wait_job(job_id, "succeeded", timeout=60)
    for job_id in dead:
        wait_job(job_id, "dead", timeout=60)
    things = _hang_things_off(settings, succeeded[0])
    # The attempts are folded into the job counters first (as minutes pass): pruning waits for that.
    job_stats.refresh(settings, utcnow() + timedelta(minutes=5))

    succeeded_lag = ("jobyard_prune_lag_seconds", (("status", "succeeded"), ("table", "jobs")))
    wait_for(lambda: _metrics(api)[succeeded_lag] > 0, timeout=10, what="the succeeded jobs to be overdue")

    schedulers = [farm.scheduler()]
    wait_for(
        lambda: all(api.get(f"/v1/jobs/{i}").status_code == 404 for i in [*succeeded, cancelled["id"]]),
        timeout=30,
        interval=0.2,
        what="the succeeded and cancelled jobs to be pruned",
    )
    never = api.get(f"/v1/jobs/{uuid.uuid4()}").json()["error"]
    assert api.get(f"/v1/jobs/{succeeded[0]}").json()["error"]["code"] == never["code"] == "job_not_found"
    assert api.get(f"/v1/jobs/{succeeded[0]}/attempts").status_code == 404
    assert count_rows(settings, job_attempts, job_attempts.c.job_id.in_(succeeded)) == 0
    assert count_rows(settings, scrapes) == 0
    assert api.get(f"/v1/scrapes/{things['scrape']}").status_code == 404

    # The outbound row past its window goes once its job left jobs (a later step of the same prune
    # pass); the recent one waits for late statuses, still naming its job.
    def outbound_left() -> list[tuple[Any, ...]]:
        with transaction(settings) as conn:
            return [
                tuple(r) for r in conn.execute(sa.select(outbound_messages.c.id, outbound_messages.c.job_id))
            ]

    kept = [(things["new_out"], uuid.UUID(succeeded[0]))]
    wait_for(
        lambda: outbound_left() == kept, timeout=30, interval=0.2, what="the old outbound row to be pruned"
    )
    assert outbound_left() == kept
    # Dead letters stay for their own retention, with their attempts; so does every live job.
    for job_id in dead:
        assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "dead"
    assert api.get(f"/v1/jobs/{later['id']}").json()["status"] == "scheduled"
    assert count_rows(settings, job_attempts, job_attempts.c.job_id.in_(dead)) == 3
    # The audit log keeps a year; domain data is never history.
    assert {r for (r,) in _rows(settings, audit_log.c.id)} == {things["audit"]}
    assert {r for (r,) in _rows(settings, chat_messages.c.id)} == {things["message"]}
    # A schedule's record of a slot goes once no job it made can be kept (the longest retention
    # here is the dead letters' hour); the schedule stays.
    assert [r.slot > utcnow() - timedelta(hours=1) for r in _rows(settings, schedule_firings.c.slot)] == [
        True
    ]
    assert api.get(f"/v1/schedules/{things['schedule']}").status_code == 200
    # The idempotency key went with its job: the same key now makes a new job.
    again = api.post(
        "/v1/jobs",
        json={"type": "test_flaky", "payload": {}, "idempotency_key": "once", "delay_seconds": 3600},
    )
    assert again.status_code == 201 and again.json()["id"] != keyed["id"]

    assert _pruned(api, "jobs", "succeeded") == 21
    assert _pruned(api, "job_attempts", "succeeded") == 21
    assert _pruned(api, "jobs", "cancelled") == 1
    assert _pruned(api, "scrapes", "succeeded") == 1
    assert _pruned(api, "outbound_messages", "") == 1
    assert _pruned(api, "audit_log", "") == 1
    assert _pruned(api, "schedule_firings", "") == 1
    assert _pruned(api, "jobs", "dead") == 0
    metrics = _metrics(api)
    assert metrics[succeeded_lag] == 0
    assert metrics[("jobyard_prune_lag_seconds", (("status", "dead"), ("table", "jobs")))] == 0
    assert metrics[("jobyard_jobs_rows", (("status", "dead"),))] == 3
    assert metrics[("jobyard_table_size_bytes", (("table", "jobs"),))] > 0
    assert ("jobyard_table_dead_tuples", (("table", "job_attempts"),)) in metrics
    assert metrics[("jobyard_postgres_xmin_age_transactions", ())] >= 0

    # A scheduler that keeps dead letters a second prunes them too, and counts them.
    farm.settings = settings.replace(retain_dead_s=1.0)
    schedulers.append(farm.scheduler())
    wait_for(
        lambda: all(api.get(f"/v1/jobs/{i}").status_code == 404 for i in dead),
        timeout=30,
        interval=0.2,
        what="the dead letters to be pruned",
    )
    assert _pruned(api, "jobs", "dead") == 3
    assert _pruned(api, "job_attempts", "dead") == 3
    assert api.get(f"/v1/jobs/{later['id']}").json()["status"] == "scheduled"
    for proc in schedulers:
        assert "scheduler_step_failed" not in proc.log() and "Traceback" not in proc.log(), proc.log()[-2000:]


def _rows(settings: Settings, *columns: sa.Column[Any]) -> list[Any]:
    with transaction(settings) as conn:
        return list(conn.execute(sa.select(*columns)).all())


def _insert_finished(settings: Settings, n: int) -> None:
    """``n`` jobs that succeeded an hour ago, each with its attempt, written at once."""
    with transaction(settings) as conn:
        conn.execute(
            sa.text(
                """
                WITH j AS (
                    INSERT INTO jobs (id, type, queue, status, payload, max_retries, attempts, created_at,
                                      finished_at, started_at)
                    SELECT gen_random_uuid(), 'test_flaky', 'test_flaky', 'succeeded', '{}', 2, 1,
                           now() - interval '1 hour', now() - interval '1 hour' + g * interval '1 ms',
                           now() - interval '1 hour'
                    FROM generate_series(1, :n) g
                    RETURNING id, started_at, finished_at
                )
                INSERT INTO job_attempts (job_id, number, type, worker, started_at, finished_at, outcome, job_status)
                SELECT id, 1, 'test_flaky', 'w', started_at, finished_at, 'succeeded', 'succeeded' FROM j
                """
            ),
            {"n": n},
        )


def test_two_schedulers_prune_together_each_row_once(
    farm: Farm, settings: Settings, api: TestClient[Any]
) -> None:
    n = 10_000
    farm.settings = settings.replace(prune_batch=50)
    first, second = farm.scheduler(), farm.scheduler()
    later = api.post("/v1/jobs", json={"type": "test_flaky", "payload": {}, "delay_seconds": 3600}).json()
    _insert_finished(settings, n)  # both schedulers see them within 0.2 s

    def pruned_all() -> bool:
        with transaction(settings) as conn:
            counted = dict(
                conn.execute(
                    sa.select(prune_counts.c.table_name, prune_counts.c.pruned).where(
                        prune_counts.c.status == "succeeded"
                    )
                ).all()
            )
        return counted.get("jobs") == n

    wait_for(pruned_all, timeout=120, interval=0.2, what=f"the {n} jobs to be pruned")
    assert count_rows(settings, jobs, jobs.c.status == "succeeded") == 0
    assert count_rows(settings, job_attempts) == 0
    assert _pruned(api, "jobs", "succeeded") == n
    assert _pruned(api, "job_attempts", "succeeded") == n
    assert api.get(f"/v1/jobs/{later['id']}").json()["status"] == "scheduled"
    # Both took part (each logs what it removed), and neither failed or waited on the other's rows.
    for proc in (first, second):
        wait_for(lambda: '"pruned"' in proc.log(), what="the prune's line")  # noqa: B023 - waited here
        log = proc.log()
        assert "scheduler_step_failed" not in log and "Traceback" not in log, log[-2000:]
