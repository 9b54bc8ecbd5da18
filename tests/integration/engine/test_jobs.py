"""The /v1/jobs contract of API.md, against real Postgres and Redis (no worker running)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.testing import TestClient

from core.platform.settings import Settings
from tests.integration.conftest import make_key, waiting

UNREAD = {"type": "unread_count", "payload": {"chat_id": "c1", "user_id": "u1"}}


def test_enqueue_returns_the_committed_job_and_publishes_it(
    api: TestClient[Any], redis_conn: Any, settings: Settings
) -> None:
    r = api.post("/v1/jobs", json=UNREAD, headers={"X-Request-ID": "req-123"})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "queued"
    assert job["type"] == "unread_count"
    assert job["payload"] == {"chat_id": "c1", "user_id": "u1", "op": "increment", "by": 1}
    assert job["max_retries"] == 5  # the type's default
    assert job["request_id"] == "req-123"
    assert r.headers["X-Request-ID"] == "req-123"
    assert datetime.fromisoformat(job["created_at"]).tzinfo is not None
    assert waiting(redis_conn, settings, "unread_count") == 1

    got = api.get(f"/v1/jobs/{job['id']}")
    assert got.status_code == 200
    assert got.json()["id"] == job["id"]


def test_every_response_carries_a_request_id(api: TestClient[Any]) -> None:
    r = api.get("/healthz")
    assert len(r.headers["X-Request-ID"]) >= 16
    bad = api.get("/healthz", headers={"X-Request-ID": "no spaces\nor newlines"})
    assert bad.headers["X-Request-ID"] != "no spaces\nor newlines"


def test_idempotency_key_returns_the_first_job_or_conflicts(api: TestClient[Any]) -> None:
    body = {**UNREAD, "idempotency_key": "order-123-review"}
    first = api.post("/v1/jobs", json=body)
    again = api.post("/v1/jobs", json=body)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]

    other = api.post("/v1/jobs", json={**body, "payload": {"chat_id": "c2", "user_id": "u1"}})
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"
    assert other.json()["error"]["details"]["existing_job_id"] == first.json()["id"]


def test_unknown_type_and_bad_payload_are_422_listing_every_field(api: TestClient[Any]) -> None:
    r = api.post("/v1/jobs", json={"type": "no_such_type", "payload": {}})
    assert r.status_code == 422
    assert r.json()["error"]["details"] == [{"field": "type", "message": "unknown job type 'no_such_type'"}]

    r = api.post(
        "/v1/jobs",
        json={"type": "unread_count", "payload": {"chat_id": 5, "op": "explode", "by": 0, "colour": "red"}},
    )
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "validation_error"
    fields = {d["field"] for d in error["details"]}
    assert fields == {"payload.chat_id", "payload.user_id", "payload.op", "payload.by", "payload.colour"}


def test_envelope_errors(api: TestClient[Any]) -> None:
    r = api.post(
        "/v1/jobs", content=b'{"type": "unread_count", ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "malformed_json"

    r = api.post("/v1/jobs", json={"payload": {}})
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "type"

    naive = api.post("/v1/jobs", json={**UNREAD, "run_at": "2030-01-01T00:00:00"})
    assert naive.status_code == 422
    assert naive.json()["error"]["details"][0]["field"] == "run_at"

    both = api.post("/v1/jobs", json={**UNREAD, "run_at": "2030-01-01T00:00:00Z", "delay_seconds": 5})
    assert both.status_code == 422


def test_keys_and_scopes(api: TestClient[Any], settings: Settings) -> None:
    assert api.get("/v1/jobs", headers={"Authorization": ""}).status_code == 401
    r = api.post("/v1/jobs", json=UNREAD, headers={"Authorization": "Bearer jy_not_a_real_key"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"

    reader = make_key(settings, "jobs:read")
    r = api.post("/v1/jobs", json=UNREAD, headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"
    # X-API-Key is accepted too, and a read works with the read scope.
    assert api.get("/v1/jobs", headers={"Authorization": "", "X-API-Key": reader}).status_code == 200

    assert api.get("/healthz", headers={"Authorization": ""}).status_code == 200


def test_scheduled_jobs_wait_in_postgres_not_redis(
    api: TestClient[Any], redis_conn: Any, settings: Settings
) -> None:
    later = (datetime.now(UTC) + timedelta(days=14)).isoformat()
    r = api.post("/v1/jobs", json={**UNREAD, "run_at": later, "business_key": "order-9"})
    assert r.status_code == 201
    assert r.json()["status"] == "scheduled"
    r2 = api.post("/v1/jobs", json={**UNREAD, "delay_seconds": 3600, "business_key": "order-9"})
    assert r2.json()["status"] == "scheduled"
    assert waiting(redis_conn, settings, "unread_count") == 0

    cancelled = api.post("/v1/jobs/cancel", json={"business_key": "order-9"})
    assert cancelled.json() == {"cancelled": 2}
    assert api.get(f"/v1/jobs/{r.json()['id']}").json()["status"] == "cancelled"


def test_cancel_by_id_and_not_cancellable(api: TestClient[Any]) -> None:
    job = api.post("/v1/jobs", json=UNREAD).json()
    r = api.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled"
    again = api.post(f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "not_cancellable"
    missing = api.post("/v1/jobs/00000000-0000-0000-0000-000000000000/cancel")
    assert missing.status_code == 404


def test_batch_is_all_or_nothing(api: TestClient[Any]) -> None:
    good = [{"type": "unread_count", "payload": {"chat_id": f"c{i}", "user_id": "u1"}} for i in range(5)]
    r = api.post("/v1/jobs/batch", json={"jobs": good})
    assert r.status_code == 201
    items = r.json()["items"]
    assert [j["payload"]["chat_id"] for j in items] == [f"c{i}" for i in range(5)]

    bad = [*good, {"type": "unread_count", "payload": {"chat_id": "x"}}, {"type": "nope", "payload": {}}]
    r = api.post("/v1/jobs/batch", json={"jobs": bad})
    assert r.status_code == 422
    assert {d["index"] for d in r.json()["error"]["details"]} == {5, 6}
    assert len(api.get("/v1/jobs", params={"limit": 500}).json()["items"]) == 5

    too_many = api.post("/v1/jobs/batch", json={"jobs": [good[0]] * 1001})
    assert too_many.status_code == 422


def test_list_filters_and_cursor(api: TestClient[Any]) -> None:
    ids = [api.post("/v1/jobs", json={**UNREAD, "business_key": f"k{i % 2}"}).json()["id"] for i in range(7)]
    api.post(f"/v1/jobs/{ids[0]}/cancel")

    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.get("/v1/jobs", params=params).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))  # newest first, each exactly once

    k1 = api.get("/v1/jobs", params={"business_key": "k1"}).json()["items"]
    assert {j["id"] for j in k1} == {ids[i] for i in (1, 3, 5)}
    cancelled = api.get("/v1/jobs", params={"status": "cancelled"}).json()["items"]
    assert [j["id"] for j in cancelled] == [ids[0]]
    assert api.get("/v1/jobs", params={"status": "bogus"}).status_code == 422
    assert api.get("/v1/jobs", params={"cursor": "!!"}).status_code == 400
    assert api.get("/v1/jobs", params={"limit": 501}).status_code == 422
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert api.get("/v1/jobs", params={"created_after": future}).json()["items"] == []


def test_readyz_reports_both_services(api: TestClient[Any]) -> None:
    r = api.get("/readyz", headers={"Authorization": ""})
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "postgres": "ok", "redis": "ok"}


def test_openapi_schema_lists_the_contract(api: TestClient[Any]) -> None:
    schema = api.get("/schema/openapi.json", headers={"Authorization": ""}).json()
    paths = schema["paths"]
    for path in ("/v1/jobs", "/v1/jobs/batch", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/attempts",
                 "/v1/jobs/{job_id}/cancel", "/v1/jobs/cancel", "/v1/unread", "/v1/chats/{chat_id}/read",
                 "/v1/chats/{chat_id}/messages", "/healthz", "/readyz"):  # fmt: skip
        assert path in paths, path
