"""A group commit whose Postgres connection breaks right after COMMIT: Postgres has the jobs, the API
never hears so. No job is inserted twice: requests without idempotency keys answer 503 with
Retry-After (their jobs may exist), requests with keys are looked up again and answer their job.

A real API process, many concurrent clients (so requests really share a commit), and a
fault-injecting proxy between the API and Postgres (tests/fakes/pgproxy.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from core.platform.db import transaction
from core.platform.settings import Settings
from tests.fakes.pgproxy import PgProxy, inserted_rows
from tests.integration.conftest import Farm

REQUESTS = 600
CLIENTS = 32
CUTS = 3


@pytest.fixture
def proxy(settings: Settings) -> Iterator[PgProxy]:
    assert settings.database_url
    p = PgProxy(settings.database_url)
    yield p
    p.close()


def _post_all(base: str, key: str, bodies: list[dict[str, Any]], proxy: PgProxy) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {key}"}
    with (
        httpx.Client(base_url=base, headers=headers, timeout=60) as client,
        ThreadPoolExecutor(CLIENTS) as pool,
    ):
        try:
            return list(pool.map(lambda body: client.post("/v1/jobs", json=body), bodies))
        except httpx.TimeoutException as exc:
            # Which side stopped: the API (it sent nothing), or the proxy (it holds an answer back).
            raise AssertionError(
                f"a request got no answer; the proxy's connections:\n{proxy.describe()}"
            ) from exc


def _jobs_by_marker(settings: Settings) -> dict[str, list[str]]:
    """Straight from Postgres (not through the proxy): each marker's job ids."""
    found: dict[str, list[str]] = {}
    with transaction(settings) as conn:
        rows = conn.execute(sa.text("SELECT payload->>'marker', id::text FROM jobs")).all()
    for marker, job_id in rows:
        found.setdefault(marker, []).append(job_id)
    return found


def test_a_connection_lost_after_a_group_commit_answers_503_and_inserts_nothing_twice(
    farm: Farm, settings: Settings, admin_key: str, proxy: PgProxy
) -> None:
    farm.settings = settings.replace(database_url=proxy.url)
    _, base = farm.api()
    # Only a commit of two jobs or more: a group of requests (each posts one job), not one alone.
    proxy.cut_after_commit(lambda tags: inserted_rows(tags) >= 2, times=CUTS)
    bodies = [{"type": "test_effect", "payload": {"marker": f"m{i}"}} for i in range(REQUESTS)]

    responses = _post_all(base, admin_key, bodies, proxy)

    assert len(proxy.cuts) == CUTS, "the proxy never saw a group commit to cut"
    assert set(Counter(r.status_code for r in responses)) <= {201, 503}, [r.text for r in responses]
    jobs = _jobs_by_marker(settings)
    assert [m for m, ids in jobs.items() if len(ids) > 1] == []  # nothing inserted twice
    refused = [
        body["payload"]["marker"] for body, r in zip(bodies, responses, strict=True) if r.status_code == 503
    ]
    # Every request of each cut group was refused, and its job was committed all the same, once.
    assert len(refused) >= sum(inserted_rows(tags) for tags in proxy.cuts)
    assert all(len(jobs.get(m, [])) == 1 for m in refused)
    for r in responses:
        if r.status_code == 503:
            assert r.headers["Retry-After"].isdigit(), r.headers
            assert r.json()["error"]["code"] == "dependency_down"
        else:
            assert jobs[r.json()["payload"]["marker"]] == [r.json()["id"]]
    assert len(jobs) == REQUESTS


def test_keyed_requests_of_a_cut_group_are_answered_with_their_committed_job(
    farm: Farm, settings: Settings, admin_key: str, proxy: PgProxy
) -> None:
    farm.settings = settings.replace(database_url=proxy.url)
    _, base = farm.api()
    # A keyed group commits in a transaction of its own (BEGIN ... COMMIT) from a worker thread.
    proxy.cut_after_commit(lambda tags: "COMMIT" in tags and inserted_rows(tags) >= 2, times=CUTS)
    bodies = [
        {"type": "test_effect", "payload": {"marker": f"k{i}"}, "idempotency_key": f"key-{i}"}
        for i in range(REQUESTS)
    ]

    responses = _post_all(base, admin_key, bodies, proxy)

    assert len(proxy.cuts) == CUTS, "the proxy never saw a group commit to cut"
    statuses = Counter(r.status_code for r in responses)
    # 200: the request of a cut group, run again alone, found the job its group had committed.
    assert set(statuses) <= {200, 201}, [r.text for r in responses if r.status_code not in (200, 201)]
    assert statuses[200] >= sum(inserted_rows(tags) for tags in proxy.cuts)
    jobs = _jobs_by_marker(settings)
    assert len(jobs) == REQUESTS
    for body, r in zip(bodies, responses, strict=True):
        assert jobs[body["payload"]["marker"]] == [r.json()["id"]]


def test_a_value_postgres_refuses_fails_only_its_own_request_of_a_group(
    farm: Farm, settings: Settings, admin_key: str, proxy: PgProxy
) -> None:
    # Hostile input in a group: every tenth request carries a NUL character, which Postgres refuses
    # (the proxy only watches here: it shows the failed joint inserts and the groups that committed).
    farm.settings = settings.replace(database_url=proxy.url)
    _, base = farm.api()
    bodies = [
        {"type": "test_effect", "payload": {"marker": f"n{i}\u0000" if i % 10 == 0 else f"n{i}"}}
        for i in range(REQUESTS)
    ]

    responses = _post_all(base, admin_key, bodies, proxy)

    for body, r in zip(bodies, responses, strict=True):
        if "\0" in body["payload"]["marker"]:
            assert (r.status_code, r.json()["error"]["code"]) == (400, "unstorable_value"), r.text
        else:
            assert r.status_code == 201, r.text
    jobs = _jobs_by_marker(settings)
    assert sorted(jobs) == sorted(
        b["payload"]["marker"] for b in bodies if "\0" not in b["payload"]["marker"]
    )
    assert all(len(ids) == 1 for ids in jobs.values())
    inserts = [(tags, ok) for tags, ok in proxy.ended if any(t.startswith("INSERT") for t in tags) or not ok]
    assert any(not ok for _, ok in inserts), "no joint insert failed: the test did not exercise the split"
    assert any(inserted_rows(tags) >= 2 for tags, ok in inserts if ok), "no group formed"
