"""The dead-letter queue (API.md "Dead letters"): list, redrive, discard and the audit log, against
real Postgres and Redis, with real worker, scheduler, API and `jobyard dlq` processes."""

from __future__ import annotations

import getpass
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from core.engine.deadletters import merge_patch
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import job_attempts, jobs
from tests.integration.conftest import Farm, JobWaiter, make_key, waiting
from tests.services import settings_env, wait_for

JOBYARD = str(Path(sys.executable).parent / "jobyard")
DIES_AT_ONCE = {"fail_times": 99, "error": "permanent"}


def insert_dead(
    settings: Settings,
    n: int = 1,
    *,
    type: str = "test_flaky",
    payload: dict[str, Any] | None = None,
    code: str = "test_permanent",
    message: str = "the test asked for a permanent failure",
    died: datetime | None = None,
    tenant: str = "default",
) -> list[str]:
    """Set-up: dead jobs written straight into Postgres (with one failed attempt each), newest last."""
    now = datetime.now(UTC)
    died = died or now
    error = {"code": code, "message": message, "retryable": False, "traceback": "Traceback ..."}
    rows = []
    for i in range(n):
        created = now - timedelta(hours=1) + timedelta(microseconds=i)
        rows.append(
            {
                "id": uuid.uuid4(),
                "type": type,
                "queue": type,
                "status": "dead",
                "payload": payload if payload is not None else DIES_AT_ONCE,
                "attempts": 1,
                "max_retries": 2,
                "error": error,
                "run_at": created,
                "created_at": created,
                "updated_at": died,
                "started_at": died,
                "finished_at": died,
                "tenant": tenant,
            }
        )
    with transaction(settings) as conn:
        conn.execute(sa.insert(jobs), rows)
        conn.execute(
            sa.insert(job_attempts),
            [
                {
                    "job_id": r["id"],
                    "number": 1,
                    "worker": "test",
                    "started_at": died,
                    "finished_at": died,
                    "outcome": "failed",
                    "error": error,
                }
                for r in rows
            ],
        )
    return [str(r["id"]) for r in rows]


def job_status(settings: Settings) -> dict[str, int]:
    with transaction(settings) as conn:
        rows = conn.execute(sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status)).all()
    return {status: count for status, count in rows}


def _make_dead(api: TestClient[Any], wait_job: JobWaiter, payload: dict[str, Any], **extra: Any) -> str:
    """A job that really ran and died (needs a worker, and a scheduler for retries)."""
    r = api.post("/v1/jobs", json={"type": "test_flaky", "payload": payload, **extra})
    assert r.status_code == 201, r.text
    job_id: str = r.json()["id"]
    wait_job(job_id, "dead")
    return job_id


def _attempts(api: TestClient[Any], job_id: str) -> list[dict[str, Any]]:
    return api.get(f"/v1/jobs/{job_id}/attempts").json()["items"]  # type: ignore[no-any-return]


def _ids(response: httpx.Response) -> list[str]:
    return [item["id"] for item in response.json()["items"]]


def _audit(api: TestClient[Any]) -> list[dict[str, Any]]:
    r = api.get("/v1/audit")
    assert r.status_code == 200, r.text
    return r.json()["items"]  # type: ignore[no-any-return]


def test_merge_patch_follows_rfc_7386() -> None:
    # The examples of RFC 7386, section 3 and appendix A.
    target = {"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"}, "tags": ["a", "b"]}
    patch = {
        "title": "Hello!",
        "phoneNumber": "+01-123-456-7890",
        "author": {"familyName": None},
        "tags": ["c"],
    }
    assert merge_patch(target, patch) == {
        "title": "Hello!",
        "author": {"givenName": "John"},
        "tags": ["c"],
        "phoneNumber": "+01-123-456-7890",
    }
    assert target["author"] == {"givenName": "John", "familyName": "Doe"}  # the target is left alone
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": "b", "b": "c"}, {"a": None}) == {"b": "c"}
    assert merge_patch({"a": ["b"]}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "c"}, {"a": ["b"]}) == {"a": ["b"]}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch(["a", "b"], ["c", "d"]) == ["c", "d"]
    assert merge_patch({"a": "b"}, ["c"]) == ["c"]
    assert merge_patch({"a": "foo"}, None) is None
    assert merge_patch({"a": "foo"}, "bar") == "bar"
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch([1, 2], {"a": "b", "c": None}) == {"a": "b"}
    assert merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}


