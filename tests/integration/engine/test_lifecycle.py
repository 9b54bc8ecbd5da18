"""A job's path through real worker and scheduler processes: claim, result, retries, dead letters."""

from __future__ import annotations

import json
from typing import Any

from litestar.testing import TestClient

from core.engine.broker import Publication, publish
from core.platform.settings import Settings
from tests.integration.conftest import Farm, JobWaiter
from tests.services import wait_for


def test_unread_job_succeeds_and_records_its_attempt(
    api: TestClient[Any], farm: Farm, wait_job: JobWaiter
) -> None:
    worker = farm.worker()
    job = api.post(
        "/v1/jobs",
        json={"type": "unread_count", "payload": {"chat_id": "c1", "user_id": "u1", "by": 3}},
        headers={"X-Request-ID": "trace-me-42"},
    ).json()
    done = wait_job(job["id"])
    assert done["result"] == {"chat_id": "c1", "unread": 3}
    assert done["attempts"] == 1
    assert done["started_at"] and done["finished_at"]
    assert api.get("/v1/unread", params={"user_id": "u1"}).json() == {
        "items": [{"chat_id": "c1", "unread": 3, "tenant": "default"}],
        "total": 3,
    }
    attempts = api.get(f"/v1/jobs/{job['id']}/attempts").json()["items"]
    assert [(a["number"], a["outcome"]) for a in attempts] == [(1, "succeeded")]

    # The job's success is on the worker's log with its request id: unread_count runs in batches,
    # whose one line names each job of the batch (docs/operations/metrics.md).
    def entries() -> list[tuple[str, dict[str, Any]]]:
        lines = [json.loads(line) for line in worker.log().splitlines() if job["id"] in line]
        return [
            (line["event"], entry)
            for line in lines
            for entry in (line.get("jobs") or [line])
            if entry.get("job_id") == job["id"]
        ]

    found = wait_for(entries, what="the job's log line")
    assert [event for event, _ in found] == ["jobs_succeeded"]
    assert all(entry["request_id"] == "trace-me-42" and entry["attempt"] == 1 for _, entry in found)


def test_reset_recount_and_mark_read(api: TestClient[Any], farm: Farm, wait_job: JobWaiter) -> None:
    farm.worker()

    def run(op: str, **extra: Any) -> dict[str, Any]:
        body = {"type": "unread_count", "payload": {"chat_id": "c9", "user_id": "u9", "op": op, **extra}}
        return wait_job(api.post("/v1/jobs", json=body).json()["id"])["result"]  # type: ignore[no-any-return]

    assert run("increment", by=5) == {"chat_id": "c9", "unread": 5}
    assert run("reset") == {"chat_id": "c9", "unread": 0}
    # No messages in the chat since the reset: a recount agrees with zero.
    assert run("recount") == {"chat_id": "c9", "unread": 0}
    run("increment", by=2)
    read = api.post("/v1/chats/c9/read", json={"user_id": "u9"}).json()
    assert read == {"chat_id": "c9", "unread": 0, "tenant": "default"}
    assert api.get("/v1/unread", params={"user_id": "u9"}).json()["total"] == 0
    assert api.get("/v1/chats/c9/messages").json() == {"items": [], "next_cursor": None}


def test_retryable_failure_retries_from_postgres_then_succeeds(
    api: TestClient[Any], farm: Farm, wait_job: JobWaiter
) -> None:
    farm.worker()
    farm.scheduler()  # retries wait in Postgres; the scheduler publishes them when due
    job = api.post("/v1/jobs", json={"type": "test_flaky", "payload": {"fail_times": 2}}).json()
    done = wait_job(job["id"])
    assert done["attempts"] == 3
    assert done["result"] == {"attempt": 3}
    attempts = api.get(f"/v1/jobs/{job['id']}/attempts").json()["items"]
    assert [a["outcome"] for a in attempts] == ["failed", "failed", "succeeded"]
    assert attempts[0]["error"]["code"] == "test_retryable"
    assert "failing attempt 1" in attempts[0]["error"]["traceback"]


def test_exhausted_retries_and_permanent_errors_end_dead(
    api: TestClient[Any], farm: Farm, wait_job: JobWaiter
) -> None:
    farm.worker()
    farm.scheduler()
    exhausted = api.post("/v1/jobs", json={"type": "test_flaky", "payload": {"fail_times": 99}}).json()
    permanent = api.post(
        "/v1/jobs", json={"type": "test_flaky", "payload": {"fail_times": 99, "error": "permanent"}}
    ).json()
    unexpected = api.post(
        "/v1/jobs",
        json={"type": "test_flaky", "payload": {"fail_times": 99, "error": "unexpected"}, "max_retries": 0},
    ).json()

    dead = wait_job(exhausted["id"], "dead")
    assert dead["attempts"] == 3  # the first attempt and the type's 2 retries
    assert dead["error"] == {"code": "test_retryable", "message": "failing attempt 3", "retryable": True}

    dead = wait_job(permanent["id"], "dead")
    assert dead["attempts"] == 1  # permanent: no retry
    assert dead["error"]["code"] == "test_permanent"
    assert dead["error"]["retryable"] is False

    dead = wait_job(unexpected["id"], "dead")
    assert dead["attempts"] == 1
    assert dead["error"]["code"] == "unexpected_error"
    assert "ZeroDivisionError" in dead["error"]["message"]


def test_a_cancelled_jobs_message_is_skipped(
    api: TestClient[Any], farm: Farm, settings: Settings, broker: Any, wait_job: JobWaiter
) -> None:
    cancelled = api.post(
        "/v1/jobs", json={"type": "unread_count", "payload": {"chat_id": "c", "user_id": "u"}}
    )
    api.post(f"/v1/jobs/{cancelled.json()['id']}/cancel")
    marker = api.post("/v1/jobs", json={"type": "unread_count", "payload": {"chat_id": "m", "user_id": "u"}})
    worker = farm.worker()
    wait_job(marker.json()["id"])  # the queue is drained in order, so the cancelled one was seen first
    job = api.get(f"/v1/jobs/{cancelled.json()['id']}").json()
    assert job["status"] == "cancelled"
    assert job["attempts"] == 0
    wait_for(lambda: "job_skipped" in worker.log(), what="the job_skipped line")
    assert api.get("/v1/unread", params={"user_id": "u"}).json()["total"] == 1

    # A duplicate of a finished job's message is skipped too: the count does not move.
    done = marker.json()
    publish(broker, [Publication(_uuid(done["id"]), "unread_count", "unread_count", "dup-1", None)])
    wait_for(lambda: worker.log().count("job_skipped") >= 2, what="duplicate skipped")
    assert api.get("/v1/unread", params={"user_id": "u"}).json()["total"] == 1


def _uuid(value: str) -> Any:
    import uuid

    return uuid.UUID(value)
