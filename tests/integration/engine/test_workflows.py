"""Workflows (core/engine/workflows.py) against real Postgres and Redis and, where they run, real worker
and scheduler processes: steps in order with their ancestors' results, a dead step blocking its
descendants until a redrive, a missing path, a cancel by business key, another tenant's workflow, the
successor inserted once however its predecessors' successes are recorded, and pruning with the jobs."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from core.engine import stats as job_stats
from core.engine.batch_lifecycle import claim_many, mark_many_succeeded
from core.engine.jobs import utcnow
from core.engine.lifecycle import claim, mark_succeeded
from core.engine.retention import prune
from core.errors import ClaimLost
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import jobs, workflow_steps, workflows
from tests.integration.conftest import Farm, JobWaiter, count_rows, make_key
from tests.services import wait_for


def create(api: TestClient[Any], steps: dict[str, Any], **fields: Any) -> dict[str, Any]:
    response = api.post("/v1/workflows", json={"steps": steps, **fields})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def echo(value: Any, *after: str) -> dict[str, Any]:
    return {"type": "test_echo", "payload": {"value": value}, "after": list(after)}


def wait_workflow(api: TestClient[Any], workflow_id: str, state: str, timeout: float = 30) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        wf: dict[str, Any] = api.get(f"/v1/workflows/{workflow_id}").json()
        return wf if wf["state"] == state else None

    return wait_for(check, timeout=timeout, what=f"workflow {workflow_id} to be {state}")  # type: ignore[no-any-return]


def states(wf: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["state"] for s in wf["steps"]}


def step_job(wf: dict[str, Any], name: str) -> str:
    job_id: str = next(s["job_id"] for s in wf["steps"] if s["name"] == name)
    return job_id


@pytest.fixture
def running(farm: Farm) -> Farm:
    """A worker and a scheduler (whose sweeper publishes a successor whose publish was lost)."""
    farm.worker()
    farm.scheduler()
    return farm


@pytest.mark.usefixtures("running")
def test_steps_run_after_their_predecessors_with_their_results(
    api: TestClient[Any], wait_job: JobWaiter
) -> None:
    # A diamond. b's result is made to hold a template (no payload may hold one naming a step that
    # is not its ancestor): it must come out literally in d, never rendered again.
    wf = create(
        api,
        {
            "a": echo({"n": 41, "tags": ["x", "y"], "open": "{{ c.res"}),
            "b": echo("{{ a.result.value.open }}ult.value }}", "a"),
            "c": echo("{{ a.result.value.n }}", "a"),
            "d": echo(
                {"whole": "{{ a.result.value }}", "text": "b={{ b.result.value }} c={{ c.result.value }}"},
                "b",
                "c",
            ),
        },
        business_key="order-7",
    )
    assert wf["state"] == "running"
    # The answer is read after the publish: a worker may have taken a already.
    assert states(wf)["a"] in ("queued", "running", "succeeded")
    assert {states(wf)[n] for n in "bcd"} <= {"waiting", "queued", "running", "succeeded"}
    assert (wf["steps"][0]["name"], wf["steps"][0]["after"]) == ("a", [])
    assert {s["name"]: s["depth"] for s in wf["steps"]} == {"a": 0, "b": 1, "c": 1, "d": 2}

    done = wait_workflow(api, wf["id"], "succeeded")
    assert set(states(done).values()) == {"succeeded"}
    results = {s["name"]: wait_job(s["job_id"])["result"]["value"] for s in done["steps"]}
    assert results["c"] == 41  # a whole-string template keeps the number
    assert results["b"] == "{{ c.result.value }}"
    assert results["d"] == {
        "whole": {"n": 41, "tags": ["x", "y"], "open": "{{ c.res"},
        "text": "b={{ c.result.value }} c=41",
    }
    # Each step is an ordinary job of the workflow's business key.
    listed = api.get("/v1/jobs", params={"business_key": "order-7"}).json()["items"]
    assert sorted(j["id"] for j in listed) == sorted(s["job_id"] for s in done["steps"])
    assert [
        w["id"] for w in api.get("/v1/workflows", params={"business_key": "order-7"}).json()["items"]
    ] == [wf["id"]]


@pytest.mark.usefixtures("running")
def test_a_dead_step_blocks_its_descendants_until_a_redrive_succeeds(
    api: TestClient[Any], wait_job: JobWaiter
) -> None:
    wf = create(
        api,
        {
            "ok": echo(1),
            "fails": {"type": "test_flaky", "payload": {"fail_times": 1, "error": "permanent"}},
            "next": echo("{{ fails.result.attempt }}", "fails", "ok"),
            "last": echo("{{ next.result.value }}", "next"),
        },
    )
    wait_job(step_job(wf, "fails"), "dead")
    dead = wait_workflow(api, wf["id"], "dead")
    wait_job(step_job(dead, "ok"))
    assert states(api.get(f"/v1/workflows/{wf['id']}").json()) == {
        "ok": "succeeded",
        "fails": "dead",
        "next": "blocked",
        "last": "blocked",
    }
    redriven = api.post(
        "/v1/dead-letters/redrive", json={"ids": [step_job(wf, "fails")], "reason": "the test fixed it"}
    )
    assert redriven.status_code == 200, redriven.text
    done = wait_workflow(api, wf["id"], "succeeded")
    assert wait_job(step_job(done, "last"))["result"] == {"value": 2}


def test_a_missing_path_makes_its_step_dead_naming_the_path(
    api: TestClient[Any], farm: Farm, wait_job: JobWaiter
) -> None:
    farm.worker()
    wf = create(
        api,
        {
            "a": echo({"x": 1}),
            "b": echo("{{ a.result.value.y.z }}", "a"),
            "c": echo(1, "b"),
            "bad": {"type": "test_flaky", "payload": {"fail_times": "{{ a.result.value }}"}, "after": ["a"]},
        },
    )
    dead = wait_workflow(api, wf["id"], "dead")
    job = wait_job(step_job(dead, "b"), "dead")
    assert job["error"] == {
        "code": "template_path_missing",
        "message": "step 'b': a.result.value.y.z is not in the result of step 'a'",
        "retryable": False,
    }
    assert job["attempts"] == 0 and job["business_key"] is None
    bad = wait_job(step_job(dead, "bad"), "dead")
    assert bad["error"]["code"] == "workflow_payload_invalid"
    assert "payload.fail_times" in bad["error"]["message"]
    assert states(api.get(f"/v1/workflows/{wf['id']}").json())["c"] == "blocked"
    # It is a dead letter like any other.
    letters = api.get("/v1/dead-letters", params={"error_code": "template_path_missing"}).json()["items"]
    assert [j["id"] for j in letters] == [job["id"]]


def test_a_cancel_by_business_key_cancels_what_has_not_run(api: TestClient[Any], settings: Settings) -> None:
    wf = create(api, {"a": echo(1), "b": echo(2, "a"), "c": echo(3, "b")}, business_key="order-9")
    other = create(api, {"a": echo(1)}, business_key="order-10")
    assert api.post("/v1/jobs/cancel", json={"business_key": "order-9"}).json() == {"cancelled": 1}
    cancelled = api.get(f"/v1/workflows/{wf['id']}").json()
    assert cancelled["state"] == "cancelled"
    assert states(cancelled) == {"a": "cancelled", "b": "cancelled", "c": "cancelled"}
    assert count_rows(settings, workflow_steps, workflow_steps.c.state == "cancelled") == 2
    assert api.get(f"/v1/workflows/{other['id']}").json()["state"] == "running"


def test_validation_idempotency_and_another_tenants_workflow(
    api: TestClient[Any], settings: Settings
) -> None:
    bad = api.post(
        "/v1/workflows",
        json={"steps": {"a": echo(1, "b"), "b": echo("{{ a.result.value }}", "a"), "c": echo(1, "zz")}},
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["details"] == [{"field": "steps.c.after", "message": "no step named 'zz'"}]
    cycle = api.post("/v1/workflows", json={"steps": {"a": echo(1, "b"), "b": echo(1, "a")}})
    assert cycle.json()["error"]["details"] == [
        {"field": "steps", "message": "the steps' after lists form a cycle"}
    ]
    too_many = api.post("/v1/workflows", json={"steps": {f"s{i}": echo(i) for i in range(101)}})
    assert too_many.status_code == 422
    assert api.post("/v1/workflows", json={"steps": {}}).status_code == 422
    assert (
        api.post("/v1/workflows", json={"steps": {"a": {"type": "nope", "payload": {}}}}).status_code == 422
    )

    first = create(api, {"a": echo(1)}, idempotency_key="wf-1", business_key="shared")
    again = api.post("/v1/workflows", json={"steps": {"a": echo(1)}, "idempotency_key": "wf-1"})
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    assert count_rows(settings, jobs) == 1

    b = {"Authorization": f"Bearer {make_key(settings, 'jobs:read', 'jobs:write', tenant='shop-b')}"}
    missing = api.get(f"/v1/workflows/{first['id']}", headers=b)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "workflow_not_found"
    assert api.get("/v1/workflows", params={"business_key": "shared"}, headers=b).json() == {"items": []}
    # The same idempotency key in another tenant is another workflow.
    theirs = api.post("/v1/workflows", json={"steps": {"a": echo(1)}, "idempotency_key": "wf-1"}, headers=b)
    assert theirs.status_code == 201 and theirs.json()["id"] != first["id"]
    assert theirs.json()["tenant"] == "shop-b"


def _claim(settings: Settings, job_id: str) -> Any:
    with transaction(settings) as conn:
        return claim(conn, uuid.UUID(job_id), "test", "test-worker", utcnow() + timedelta(minutes=1))


def test_the_successor_is_inserted_once_however_the_successes_are_recorded(
    api: TestClient[Any], settings: Settings
) -> None:
    wf = create(api, {"a": echo(1), "b": echo(2), "c": echo("{{ a.result.value }}", "a", "b")})
    a = _claim(settings, step_job(wf, "a"))
    assert a.workflow_id == uuid.UUID(wf["id"])
    with transaction(settings) as conn:
        (b,) = claim_many(
            conn, [uuid.UUID(step_job(wf, "b"))], "test", "test-worker", utcnow() + timedelta(minutes=1)
        )

    # a's success (the single path) holds the workflow while b's (the batch path) starts: b's waits
    # for a's commit, then sees a succeeded and inserts c; a's saw b still running and inserted none.
    published: list[Any] = []

    def succeed_b() -> None:
        with transaction(settings) as conn:
            published.extend(mark_many_succeeded(conn, [b], [{"value": 2}]))

    with transaction(settings) as conn:
        assert mark_succeeded(conn, a, {"value": 1}) == []
        other = threading.Thread(target=succeed_b)
        other.start()
        # b's transaction is waiting for the workflow's lock (a's transaction holds it).
        wait_for(lambda: _waiting_for_lock(settings), timeout=10, what="b's success to wait for the lock")
    other.join(10)
    assert [p.type for p in published] == ["test_echo"]

    # A second delivery of a's success: the claim is gone, nothing more is inserted.
    with pytest.raises(ClaimLost), transaction(settings) as conn:
        mark_succeeded(conn, a, {"value": 1})
    with transaction(settings) as conn:
        successors = conn.execute(
            sa.select(jobs.c.id, jobs.c.payload).where(
                jobs.c.workflow_id == uuid.UUID(wf["id"]), jobs.c.type == "test_echo"
            )
        ).all()
    assert len(successors) == 3
    assert states(api.get(f"/v1/workflows/{wf['id']}").json())["c"] == "queued"
    assert {"value": 1} in [r.payload for r in successors]


def _waiting_for_lock(settings: Settings) -> bool:
    with transaction(settings) as conn:
        return bool(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            ).scalar_one()
        )


@pytest.fixture
def short_lived(settings: Settings) -> Settings:
    return settings.replace(retain_succeeded_s=0.5, retain_cancelled_s=0.5)


def test_a_workflow_is_pruned_with_the_last_of_its_jobs(
    api: TestClient[Any], farm: Farm, short_lived: Settings, wait_job: JobWaiter
) -> None:
    done = create(api, {"a": echo(1), "b": echo(2, "a")})
    waiting = create(api, {"a": echo(1), "b": echo(2, "a")}, business_key="keep")
    # Cancelled before any worker could claim its first step.
    assert api.post("/v1/jobs/cancel", json={"business_key": "keep"}).json() == {"cancelled": 1}
    farm.worker()
    wait_workflow(api, done["id"], "succeeded")
    job_stats.refresh(short_lived, utcnow() + timedelta(minutes=5))

    def pruned() -> bool:
        prune(short_lived)
        return all(api.get(f"/v1/workflows/{w['id']}").status_code == 404 for w in (done, waiting))

    wait_for(pruned, timeout=30, interval=0.2, what="the workflows to be pruned with their jobs")
    assert count_rows(short_lived, workflows, workflows.c.id == uuid.UUID(done["id"])) == 0
    assert count_rows(short_lived, workflow_steps, workflow_steps.c.workflow_id == uuid.UUID(done["id"])) == 0
