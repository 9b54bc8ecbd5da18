"""Live events through real processes: an SSE client (httpx-sse) sees its own tenant's job events only,
while another tenant's jobs run beside them, and resumes with Last-Event-ID without a gap or a repeat;
GET /v1/jobs/{id}?wait= answers when the job is final, or the job as it is when the time is up; and
what a hostile caller may send is refused."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

import httpx
import pytest
import sqlalchemy as sa
from httpx_sse import ServerSentEvent, connect_sse

from control_api.jobs import RECHECK_S
from core.events.log import LAST
from core.platform.db import transaction
from core.platform.settings import Settings
from tests.integration.conftest import Farm, make_key
from tests.services import wait_for

#: The API process's LISTEN connection (control_api/fanout.py).
LISTENERS = (
    "SELECT pid FROM pg_stat_activity "
    "WHERE application_name = 'jobyard-events' AND datname = current_database()"
)
#: How long a read may block before the test fails instead of hanging (keep-alives come less often).
READ_TIMEOUT_S = 10.0


class Tenant:
    def __init__(self, base: str, settings: Settings, name: str) -> None:
        self.name = name
        secret = make_key(settings, "jobs:write", "jobs:read", name=f"{name} backend", tenant=name)
        self.client = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=READ_TIMEOUT_S
        )

    def run(self, count: int, seconds: float = 0.0) -> list[str]:
        """Enqueue ``count`` jobs that succeed after ``seconds``; their ids."""
        jobs = [{"type": "test_sleep", "payload": {"seconds": seconds}} for _ in range(count)]
        r = self.client.post("/v1/jobs/batch", json={"jobs": jobs})
        assert r.status_code == 201, r.text
        return [j["id"] for j in r.json()["items"]]

    @contextmanager
    def stream(self, **params: str) -> Iterator[Iterator[ServerSentEvent]]:
        headers = {"Last-Event-ID": params.pop("last_id")} if "last_id" in params else {}
        with connect_sse(self.client, "GET", "/v1/events", params=params, headers=headers) as source:
            assert source.response.status_code == 200, source.response.read()
            events = source.iter_sse()
            first = next(events)
            assert first.event == "ready" and first.id, first
            yield events


MakeTenant = Callable[[str, str], Tenant]


def take(events: Iterator[ServerSentEvent], count: int) -> list[ServerSentEvent]:
    return [next(events) for _ in range(count)]


def job_ids(events: list[ServerSentEvent]) -> list[str]:
    return [json.loads(e.data)["data"]["id"] for e in events]


def start_api(farm: Farm) -> str:
    farm.env["JOBYARD_EVENTS_KEEPALIVE_S"] = "60"
    farm.env["JOBYARD_EVENTS_STREAMS_PER_KEY"] = "3"
    return farm.api()[1]


@pytest.fixture
def base(farm: Farm) -> str:
    """An API process and a worker."""
    farm.worker(threads=4)
    return start_api(farm)


@pytest.fixture
def tenant(settings: Settings) -> Iterator[MakeTenant]:
    """Makes a tenant's client (with a key of its own) on an API; closed after the test."""
    made: list[Tenant] = []

    def make(base: str, name: str) -> Tenant:
        made.append(Tenant(base, settings, name))
        return made[-1]

    yield make
    for t in made:
        t.client.close()


def test_a_stream_shows_its_own_tenants_jobs_and_resumes_without_a_gap(base: str, tenant: MakeTenant) -> None:
    a, b = tenant(base, "shop-a"), tenant(base, "shop-b")
    with a.stream(types="job.succeeded") as a_events, b.stream(types="job.succeeded") as b_events:
        first_b = b.run(5)
        first_a = a.run(5)
        seen = take(a_events, 5)
        assert {e.event for e in seen} == {"job.succeeded"}
        assert sorted(job_ids(seen)) == sorted(first_a)
        body = json.loads(seen[0].data)
        assert body["type"] == "job.succeeded" and body["data"]["tenant"] == "shop-a" and body["timestamp"]
        assert sorted(job_ids(take(b_events, 5))) == sorted(first_b)
        last_id = seen[-1].id

        # While shop-a is away, its jobs (and shop-b's, which shop-b's stream keeps recording) finish.
        missed = a.run(6)
        b.run(6)
        for job_id in missed:
            assert a.client.get(f"/v1/jobs/{job_id}", params={"wait": 15}).json()["status"] == "succeeded"

    with a.stream(types="job.succeeded", last_id=last_id) as a_events:
        replayed = take(a_events, 6)
        live = a.run(3)
        arrived = take(a_events, 3)
        sentinel = a.run(1)
        (last,) = take(a_events, 1)
    assert sorted(job_ids(replayed)) == sorted(missed)
    assert sorted(job_ids(arrived)) == sorted(live)
    assert job_ids([last]) == sentinel  # nothing came twice before it
    everything = seen + replayed + arrived + [last]
    assert len({e.id for e in everything}) == len(everything) == 15