def test_list_filters_searches_and_pages(api: TestClient[Any], settings: Settings) -> None:
    now = datetime.now(UTC)
    (card,) = insert_dead(settings, message="card declined for order 100%", died=now - timedelta(days=3))
    (slow,) = insert_dead(
        settings, code="provider_timeout", message="took too long", died=now - timedelta(hours=1)
    )
    (sleepy,) = insert_dead(
        settings,
        type="test_sleep",
        payload={"seconds": 1.5, "blocking": False},
        code="time_limit_exceeded",
        message="the attempt ran past its time limit",
    )
    # A job that is not dead never shows, whatever it contains.
    api.post("/v1/jobs", json={"type": "test_flaky", "payload": {"fail_times": 100}})

    def listed(**params: Any) -> list[str]:
        r = api.get("/v1/dead-letters", params=params)
        assert r.status_code == 200, r.text
        return _ids(r)

    everything = api.get("/v1/dead-letters").json()
    assert [j["id"] for j in everything["items"]] == [sleepy, slow, card]  # newest first
    assert everything["next_cursor"] is None
    first = everything["items"][2]
    assert first["status"] == "dead"
    assert first["error"] == {
        "code": "test_permanent",
        "message": "card declined for order 100%",
        "retryable": False,
    }

    assert listed(type="test_flaky") == [slow, card]
    assert listed(error_code="provider_timeout") == [slow]
    assert listed(q="CARD declined") == [card]  # the error message, any case
    assert listed(q="seconds") == [sleepy]  # the payload text
    assert listed(q="100%") == [card]
    assert listed(q="%") == [card]  # a literal %, not a wildcard
    assert listed(q="_") == [slow, card]  # "fail_times" in their payloads; "_" is no wildcard either
    assert listed(since=(now - timedelta(days=2)).isoformat()) == [sleepy, slow]
    assert listed(until=(now - timedelta(days=2)).isoformat()) == [card]
    assert listed(type="test_flaky", q="long", since=(now - timedelta(days=1)).isoformat()) == [slow]

    page1 = api.get("/v1/dead-letters", params={"limit": 2}).json()
    assert [j["id"] for j in page1["items"]] == [sleepy, slow]
    page2 = api.get("/v1/dead-letters", params={"limit": 2, "cursor": page1["next_cursor"]}).json()
    assert ([j["id"] for j in page2["items"]], page2["next_cursor"]) == ([card], None)

    assert api.get("/v1/dead-letters", params={"cursor": "nonsense"}).status_code == 400
    naive = api.get("/v1/dead-letters", params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422


def test_dead_letters_and_audit_need_the_ops_scope(api: TestClient[Any], settings: Settings) -> None:
    key = make_key(settings, "jobs:read", "jobs:write", name="reader")
    headers = {"Authorization": f"Bearer {key}"}
    body = {"filter": {}, "reason": "try", "dry_run": True}
    for r in (
        api.get("/v1/dead-letters", headers=headers),
        api.post("/v1/dead-letters/redrive", json=body, headers=headers),
        api.post("/v1/dead-letters/discard", json=body, headers=headers),
        api.get("/v1/audit", headers=headers),
    ):
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "forbidden"


def test_selection_and_reason_are_checked(api: TestClient[Any], settings: Settings) -> None:
    (dead,) = insert_dead(settings)
    for body in (
        {"reason": "neither"},
        {"ids": [dead], "filter": {"type": "test_flaky"}, "reason": "both"},
        {"ids": [], "reason": "no ids"},
        {"ids": [dead]},
        {"ids": [dead], "reason": ""},
        {"ids": [dead], "reason": "   "},
        {"ids": [dead], "reason": "x", "colour": "red"},
        {"ids": [dead], "reason": "a patch must be an object", "payload_patch": [1]},
        {"filter": {"kind": "x"}, "reason": "unknown filter field"},
        {"filter": {"since": "2026-01-01T00:00:00"}, "reason": "a time without a zone"},
    ):
        for action in ("redrive", "discard"):
            r = api.post(f"/v1/dead-letters/{action}", json=body)
            assert r.status_code == 422, (action, body, r.text)
            assert r.json()["error"]["code"] == "validation_error"
    assert job_status(settings) == {"dead": 1}
    assert _audit(api) == []


def test_a_dry_run_counts_and_changes_nothing(
    api: TestClient[Any], settings: Settings, redis_conn: Any
) -> None:
    ids = insert_dead(settings, 7)
    insert_dead(settings, 2, type="test_sleep", payload={"seconds": 1.0})
    for action in ("redrive", "discard"):
        r = api.post(
            f"/v1/dead-letters/{action}",
            json={"filter": {"type": "test_flaky"}, "reason": "just looking", "dry_run": True},
        )
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["matched"] == 7
        assert out["redriven" if action == "redrive" else "discarded"] == 0
        assert out["audit_id"] is None
        assert [j["id"] for j in out["preview"]] == ids[::-1][:5]
        assert {j["status"] for j in out["preview"]} == {"dead"}

    by_ids = api.post(
        "/v1/dead-letters/redrive",
        json={
            "ids": [ids[0], str(uuid.uuid4())],
            "reason": "x",
            "dry_run": True,
            "payload_patch": {"fail_times": 0},
        },
    ).json()
    assert by_ids["matched"] == 1  # an unknown id matches nothing

    assert job_status(settings) == {"dead": 9}
    with transaction(settings) as conn:
        assert conn.execute(sa.select(sa.func.count()).where(jobs.c.payload == DIES_AT_ONCE)).scalar() == 7
    assert waiting(redis_conn, settings, "test_flaky") == 0
    assert _audit(api) == []


def test_redrive_by_ids_runs_the_jobs_again_keeping_their_history(
    api: TestClient[Any], farm: Farm, wait_job: JobWaiter
) -> None:
    farm.worker()
    once = {"fail_times": 1, "error": "permanent"}
    chosen = [_make_dead(api, wait_job, once) for _ in range(2)]
    left = _make_dead(api, wait_job, once)

    r = api.post("/v1/dead-letters/redrive", json={"ids": chosen, "reason": "the card processor is back"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["matched"], out["redriven"]) == (2, 2)
    assert sorted(j["id"] for j in out["preview"]) == sorted(chosen)
    assert {j["status"] for j in out["preview"]} == {"queued"}
    assert all(j["error"] is None and j["finished_at"] is None for j in out["preview"])

    for job_id in chosen:
        done = wait_job(job_id)
        assert done["attempts"] == 2 and done["result"] == {"attempt": 2}
        attempts = _attempts(api, job_id)
        assert [(a["number"], a["outcome"]) for a in attempts] == [(1, "failed"), (2, "succeeded")]
        assert attempts[0]["error"]["code"] == "test_permanent"  # the first attempt is untouched
    assert api.get(f"/v1/jobs/{left}").json()["status"] == "dead"
    assert _ids(api.get("/v1/dead-letters")) == [left]

    # Redriving again matches nothing: the jobs are no longer dead.
    again = api.post("/v1/dead-letters/redrive", json={"ids": chosen, "reason": "twice"}).json()
    assert (again["matched"], again["redriven"]) == (0, 0)

    (entry, first) = _audit(api)
    assert entry["counts"] == {"matched": 0, "redriven": 0}
    assert first["id"] == out["audit_id"]
    assert first["actor"] == "admin"
    assert first["action"] == "redrive"
    assert first["selection"] == {"ids": chosen}
    assert first["reason"] == "the card processor is back"
    assert first["counts"] == {"matched": 2, "redriven": 2}
    assert first["payload_patch"] is None
    assert datetime.fromisoformat(first["at"]).tzinfo is not None


def test_a_redrive_grants_a_fresh_retry_budget(api: TestClient[Any], farm: Farm, wait_job: JobWaiter) -> None:
    farm.worker()
    farm.scheduler()
    # max_retries=1: attempts 1 and 2 fail and the job is dead. Without a fresh budget attempt 3
    # would be its last; with one it may fail once more and succeed at attempt 4.
    job_id = _make_dead(api, wait_job, {"fail_times": 3, "error": "retryable"}, max_retries=1)
    assert api.get(f"/v1/jobs/{job_id}").json()["attempts"] == 2

    r = api.post(
        "/v1/dead-letters/redrive",
        json={"filter": {"type": "test_flaky", "error_code": "test_retryable"}, "reason": "fixed"},
    )
    assert (r.json()["matched"], r.json()["redriven"]) == (1, 1)
    done = wait_job(job_id, timeout=30)
    assert done["attempts"] == 4 and done["max_retries"] == 1
    assert [(a["number"], a["outcome"]) for a in _attempts(api, job_id)] == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
        (4, "succeeded"),
    ]
    assert _audit(api)[0]["selection"] == {"filter": {"type": "test_flaky", "error_code": "test_retryable"}}


def test_a_payload_patch_fixes_jobs_and_a_bad_patch_changes_nothing(
    api: TestClient[Any], farm: Farm, wait_job: JobWaiter, settings: Settings
) -> None:
    farm.worker()
    broken = [_make_dead(api, wait_job, DIES_AT_ONCE) for _ in range(2)]
    (sleeper,) = insert_dead(settings, type="test_sleep", payload={"seconds": 1.0, "blocking": False})

    bad = api.post(
        "/v1/dead-letters/redrive",
        json={"filter": {"type": "test_flaky"}, "reason": "fix", "payload_patch": {"fail_times": "lots"}},
    )
    assert bad.status_code == 422, bad.text
    error = bad.json()["error"]
    assert error["code"] == "validation_error"
    assert sorted(d["job_id"] for d in error["details"]) == sorted(broken)
    assert {d["field"] for d in error["details"]} == {"payload.fail_times"}

    # One job of the selection would be broken: the others are not changed either.
    mixed = api.post(
        "/v1/dead-letters/redrive",
        json={"ids": [*broken, sleeper], "reason": "fix", "payload_patch": {"fail_times": 0}},
    )
    assert mixed.status_code == 422, mixed.text
    assert mixed.json()["error"]["details"] == [
        {"job_id": sleeper, "field": "payload.fail_times", "message": "is not a known field"}
    ]
    dry = api.post(
        "/v1/dead-letters/redrive",
        json={
            "ids": [*broken, sleeper],
            "reason": "fix",
            "payload_patch": {"fail_times": 0},
            "dry_run": True,
        },
    )
    assert dry.status_code == 422
    for job_id in broken:
        job = api.get(f"/v1/jobs/{job_id}").json()
        assert (job["status"], job["payload"]) == ("dead", DIES_AT_ONCE)
    assert _audit(api) == []

    # A good patch; null removes a key, and the payload is stored as validated (defaults filled in).
    patch = {"fail_times": 0, "error": None}
    r = api.post(
        "/v1/dead-letters/redrive", json={"ids": broken, "reason": "skip the failure", "payload_patch": patch}
    )
    assert r.status_code == 200, r.text
    assert [j["payload"] for j in r.json()["preview"]] == [{"fail_times": 0, "error": "retryable"}] * 2
    for job_id in broken:
        done = wait_job(job_id)
        assert done["payload"] == {"fail_times": 0, "error": "retryable"}
        assert done["attempts"] == 2
    (entry,) = _audit(api)
    assert entry["payload_patch"] == patch
    assert entry["counts"] == {"matched": 2, "redriven": 2}
    assert api.get(f"/v1/jobs/{sleeper}").json()["status"] == "dead"


def test_discard_cancels_with_the_reason_and_is_audited(api: TestClient[Any], settings: Settings) -> None:
    key = make_key(settings, "ops", name="oncall-alice")
    doomed = insert_dead(settings, 3, code="provider_rejected", message="invalid phone number")
    (kept,) = insert_dead(settings)
    selection = {"filter": {"error_code": "provider_rejected", "q": "phone"}}

    r = api.post(
        "/v1/dead-letters/discard",
        json={**selection, "reason": "numbers were wrong at the source"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["matched"], out["discarded"]) == (3, 3)
    assert [j["id"] for j in out["preview"]] == doomed[::-1]
    for job_id in doomed:
        job = api.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "cancelled"
        assert job["finished_at"] is not None
        assert job["error"] == {
            "code": "discarded",
            "message": "numbers were wrong at the source",
            "retryable": False,
            "last_error": {
                "code": "provider_rejected",
                "message": "invalid phone number",
                "retryable": False,
            },
        }
        assert [a["outcome"] for a in _attempts(api, job_id)] == ["failed"]
    assert _ids(api.get("/v1/dead-letters")) == [kept]

    (entry,) = _audit(api)
    assert entry == {
        "id": out["audit_id"],
        "at": entry["at"],
        "actor": "oncall-alice",
        "action": "discard",
        "selection": selection,
        "reason": "numbers were wrong at the source",
        "counts": {"matched": 3, "discarded": 3},
        "payload_patch": None,
        "tenant": "default",  # an ops key without admin acts within its own tenant
    }


def test_the_audit_log_pages_newest_first(api: TestClient[Any], settings: Settings) -> None:
    ids = insert_dead(settings, 3)
    for n, job_id in enumerate(ids):
        r = api.post("/v1/dead-letters/discard", json={"ids": [job_id], "reason": f"r{n}"})
        assert r.status_code == 200
    page1 = api.get("/v1/audit", params={"limit": 2}).json()
    assert [e["reason"] for e in page1["items"]] == ["r2", "r1"]
    page2 = api.get("/v1/audit", params={"limit": 2, "cursor": page1["next_cursor"]}).json()
    assert ([e["reason"] for e in page2["items"]], page2["next_cursor"]) == (["r0"], None)
    assert api.get("/v1/audit", params={"cursor": "nonsense"}).status_code == 400


@pytest.fixture
def audit_log_locked(settings: Settings) -> Iterator[threading.Event]:
    """Holds the audit table so that a redrive, which writes its audit row last, cannot finish
    until the test sets the returned event."""
    release = threading.Event()
    locked = threading.Event()

    def hold() -> None:
        with transaction(settings) as conn:
            conn.execute(sa.text("LOCK TABLE audit_log IN EXCLUSIVE MODE"))
            locked.set()
            release.wait(120)

    holder = threading.Thread(target=hold)
    holder.start()
    locked.wait(10)
    try:
        yield release
    finally:
        release.set()
        holder.join()


def test_a_redrive_of_2000_jobs_runs_in_batches_while_the_api_answers(
    farm: Farm, settings: Settings, audit_log_locked: threading.Event
) -> None:
    insert_dead(settings, 2000, code="provider_unavailable", message="the provider answered 503")
    insert_dead(settings, 5, code="test_permanent")
    _, base = farm.api()
    headers = {"Authorization": f"Bearer {make_key(settings, 'ops', 'jobs:read', name='ops')}"}
    result: dict[str, Any] = {}

    def redrive() -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            result["response"] = client.post(
                "/v1/dead-letters/redrive",
                json={"filter": {"error_code": "provider_unavailable"}, "reason": "the provider is back"},
            )

    request = threading.Thread(target=redrive)
    request.start()
    # Each batch commits on its own: all 2,000 are queued while the request is still running
    # (it is waiting to write its audit row).
    wait_for(lambda: job_status(settings).get("queued") == 2000, timeout=60, what="2000 jobs queued")
    assert request.is_alive()
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        assert client.get("/healthz").status_code == 200
        listed = client.get("/v1/dead-letters", params={"error_code": "test_permanent"})
        assert (listed.status_code, len(listed.json()["items"])) == (200, 5)
        assert client.get("/v1/jobs", params={"status": "queued", "limit": 1}).status_code == 200
    assert request.is_alive()

    audit_log_locked.set()
    request.join(60)
    response = result["response"]
    assert response.status_code == 200, response.text
    assert (response.json()["matched"], response.json()["redriven"]) == (2000, 2000)
    assert job_status(settings) == {"queued": 2000, "dead": 5}
    # Every job was published under the message id on its row, with a fresh budget and its history.
    assert waiting(farm.redis, settings, "test_flaky") == 2000
    with transaction(settings) as conn:
        queued = conn.execute(
            sa.select(
                jobs.c.message_id, jobs.c.retry_base, jobs.c.attempts, jobs.c.error, jobs.c.finished_at
            ).where(jobs.c.status == "queued")
        ).all()
        assert conn.execute(sa.select(sa.func.count()).select_from(job_attempts)).scalar() == 2005
        # Rows written by one transaction share its id (xmin): four batches of 500.
        batches = conn.execute(sa.text("SELECT count(DISTINCT xmin::text) FROM jobs WHERE status = 'queued'"))
        assert batches.scalar() == 4
    assert all(r.retry_base == r.attempts == 1 and r.error is None and r.finished_at is None for r in queued)
    message_ids = {r.message_id for r in queued}
    assert farm.redis.hlen(f"{settings.redis_namespace}:test_flaky.msgs") == 2000
    assert all(
        farm.redis.hexists(f"{settings.redis_namespace}:test_flaky.msgs", m) for m in list(message_ids)[:50]
    )


def _cli(settings: Settings, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [JOBYARD, "dlq", *args],
        env=settings_env(settings),
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_lists_dry_runs_redrives_and_discards(api: TestClient[Any], settings: Settings) -> None:
    redrivable = insert_dead(settings, 3, code="provider_timeout", message="provider timed out")
    (other,) = insert_dead(settings, code="test_permanent")

    listed = _cli(settings, "list", "--error-code", "provider_timeout")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == redrivable[::-1]
    as_json = _cli(settings, "list", "-q", "TIMED OUT", "--json", "--limit", "2")
    assert as_json.returncode == 0, as_json.stderr
    assert len(as_json.stdout.splitlines()) == 2 and "more: --cursor" in as_json.stderr

    selection = ["--error-code", "provider_timeout"]
    dry = _cli(settings, "redrive", *selection, "--reason", "timeouts fixed", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "3 dead letter(s) match" in dry.stdout and "nothing was changed" in dry.stdout
    declined = _cli(settings, "redrive", *selection, "--reason", "timeouts fixed", input="n\n")
    assert declined.returncode == 1
    assert "3 dead letter(s) match" in declined.stdout and "Redrive 3 dead letter(s)?" in declined.stdout
    assert job_status(settings) == {"dead": 4}
    assert _audit(api) == []

    bad = _cli(
        settings, "redrive", *selection, "--reason", "x", "--payload-patch", '{"fail_times": "x"}', "--yes"
    )
    assert bad.returncode == 1 and "payload.fail_times" in bad.stderr
    assert _cli(settings, "redrive", "--reason", "x", "--yes").returncode == 2  # no selection

    done = _cli(
        settings,
        "redrive",
        *selection,
        "--reason",
        "timeouts fixed",
        "--payload-patch",
        '{"fail_times": 0}',
        "--yes",
    )
    assert done.returncode == 0, done.stderr
    assert "redriven 3 of 3" in done.stdout
    for job_id in redrivable:
        job = api.get(f"/v1/jobs/{job_id}").json()
        assert (job["status"], job["payload"]["fail_times"]) == ("queued", 0)

    discarded = _cli(settings, "discard", "--id", other, "--reason", "not needed", "--yes")
    assert discarded.returncode == 0, discarded.stderr
    assert api.get(f"/v1/jobs/{other}").json()["status"] == "cancelled"

    discard_entry, redrive_entry = _audit(api)
    assert redrive_entry["actor"] == discard_entry["actor"] == f"cli:{getpass.getuser()}"
    assert redrive_entry["selection"] == {"filter": {"error_code": "provider_timeout"}}
    assert redrive_entry["payload_patch"] == {"fail_times": 0}
    assert redrive_entry["counts"] == {"matched": 3, "redriven": 3}
    assert discard_entry["selection"] == {"ids": [other]}
