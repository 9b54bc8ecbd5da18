"""The history table (core/engine/finished.py) with real worker, scheduler and API processes: a
finished job moves out of ``jobs`` once its attempts are counted and reads exactly as before (job,
attempts, list, idempotency key, cancel); a day of history goes by dropping its partition, once,
with two schedulers at it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from core.engine import stats as job_stats
from core.engine.finished import partitions
from core.engine.jobs import utcnow
from core.engine.retention import prune
from core.platform.db import get_engine, transaction
from core.platform.settings import Settings
from core.platform.tables import job_attempts, job_history, jobs, prune_counts
from tests.integration.conftest import Farm, JobWaiter, count_rows
from tests.services import wait_for

DAY_S = 86400.0


@pytest.fixture
def settings(settings: Settings) -> Iterator[Settings]:
    """Pruning (and moving) every 0.2 s, in small batches; history kept as by default."""
    yield settings.replace(prune_interval_s=0.2, history_batch=3, prune_batch=7)


def test_a_finished_job_moves_to_the_history_and_reads_as_before(
    farm: Farm, settings: Settings, api: TestClient[Any], wait_job: JobWaiter
) -> None:
    farm.worker()
    farm.scheduler()  # publishes the retry; moves nothing until the attempts are counted
    retried = api.post("/v1/jobs", json={"type": "test_flaky", "payload": {"fail_times": 1}}).json()
    keyed = api.post(
        "/v1/jobs",
        json={
            "type": "test_flaky",
            "payload": {},
            "idempotency_key": "moved-once",
            "business_key": "order-9",
        },
    ).json()
    cancelled = api.post("/v1/jobs", json={"type": "test_flaky", "payload": {}, "delay_seconds": 3600}).json()
    assert api.post(f"/v1/jobs/{cancelled['id']}/cancel").status_code == 200
    dead = api.post(
        "/v1/jobs", json={"type": "test_flaky", "payload": {"fail_times": 9, "error": "permanent"}}
    )
    wait_job(retried["id"], "succeeded", timeout=60)
    wait_job(keyed["id"], "succeeded", timeout=60)
    wait_job(dead.json()["id"], "dead", timeout=60)
    ids = [retried["id"], keyed["id"], cancelled["id"]]
    before = {i: api.get(f"/v1/jobs/{i}").json() for i in ids}
    attempts_before = {i: api.get(f"/v1/jobs/{i}/attempts").json() for i in ids}
    listed_before = api.get("/v1/jobs", params={"type": "test_flaky", "limit": 10}).json()["items"]
    assert len(attempts_before[retried["id"]]["items"]) == 2

    # Their attempts are folded into the job counters (as minutes pass): then they may move.
    job_stats.refresh(settings, utcnow() + timedelta(minutes=5))
    wait_for(
        lambda: count_rows(settings, job_history, job_history.c.id.in_(ids)) == 3,
        timeout=30,
        interval=0.2,
        what="the finished jobs to move to the history",
    )
    assert count_rows(settings, jobs, jobs.c.id.in_(ids)) == 0
    assert count_rows(settings, job_attempts, job_attempts.c.job_id.in_(ids)) == 0
    # The dead letter stays where the dead-letter queue works on it.
    assert count_rows(settings, jobs, jobs.c.status == "dead") == 1
    today = f"job_history_{utcnow():%Y%m%d}"
    with transaction(settings) as conn:
        assert today in partitions(conn)

    for i in ids:
        assert api.get(f"/v1/jobs/{i}").json() == before[i]
        assert api.get(f"/v1/jobs/{i}/attempts").json() == attempts_before[i]
    assert api.get("/v1/jobs", params={"type": "test_flaky", "limit": 10}).json()["items"] == listed_before
    page = api.get("/v1/jobs", params={"type": "test_flaky", "limit": 2}).json()
    rest = api.get(
        "/v1/jobs", params={"type": "test_flaky", "limit": 10, "cursor": page["next_cursor"]}
    ).json()
    assert page["items"] + rest["items"] == listed_before
    by_key = api.get("/v1/jobs", params={"business_key": "order-9"}).json()["items"]
    assert [j["id"] for j in by_key] == [keyed["id"]]

    # The idempotency key still finds its job; a different payload under it is still a conflict.
    again = api.post(
        "/v1/jobs",
        json={
            "type": "test_flaky",
            "payload": {},
            "idempotency_key": "moved-once",
            "business_key": "order-9",
        },
    )
    assert again.status_code == 200, again.text
    assert again.json()["id"] == keyed["id"] and again.json()["status"] == "succeeded"
    clash = api.post(
        "/v1/jobs", json={"type": "test_flaky", "payload": {"fail_times": 1}, "idempotency_key": "moved-once"}
    )
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "idempotency_conflict"
    assert count_rows(settings, jobs, jobs.c.idempotency_key == "moved-once") == 0
    # A finished job cannot be cancelled or rescheduled, wherever it is.
    refused = api.post(f"/v1/jobs/{retried['id']}/cancel")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "not_cancellable"


def _insert_finished(settings: Settings, n: int, days_ago: int) -> None:
    """``n`` jobs that succeeded at noon (UTC) ``days_ago`` days ago, over 20 minutes, each with its attempt."""
    with transaction(settings) as conn:
        conn.execute(
            sa.text(
                """
                WITH j AS (
                    INSERT INTO jobs (id, type, queue, status, payload, max_retries, attempts, created_at,
                                      finished_at, started_at)
                    SELECT gen_random_uuid(), 'test_flaky', 'test_flaky', 'succeeded', '{}', 2, 1,
                           t - interval '1 second', t, t - interval '1 second'
                    FROM (SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - :days * interval '1 day'
                                 + interval '12 hours' + g * interval '300 ms' AS t
                          FROM generate_series(1, :n) g) s
                    RETURNING id, started_at, finished_at
                )
                INSERT INTO job_attempts (job_id, number, type, worker, started_at, finished_at, outcome, job_status)
                SELECT id, 1, 'test_flaky', 'w', started_at, finished_at, 'succeeded', 'succeeded' FROM j
                """
            ),
            {"n": n, "days": days_ago},
        )


def _pruned_jobs(settings: Settings) -> int | None:
    with transaction(settings) as conn:
        return conn.execute(
            sa.select(prune_counts.c.pruned).where(
                prune_counts.c.table_name == "jobs", prune_counts.c.status == "succeeded"
            )
        ).scalar()


def test_two_schedulers_drop_days_of_history_each_once(
    farm: Farm, settings: Settings, api: TestClient[Any]
) -> None:
    n = 4_000
    # Three days of history, moved into their partitions by a scheduler that keeps a month.
    for days_ago in (6, 5, 2):
        _insert_finished(settings, n, days_ago)
    farm.settings = settings.replace(retain_succeeded_s=30 * DAY_S, history_batch=1000)
    keeper = farm.scheduler()
    wait_for(
        lambda: count_rows(settings, job_history) == 3 * n,
        timeout=60,
        interval=0.2,
        what="the history to move",
    )
    with transaction(settings) as conn:
        days = partitions(conn)
    assert len(days) >= 3, days
    keeper.stop()

    # Two schedulers that keep four days: the two oldest days go (dropped, not deleted), once.
    farm.settings = settings.replace(retain_succeeded_s=4 * DAY_S)
    first, second = farm.scheduler(), farm.scheduler()
    wait_for(lambda: _pruned_jobs(settings) == 2 * n, timeout=60, interval=0.2, what="two days to be dropped")
    assert count_rows(settings, job_history) == n
    with transaction(settings) as conn:
        left = partitions(conn)
        dead_tuples = conn.execute(
            sa.text(
                "SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables WHERE relname LIKE 'job_history_%'"
            )
        ).scalar_one()
    assert len(left) == len(days) - 2 and set(left) < set(days), (days, left)
    assert dead_tuples == 0
    assert _pruned_jobs(settings) == 2 * n
    for proc in (first, second):
        log = proc.log()
        assert "scheduler_step_failed" not in log and "Traceback" not in log, log[-2000:]


def test_a_day_a_reader_holds_goes_on_the_next_pass(settings: Settings) -> None:
    """Dropping a day waits briefly for the history's lock, then leaves the day for the next pass,
    whole (its scrapes and counts too), rather than hold up every read of finished jobs behind it."""
    _insert_finished(settings, 100, 6)
    prune(settings.replace(retain_succeeded_s=30 * DAY_S))  # moves them into their day
    assert count_rows(settings, job_history) == 100
    short = settings.replace(retain_succeeded_s=4 * DAY_S)
    with get_engine(settings).connect() as reader:
        held = reader.begin()
        reader.execute(sa.text("SELECT count(*) FROM job_history"))  # holds its lock until rollback
        prune(short)
        held.rollback()
    assert count_rows(settings, job_history) == 100 and _pruned_jobs(settings) is None
    prune(short)
    assert count_rows(settings, job_history) == 0 and _pruned_jobs(settings) == 100
