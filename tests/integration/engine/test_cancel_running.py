"""Cancelling a running job through real worker processes: the handler sees ``ctx.cancelled`` and the
job ends cancelled within a second or so, a job that finishes first stays succeeded, another
tenant's running job is not found; and ``ctx.progress``: shown on the job (API and dashboard) while
it runs, kept after, refused out of range."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from litestar.testing import TestClient

from control_api.app import create_app
from core.platform.settings import Settings
from tests.integration.access.test_sessions import tenant_login
from tests.integration.conftest import Farm, JobWaiter, make_key
from tests.services import wait_for


def _start(api: TestClient[Any], job_type: str, **payload: Any) -> str:
    r = api.post("/v1/jobs", json={"type": job_type, "payload": payload})
    assert r.status_code == 201, r.text
    job_id: str = r.json()["id"]
    return job_id


def _running(api: TestClient[Any], job_id: str, past: float = -1.0) -> dict[str, Any]:
    """The job once it runs and has reported a fraction above ``past``."""

    def check() -> dict[str, Any] | None:
        job: dict[str, Any] = api.get(f"/v1/jobs/{job_id}").json()
        progress = job["progress"]
        return job if job["status"] == "running" and progress and progress["fraction"] > past else None

    found: dict[str, Any] = wait_for(check, timeout=10, what=f"job {job_id} running with progress")
    return found


def test_a_handler_checking_ctx_cancelled_stops_and_keeps_its_progress(
    api: TestClient[Any], farm: Farm, settings: Settings, wait_job: JobWaiter
) -> None:
    farm.worker(threads=2)
    job_id = _start(api, "test_steps", steps=200, step_s=0.05)
    running = _running(api, job_id, past=0.0)  # a second report: written a second after the first
    assert 0 < running["progress"]["fraction"] < 1
    assert running["progress"]["message"].startswith("step ")
    assert running["cancel_requested_at"] is None
    listed = api.get("/v1/jobs", params={"type": "test_steps"}).json()["items"]
    assert [j["progress"]["fraction"] for j in listed if j["id"] == job_id] != [None]
    with TestClient(create_app(settings, configure_logs=False)) as browser:
        browser.follow_redirects = False
        tenant_login(browser, settings, "default")
        page = browser.get(f"/dashboard/jobs/{job_id}").text
    assert '<progress max="1"' in page and "step " in page

    asked = api.post(f"/v1/jobs/{job_id}/cancel")
    assert asked.status_code == 202, asked.text
    assert asked.json()["status"] == "running" and asked.json()["cancel_requested_at"]
    asked_at = time.monotonic()
    done = wait_job(job_id, "cancelled", "succeeded", "dead", "retrying", timeout=5)
    assert done["status"] == "cancelled", done
    assert time.monotonic() - asked_at < 3
    assert done["cancelled_by"] == done["created_by"] and done["cancelled_by"]
    assert 0 < done["progress"]["fraction"] < 1  # the last step it reported, kept
    (attempt,) = api.get(f"/v1/jobs/{job_id}/attempts").json()["items"]
    assert (attempt["outcome"], attempt["job_status"]) == ("cancelled", "cancelled")
    assert attempt["error"]["code"] == "cancelled" and "while running" in attempt["error"]["message"]

    # Asking again once it is finished answers as for any finished job.
    again = api.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_cancellable"


def test_a_job_that_finishes_without_stopping_stays_succeeded(
    api: TestClient[Any], farm: Farm, wait_job: JobWaiter
) -> None:
    farm.worker(threads=2)
    # test_sleep never looks at ctx.cancelled: it finishes its work, and that is its outcome.
    job_id = _start(api, "test_sleep", seconds=1.5)
    wait_for(lambda: api.get(f"/v1/jobs/{job_id}").json()["status"] == "running", timeout=10, what="running")
    assert api.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    done = wait_job(job_id, "succeeded", "cancelled", "dead")
    assert done["status"] == "succeeded" and done["result"]["slept"] == 1.5
    assert done["cancel_requested_at"] is not None  # the request stays on record
    assert api.post(f"/v1/jobs/{job_id}/cancel").status_code == 409


def test_another_tenants_running_job_is_not_found(
    api: TestClient[Any], farm: Farm, settings: Settings, wait_job: JobWaiter
) -> None:
    farm.worker(threads=2)
    job_id = _start(api, "test_steps", steps=40, step_s=0.05)
    _running(api, job_id)
    other = make_key(settings, "jobs:write", "jobs:read", tenant="shop-b")
    with TestClient(create_app(settings, configure_logs=False)) as client:
        client.headers["Authorization"] = f"Bearer {other}"
        ghost = client.post(f"/v1/jobs/{job_id}/cancel")
        never = client.post("/v1/jobs/0190aaaa-0000-7000-8000-000000000000/cancel")
    assert ghost.status_code == never.status_code == 404
    assert ghost.json()["error"]["code"] == never.json()["error"]["code"]
    done = wait_job(job_id, "succeeded", "cancelled", "dead")
    assert done["status"] == "succeeded" and done["cancel_requested_at"] is None
    assert done["progress"]["fraction"] == 1.0 and done["progress"]["message"] == "done"


def test_progress_out_of_range_fails_the_job_with_a_clear_error(
    api: TestClient[Any], farm: Farm, wait_job: JobWaiter
) -> None:
    farm.worker(threads=2)
    job_id = _start(api, "test_steps", steps=1, first_report=1.5)
    done = wait_job(job_id, "dead", "succeeded", "retrying")
    assert done["status"] == "dead", done
    assert done["error"]["code"] == "invalid_progress"
    assert "from 0 to 1" in done["error"]["message"]


def test_a_job_whose_worker_dies_after_the_cancel_ends_cancelled(
    api: TestClient[Any], farm: Farm, wait_job: JobWaiter
) -> None:
    farm.settings = farm.settings.replace(worker_dead_after_s=3.0, worker_heartbeat_s=0.5)
    first = farm.worker(threads=1)
    farm.scheduler()
    # One C-level sleep: the job notices nothing, and its worker is killed before it ends.
    job_id = _start(api, "test_sleep", seconds=60, blocking=True)
    wait_for(lambda: api.get(f"/v1/jobs/{job_id}").json()["status"] == "running", timeout=10, what="running")
    assert api.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    (attempt,) = api.get(f"/v1/jobs/{job_id}/attempts").json()["items"]
    os.kill(int(attempt["worker"].split(":")[1]), signal.SIGKILL)
    wait_for(lambda: not first.alive(), timeout=30, what="the dramatiq master to exit")

    done = wait_job(job_id, "cancelled", "dead", "succeeded", timeout=15)
    assert done["status"] == "cancelled", done  # recovered as cancelled, never queued again
    (attempt,) = api.get(f"/v1/jobs/{job_id}/attempts").json()["items"]
    assert attempt["outcome"] == "cancelled" and attempt["error"]["raised"]["code"] == "worker_lost"
