"""Batch handlers and prompt wake-ups, through real worker and API processes."""

from __future__ import annotations

import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from litestar.testing import TestClient

from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import job_attempts, jobs
from tests.integration.conftest import Farm
from tests.services import wait_for


def _all_done(settings: Settings, n: int) -> bool:
    with transaction(settings) as conn:
        finished = conn.execute(
            sa.select(sa.func.count()).select_from(jobs).where(jobs.c.status.in_(("succeeded", "dead")))
        ).scalar_one()
    return bool(finished == n)


def _jobs(settings: Settings) -> list[Any]:
    with transaction(settings) as conn:
        return list(conn.execute(sa.select(jobs).order_by(jobs.c.created_at, jobs.c.id)).all())


def test_queued_increments_run_in_batches_with_each_job_its_own_running_count(
    api: TestClient[Any], farm: Farm, settings: Settings
) -> None:
    # Queued before any worker runs, so the worker finds them all waiting and batches them.
    body = [{"type": "unread_count", "payload": {"chat_id": f"c{i % 3}", "user_id": "u"}} for i in range(300)]
    assert api.post("/v1/jobs/batch", json={"jobs": body}).status_code == 201
    farm.worker(processes=1, threads=2)
    wait_for(lambda: _all_done(settings, 300), timeout=60, what="300 jobs")

    rows = _jobs(settings)
    assert Counter(r.status for r in rows) == {"succeeded": 300}
    # Each job's result is the count right after it: 1..100 once each per chat, as if run one by one.
    for chat in ("c0", "c1", "c2"):
        counts = sorted(r.result["unread"] for r in rows if r.payload["chat_id"] == chat)
        assert counts == list(range(1, 101))
    assert api.get("/v1/unread", params={"user_id": "u"}).json()["total"] == 300
    with transaction(settings) as conn:
        attempts = conn.execute(sa.select(job_attempts.c.number, job_attempts.c.outcome)).all()
    assert Counter(attempts) == {(1, "succeeded"): 300}
    # They really ran together: far fewer claims than jobs.
    with transaction(settings) as conn:
        claims = conn.execute(sa.select(sa.func.count(sa.distinct(jobs.c.started_at)))).scalar_one()
    assert claims < 100


def test_a_failing_batch_runs_its_jobs_one_by_one(
    api: TestClient[Any], settings: Settings, tmp_path: Path
) -> None:
    body = [{"type": "test_batch_probe", "payload": {"poison": i == 25}} for i in range(50)]
    assert api.post("/v1/jobs/batch", json={"jobs": body}).status_code == 201
    farm = Farm(settings.replace(worker_batch_max=10), tmp_path)
    try:
        farm.worker(processes=1, threads=1)
        wait_for(lambda: _all_done(settings, 50), timeout=60, what="50 jobs")
    finally:
        farm.discard()

    rows = _jobs(settings)
    poisoned = [r for r in rows if r.payload["poison"]]
    assert [(r.status, r.error["code"]) for r in poisoned] == [("dead", "test_poison")]
    good = [r for r in rows if not r.payload["poison"]]
    assert all(r.status == "succeeded" and r.result["attempt"] == 1 for r in good)
    # The nine that shared the poisoned job's batch ran alone; the other forty stayed in batches.
    sizes = Counter(r.result["batch_size"] for r in good)
    assert sizes == {1: 9, 10: 40}


def test_an_idle_worker_is_woken_by_a_publish_not_its_poll(
    settings: Settings, tmp_path: Path, admin_key: str
) -> None:
    # An idle poll of a minute: only the wake token published with the job can start it sooner.
    farm = Farm(settings.replace(worker_idle_poll_ms=60_000), tmp_path)
    try:
        farm.worker(processes=1, threads=2)
        _, base = farm.api()
        headers = {"Authorization": f"Bearer {admin_key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            for i in range(3):
                job = client.post(
                    "/v1/jobs", json={"type": "unread_count", "payload": {"chat_id": "w", "user_id": f"u{i}"}}
                ).json()

                def done(job_id: str = job["id"]) -> bool:
                    return client.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"

                wait_for(done, timeout=10, what="the job to start without waiting for the poll")
    finally:
        farm.discard()


def test_concurrent_enqueues_share_commits_and_keep_their_own_outcomes(
    farm: Farm, settings: Settings, admin_key: str
) -> None:
    _, base = farm.api()
    headers = {"Authorization": f"Bearer {admin_key}"}
    key = f"k-{uuid.uuid4()}"

    def post(i: int) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"type": "unread_count", "payload": {"chat_id": f"c{i}", "user_id": "u"}}
        if i in (7, 8):
            # The same idempotency key with two different payloads: one wins, the other is refused.
            body["idempotency_key"] = key
        if i == 9:
            # A value Postgres cannot store (a NUL character) fails its own request, not its group's.
            body["payload"]["chat_id"] = "c\u0000"
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            r = client.post("/v1/jobs", json=body)
            return r.status_code, r.json()

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(post, range(200)))
    codes = Counter(code for code, _ in answers)
    assert codes == {201: 198, 409: 1, 400: 1}
    created = {a["id"] for code, a in answers if code == 201}
    with transaction(settings) as conn:
        stored = {str(i) for i in conn.execute(sa.select(jobs.c.id)).scalars()}
    assert stored == created
