"""One X-Request-ID from the enqueue request to the worker: on the API's log lines, on the job, and on
every log line the workers write for that job, through a retry run by another attempt."""

from __future__ import annotations

import json
from typing import Any

import httpx

from core.platform.settings import Settings
from tests.integration.conftest import Farm, make_key
from tests.services import wait_for


def _lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_the_request_id_follows_the_job_from_http_to_every_worker_line(
    farm: Farm, settings: Settings
) -> None:
    key = make_key(settings, "jobs:write", "jobs:read")
    worker = farm.worker()
    farm.scheduler()
    api, base = farm.api()
    request_id = "order-4711.retry-check"
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        # Fails once, so a second attempt runs after the scheduler publishes the retry.
        r = client.post(
            "/v1/jobs",
            json={"type": "test_flaky", "payload": {"fail_times": 1}},
            headers={"X-Request-ID": request_id},
        )
        assert r.status_code == 201, r.text
        assert r.headers["x-request-id"] == request_id
        job = r.json()
        assert job["request_id"] == request_id
        done = wait_for(
            lambda: (j := client.get(f"/v1/jobs/{job['id']}").json())["status"] == "succeeded" and j,
            timeout=20,
            what="the job to succeed",
        )
    assert done["request_id"] == request_id
    assert done["attempts"] == 2

    api_lines = [line for line in _lines(api.log()) if line.get("request_id") == request_id]
    # One line for the request, naming the job it created.
    (access,) = [line for line in api_lines if line["event"] == "request"]
    assert (access["method"], access["path"], access["status"]) == ("POST", "/v1/jobs", 201)
    assert (access["job_id"], access["type"], access["created"]) == (job["id"], "test_flaky", True)

    def worker_lines() -> list[dict[str, Any]]:
        return [line for line in _lines(worker.log()) if line.get("job_id") == job["id"]]

    # The success line is written just after the job's row says succeeded.
    wait_for(lambda: any(line["event"] == "job_succeeded" for line in worker_lines()), what="job_succeeded")
    lines = worker_lines()
    events = [line["event"] for line in lines]
    # Each attempt's outcome (a job's start is at DEBUG, its outcome's line carries the same fields).
    assert "job_failed" in events and events.count("job_succeeded") == 1
    assert [line.get("request_id") for line in lines] == [request_id] * len(lines)
    assert sorted({line["attempt"] for line in lines if "attempt" in line}) == [1, 2]