def _answered_after_the_end(a: Tenant, job_id: str) -> float:
    """Seconds between the job's end and the answer to a wait for it."""
    job = a.client.get(f"/v1/jobs/{job_id}", params={"wait": 30}).json()
    assert job["status"] == "succeeded", job
    return time.time() - datetime.fromisoformat(job["finished_at"]).timestamp()


def _listener_pids(settings: Settings) -> list[int]:
    with transaction(settings) as conn:
        return list(conn.execute(sa.text(LISTENERS)).scalars())


def test_a_wait_answers_when_the_job_is_final_or_the_time_is_up(
    base: str, settings: Settings, tenant: MakeTenant
) -> None:
    a, b = tenant(base, "shop-a"), tenant(base, "shop-b")
    # The job's event wakes the wait: well before its next read of the job (every RECHECK_S).
    (job_id,) = a.run(1, seconds=RECHECK_S + 0.2)
    assert _answered_after_the_end(a, job_id) < RECHECK_S / 2

    # The process's LISTEN connection dies: it comes back, and waits are woken again.
    (pid,) = wait_for(lambda: _listener_pids(settings), what="the events listener")
    with transaction(settings) as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    wait_for(lambda: _listener_pids(settings) not in ([], [pid]), what="the listener back")
    (job_id,) = a.run(1, seconds=RECHECK_S + 0.2)
    assert _answered_after_the_end(a, job_id) < RECHECK_S / 2

    r = a.client.post(
        "/v1/jobs", json={"type": "test_sleep", "payload": {"seconds": 0}, "delay_seconds": 3600}
    )
    later = r.json()["id"]
    started = time.monotonic()
    job = a.client.get(f"/v1/jobs/{later}", params={"wait": 1.5}).json()
    assert job["status"] == "scheduled" and 1.5 <= time.monotonic() - started < 6

    # Another tenant's job is not there to wait for.
    started = time.monotonic()
    r = b.client.get(f"/v1/jobs/{later}", params={"wait": 30})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "job_not_found")
    assert time.monotonic() - started < 5


def test_hostile_requests_are_refused(farm: Farm, settings: Settings, tenant: MakeTenant) -> None:
    base = start_api(farm)  # no worker: the job stays queued
    a = tenant(base, "shop-a")
    (job_id,) = a.run(1)
    for wait in ("-1", "1e9", "nan", "inf", "soon"):
        r = a.client.get(f"/v1/jobs/{job_id}", params={"wait": wait})
        assert r.status_code == 400 and "error" in r.json(), (wait, r.text)
    for last_id in ("abc", "1-2-3", "-5", "99999999999999999999-1"):
        r = a.client.get("/v1/events", headers={"Last-Event-ID": last_id})
        assert (r.status_code, r.json()["error"]["code"]) == (400, "bad_last_event_id"), (last_id, r.text)
    r = a.client.get("/v1/events", params={"types": "job.succeeded,job.exploded"})
    assert r.status_code == 422 and "job.exploded" in r.text
    r = a.client.get("/v1/events", params={"tenant": "shop-b"})
    assert r.status_code == 403

    # A cursor whose events are gone (never were, or older than the window) is told to reset.
    an_hour_and_more_ago = int(time.time()) - settings.events_window_s - 60
    for stale in ("1-1", f"1-{LAST - int(an_hour_and_more_ago)}"):
        with a.stream(last_id=stale) as events:
            assert next(events).event == "reset"

    # A key holds at most JOBYARD_EVENTS_STREAMS_PER_KEY streams open; closing one frees its place.
    c = tenant(base, "shop-c")
    with c.stream(), c.stream(), c.stream():
        r = c.client.get("/v1/events")
        assert (r.status_code, r.json()["error"]["code"]) == (429, "too_many_streams")

    def opens() -> bool:
        with c.client.stream("GET", "/v1/events") as r:
            return r.status_code == 200

    wait_for(opens, timeout=10, what="a closed stream's place to be free")
