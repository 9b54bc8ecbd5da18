"""Dead letters are counted per type and queue by triggers on jobs (migration 0012), so the queue
overview reads a row per type however many there are: the count must follow every way a job
becomes dead or stops being dead (a worker's last failure, a redrive, a discard, pruning, a row
written by hand), in the same transaction."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from litestar.testing import TestClient

from core.engine import stats as job_stats
from core.engine.jobs import utcnow
from core.engine.retention import prune
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import dead_letter_counts
from tests.integration.conftest import Farm, JobWaiter

ONCE = {"fail_times": 1, "error": "permanent"}


def _overview_dead(api: TestClient[Any]) -> int:
    rows = api.get("/v1/queues").json()["items"]
    return sum(r["dead"] for r in rows if r["type"] == "test_flaky")


def _counted_and_real(settings: Settings) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    with transaction(settings) as conn:
        counted = {
            (r.type, r.queue): r.n
            for r in conn.execute(sa.select(dead_letter_counts).where(dead_letter_counts.c.n != 0))
        }
        real = {
            (r.type, r.queue): r.n
            for r in conn.execute(
                sa.text(
                    "SELECT type, queue, count(*) AS n FROM jobs WHERE status = 'dead' GROUP BY type, queue"
                )
            )
        }
    return counted, real


def test_the_dead_letter_count_follows_every_way_in_and_out(
    farm: Farm, settings: Settings, api: TestClient[Any], wait_job: JobWaiter
) -> None:
    farm.worker()
    made = [api.post("/v1/jobs", json={"type": "test_flaky", "payload": ONCE}).json()["id"] for _ in range(6)]
    for job_id in made:
        wait_job(job_id, "dead", timeout=60)
    assert _overview_dead(api) == 6

    # A redrive takes two out (they succeed on their second attempt); a discard one more.
    redriven = api.post("/v1/dead-letters/redrive", json={"ids": made[:2], "reason": "fixed"})
    assert redriven.json()["redriven"] == 2, redriven.text
    for job_id in made[:2]:
        wait_job(job_id, "succeeded", timeout=60)
    discarded = api.post("/v1/dead-letters/discard", json={"ids": [made[2]], "reason": "unwanted"})
    assert discarded.json()["discarded"] == 1, discarded.text
    assert _overview_dead(api) == 3

    # A row written by hand (a restore, a migration) is counted too.
    with transaction(settings) as conn:
        conn.execute(
            sa.text(
                "INSERT INTO jobs (id, type, queue, status, payload, max_retries, finished_at) "
                "VALUES (gen_random_uuid(), 'test_flaky', 'test_flaky', 'dead', '{}', 0, now())"
            )
        )
    assert _overview_dead(api) == 4
    counted, real = _counted_and_real(settings)
    assert counted == real == {("test_flaky", "test_flaky"): 4}

    # Pruning dead letters past their retention takes them out of the count in its own transaction.
    job_stats.refresh(settings, utcnow() + timedelta(minutes=5))
    prune(settings.replace(retain_dead_s=0.001))
    assert _overview_dead(api) == 0
    counted, real = _counted_and_real(settings)
    assert counted == real == {}
