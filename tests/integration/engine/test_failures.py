"""Retries that fit each error, against a fake provider that fails on demand; time limits."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.fakes.provider import FakeProvider, Respond, Stall
from tests.integration.conftest import Farm, JobWaiter
from tests.services import wait_for


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    fake = FakeProvider()
    yield fake
    fake.close()


def _attempts(api: TestClient[Any], job_id: str) -> list[dict[str, Any]]:
    return api.get(f"/v1/jobs/{job_id}/attempts").json()["items"]  # type: ignore[no-any-return]


def _enqueue(api: TestClient[Any], provider: FakeProvider, key: str, **extra: Any) -> str:
    body = {"type": "test_provider", "payload": {"url": provider.url, "key": key}, **extra}
    r = api.post("/v1/jobs", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]  # type: ignore[no-any-return]


def test_server_errors_are_retried_and_client_errors_are_not(
    api: TestClient[Any], farm: Farm, provider: FakeProvider, wait_job: JobWaiter
) -> None:
    farm.worker()
    farm.scheduler()
    provider.script("flaky", Respond(500), Respond(500), Respond(200))
    provider.script("bad", Respond(400))
    flaky = _enqueue(api, provider, "flaky")
    bad = _enqueue(api, provider, "bad")

    done = wait_job(flaky)
    assert done["attempts"] == 3
    attempts = _attempts(api, flaky)
    assert [a["outcome"] for a in attempts] == ["failed", "failed", "succeeded"]
    assert [a["error"]["code"] for a in attempts[:2]] == ["provider_unavailable", "provider_unavailable"]
    assert "answered 500" in attempts[0]["error"]["message"]

    dead = wait_job(bad, "dead")
    assert dead["attempts"] == 1
    assert dead["error"]["code"] == "provider_rejected"
    assert dead["error"]["retryable"] is False
    assert len(provider.calls("bad")) == 1


def test_a_blip_is_retried_inside_the_call(
    api: TestClient[Any], farm: Farm, provider: FakeProvider, wait_job: JobWaiter
) -> None:
    farm.worker()
    provider.script("blip", Respond(502))
    done = wait_job(_enqueue(api, provider, "blip"))
    assert done["attempts"] == 1  # tenacity absorbed the lone 502
    assert len(provider.calls("blip")) == 2


def test_rate_limits_wait_retry_after_without_spending_the_budget(
    api: TestClient[Any], farm: Farm, provider: FakeProvider, wait_job: JobWaiter
) -> None:
    farm.worker()
    farm.scheduler()
    provider.script("busy", *[Respond(429, retry_after=2)] * 3, Respond(200))
    job_id = _enqueue(api, provider, "busy", max_retries=1)

    job = wait_job(job_id, "retrying")
    assert job["error"]["code"] == "rate_limited"
    assert datetime.fromisoformat(job["run_at"]) >= datetime.fromisoformat(job["started_at"])

    done = wait_job(job_id, timeout=30)
    assert done["attempts"] == 4 and done["max_retries"] == 1
    assert [a["outcome"] for a in _attempts(api, job_id)] == ["rate_limited"] * 3 + ["succeeded"]
    calls = provider.calls("busy")
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    assert len(gaps) == 3
    assert all(gap >= 2.0 for gap in gaps), gaps


def test_a_stalled_provider_times_out_as_retryable(
    api: TestClient[Any], farm: Farm, provider: FakeProvider, wait_job: JobWaiter
) -> None:
    farm.worker()
    farm.scheduler()
    provider.script("slow", Stall(3))
    body = {"type": "test_provider", "payload": {"url": provider.url, "key": "slow", "timeout_s": 0.5}}
    job_id = api.post("/v1/jobs", json=body).json()["id"]
    done = wait_job(job_id)
    first = _attempts(api, job_id)[0]
    assert (first["outcome"], first["error"]["code"]) == ("failed", "provider_timeout")
    assert done["attempts"] == 2


def test_time_limits_stop_python_code_and_recover_blocking_code(
    api: TestClient[Any], farm: Farm, wait_job: JobWaiter
) -> None:
    farm.settings = farm.settings.replace(stuck_grace_s=1.0)
    worker = farm.worker(threads=4)
    farm.scheduler()
    python_loop = api.post("/v1/jobs", json={"type": "test_slow", "payload": {"seconds": 30}}).json()["id"]
    blocking = api.post(
        "/v1/jobs", json={"type": "test_slow", "payload": {"seconds": 6, "blocking": True}}
    ).json()["id"]

    # Dramatiq's TimeLimit interrupts the Python loop at 1 s; max_retries=1 gives two attempts.
    dead = wait_job(python_loop, "dead", timeout=30)
    assert dead["attempts"] == 2
    assert dead["error"]["code"] == "time_limit_exceeded"

    # A C-level sleep cannot be interrupted: recovery takes the job back after limit + grace.
    dead = wait_job(blocking, "dead", timeout=30)
    outcomes = [a["outcome"] for a in _attempts(api, blocking)]
    assert outcomes == ["timed_out", "timed_out"]
    assert dead["error"]["code"] == "time_limit_exceeded"
    # When the stuck threads finally return, their success is refused: the job stays dead.
    wait_for(lambda: worker.log().count('"claim_lost"') >= 2, timeout=20, what="late threads fenced out")
    assert api.get(f"/v1/jobs/{blocking}").json()["status"] == "dead"
    assert all(
        json.loads(line)["level"] != "critical" for line in worker.log().splitlines() if line.startswith("{")
    )
