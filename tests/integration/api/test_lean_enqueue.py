"""`POST /v1/jobs` answers the same on the short path (control_api/lean_enqueue.py) as on the full
stack (JOBYARD_API_LEAN_ENQUEUE=false): valid, repeated, conflicting, invalid, unauthorized,
forbidden and rate-limited requests, their status, body, headers, access line and HTTP metrics."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog
from litestar.testing import TestClient
from prometheus_client import REGISTRY

from core.platform.db import transaction
from core.platform.settings import Settings
from tests.integration.conftest import make_key

JOB = {"type": "unread_count", "payload": {"chat_id": "c1", "user_id": "u"}}
#: Values that differ from one answer to the next whichever path gives them.
_VARYING_HEADERS = {
    "x-request-id",
    "ratelimit-remaining",
    "x-ratelimit-remaining",
    "ratelimit-reset",
    "x-ratelimit-reset",
}
_VARYING_FIELDS = {
    "id",
    "created_by",
    "created_at",
    "updated_at",
    "run_at",
    "request_id",
    "idempotency_key",
    "business_key",
}


@pytest.fixture
def paths(settings: Settings) -> Iterator[tuple[TestClient[Any], TestClient[Any]]]:
    """The app with the short path, and the app without it."""
    from control_api.app import create_app

    lean_app = create_app(settings, configure_logs=False)
    full_app = create_app(dataclasses.replace(settings, api_lean_enqueue=False), configure_logs=False)
    assert lean_app.lean is not None and full_app.lean is None  # type: ignore[attr-defined]
    with TestClient(lean_app) as lean, TestClient(full_app) as full:
        yield lean, full


def _shape(r: httpx.Response) -> tuple[int, list[tuple[str, str]], Any]:
    """Status, headers (in order; varying values blanked) and body (varying fields blanked)."""
    headers = [(k, "" if k in _VARYING_HEADERS else v) for k, v in r.headers.multi_items()]
    headers = [(k, v) for k, v in headers if k != "content-length"]
    body: Any = r.json() if r.content else None
    if isinstance(body, dict):
        body = {k: ("" if k in _VARYING_FIELDS else v) for k, v in body.items()}
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            # Retry-after seconds in a 429's message and details.
            error["message"] = re.sub(r"\d+\.\d+ s", "N s", error["message"])
            if isinstance(error.get("details"), dict):
                error["details"] = {k: v for k, v in error["details"].items() if k != "retry_after_s"}
    return r.status_code, headers, body


def _both(
    lean: TestClient[Any],
    full: TestClient[Any],
    lean_key: str,
    full_key: str,
    body: Any = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[httpx.Response, httpx.Response]:
    def post(client: TestClient[Any], key: str) -> httpx.Response:
        h = {"Authorization": f"Bearer {key}"} if key else {}
        h.update(headers or {})
        if content is not None:
            return client.post("/v1/jobs", content=content, headers=h)
        return client.post("/v1/jobs", json=body, headers=h)

    a = post(lean, lean_key)
    b = post(full, full_key)
    assert _shape(a) == _shape(b), (a.text, b.text)
    return a, b


def _warm(lean: TestClient[Any], full: TestClient[Any], key: str) -> None:
    """A first request with ``key`` on each app: the key is then cached, as on a busy API."""
    for client in (lean, full):
        client.post("/v1/jobs", json=JOB, headers={"Authorization": f"Bearer {key}"})


def _answered(client: TestClient[Any]) -> int:
    return int(client.app.lean.answered)  # type: ignore[attr-defined]


def test_a_valid_job_is_answered_alike_on_the_short_path(
    paths: tuple[TestClient[Any], ...], settings: Settings
) -> None:
    lean, full = paths
    key = make_key(settings, "jobs:write")
    _warm(lean, full, key)
    before = _answered(lean)
    a, _ = _both(lean, full, key, key, JOB)
    assert a.status_code == 201
    assert _answered(lean) == before + 1  # the short path answered it, not the full stack
    # The caller's request id is echoed and stored on the job on both paths.
    a, b = _both(lean, full, key, key, JOB, headers={"X-Request-ID": "order-42"})
    assert a.headers["x-request-id"] == b.headers["x-request-id"] == "order-42"
    assert a.json()["request_id"] == b.json()["request_id"] == "order-42"
    assert {"ratelimit-limit", "x-content-type-options", "content-security-policy"} <= set(a.headers)
    # Over https, with HSTS.
    auth = {"Authorization": f"Bearer {key}"}
    a = lean.post("https://testserver.local/v1/jobs", json=JOB, headers=auth)
    b = full.post("https://testserver.local/v1/jobs", json=JOB, headers=auth)
    assert _shape(a) == _shape(b) and "strict-transport-security" in a.headers
    assert _answered(lean) == before + 3


def test_repeats_and_conflicts_of_an_idempotency_key(
    paths: tuple[TestClient[Any], ...], settings: Settings
) -> None:
    lean, full = paths
    key = make_key(settings, "jobs:write")
    _warm(lean, full, key)
    before = _answered(lean)
    auth = {"Authorization": f"Bearer {key}"}
    first = lean.post("/v1/jobs", json={**JOB, "idempotency_key": "once"}, headers=auth)
    assert first.status_code == 201
    # A repeat answers the first job, 200, on either path.
    a, b = _both(lean, full, key, key, {**JOB, "idempotency_key": "once"})
    assert a.status_code == 200 and a.json()["id"] == b.json()["id"] == first.json()["id"]
    a, _ = _both(
        lean, full, key, key, {**JOB, "idempotency_key": "once", "payload": {"chat_id": "c2", "user_id": "u"}}
    )
    assert a.status_code == 409
    assert _answered(lean) == before + 3  # the conflict too: it is known only at the commit


@pytest.mark.parametrize(
    ("body", "content", "status"),
    [
        ({"type": "no_such_type", "payload": {}}, None, 422),
        ({"type": "unread_count"}, None, 422),
        ({**JOB, "surprise": 1}, None, 422),
        ({**JOB, "run_at": "2020-01-01T00:00:00"}, None, 422),
        ({**JOB, "run_at": "2020-01-01T00:00:00Z", "delay_seconds": 5}, None, 422),
        ({**JOB, "priority": "5"}, None, 201),
        ({"type": "unread_count", "payload": {"chat_id": 5}}, None, 422),
        ([JOB], None, 422),
        (None, b"", 400),
        (None, b"{not json", 400),
        (None, b"[" * 40 + b"]" * 40, 400),
        (
            {
                "type": "unread_count",
                "payload": {"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
            },
            None,
            400,
        ),
    ],
)
def test_invalid_bodies_are_answered_alike(
    paths: tuple[TestClient[Any], ...], settings: Settings, body: Any, content: bytes | None, status: int
) -> None:
    lean, full = paths
    key = make_key(settings, "jobs:write")
    _warm(lean, full, key)
    a, _ = _both(lean, full, key, key, body, content)
    # A string for a number is the full stack's to take (its conversion is lax): handed to it.
    assert a.status_code == status


def test_refusals_are_answered_alike(paths: tuple[TestClient[Any], ...], settings: Settings) -> None:
    lean, full = paths
    reader = make_key(settings, "jobs:read")
    _warm(lean, full, reader)
    a, _ = _both(lean, full, reader, reader, JOB)
    assert a.status_code == 403
    a, _ = _both(lean, full, "", "", JOB)
    assert a.status_code == 401
    a, _ = _both(lean, full, "jy_" + "x" * 32, "jy_" + "x" * 32, JOB)
    assert a.status_code == 401


def test_a_rate_limited_key_is_answered_alike_and_counted_once(
    paths: tuple[TestClient[Any], ...], settings: Settings
) -> None:
    from core.access.keys import create_key

    lean, full = paths
    with transaction(settings) as conn:
        _, lean_key = create_key(conn, "slow-lean", ["jobs:write"], rate_limit_per_s=0.01)
        _, full_key = create_key(conn, "slow-full", ["jobs:write"], rate_limit_per_s=0.01)
    # Each key's first request is let through (a burst of one); the next is refused.
    first, _ = _both(lean, full, lean_key, full_key, JOB)
    assert first.status_code == 201
    before = _answered(lean)
    second, _ = _both(lean, full, lean_key, full_key, JOB)
    assert second.status_code == 429 and "retry-after" in second.headers
    assert _answered(lean) == before  # handed to the full stack with its verdict
    # A bad body from a key with budget left for one more (a burst of two): the full stack answers,
    # counting the request once (twice would have been a 429).
    with transaction(settings) as conn:
        _, lean_key = create_key(conn, "two-lean", ["jobs:write"], rate_limit_per_s=1.5)
        _, full_key = create_key(conn, "two-full", ["jobs:write"], rate_limit_per_s=1.5)
    _warm(lean, full, "")
    for client, key in ((lean, lean_key), (full, full_key)):
        assert (
            client.post("/v1/jobs", json=JOB, headers={"Authorization": f"Bearer {key}"}).status_code == 201
        )
    a, _ = _both(lean, full, lean_key, full_key, {"type": "no_such_type", "payload": {}})
    assert a.status_code == 422


def test_the_access_line_and_the_metrics_are_the_same(
    paths: tuple[TestClient[Any], ...], settings: Settings
) -> None:
    lean, full = paths
    key = make_key(settings, "jobs:write")
    _warm(lean, full, key)
    labels = {"method": "POST", "path": "/v1/jobs", "status_code": "201", "app_name": "jobyard"}
    counted = REGISTRY.get_sample_value("jobyard_http_requests_total", labels) or 0.0
    lines = []
    for client in (lean, full):
        with structlog.testing.capture_logs() as logs:
            r = client.post("/v1/jobs", json=JOB, headers={"Authorization": f"Bearer {key}"})
        (line,) = [entry for entry in logs if entry["event"] == "request"]
        assert line["job_id"] == r.json()["id"]
        lines.append({k: v for k, v in line.items() if k not in ("job_id", "duration_ms")})
    assert lines[0] == lines[1]
    assert lines[0]["created"] is True and lines[0]["status"] == 201
    assert REGISTRY.get_sample_value("jobyard_http_requests_total", labels) == counted + 2


def test_a_body_over_the_limit_is_answered_alike(settings: Settings) -> None:
    from control_api.app import create_app

    small = dataclasses.replace(settings, max_body_bytes=2048)
    key = make_key(settings, "jobs:write")
    with (
        TestClient(create_app(small, configure_logs=False)) as lean,
        TestClient(
            create_app(dataclasses.replace(small, api_lean_enqueue=False), configure_logs=False)
        ) as full,
    ):
        _warm(lean, full, key)
        a, _ = _both(lean, full, key, key, {**JOB, "payload": {"chat_id": "c" * 4000, "user_id": "u"}})
        assert a.status_code == 413


def test_a_key_whose_cached_entry_expired_is_looked_up_on_the_short_path(settings: Settings) -> None:
    from control_api.app import create_app
    from core.access.keys import revoke_key

    key = make_key(settings, "jobs:write")
    # No caching at all: every request finds the entry expired, and the key known to be live.
    with TestClient(
        create_app(dataclasses.replace(settings, api_key_cache_s=0.0), configure_logs=False)
    ) as lean:
        auth = {"Authorization": f"Bearer {key}"}
        assert lean.post("/v1/jobs", json=JOB, headers=auth).status_code == 201
        before = _answered(lean)
        assert lean.post("/v1/jobs", json=JOB, headers=auth).status_code == 201
        assert _answered(lean) == before + 1
        # A key revoked meanwhile is found gone and refused by the full stack.
        with transaction(settings) as conn:
            assert revoke_key(conn, key[:10]) == 1
        r = lean.post("/v1/jobs", json=JOB, headers=auth)
        assert r.status_code == 401 and _answered(lean) == before + 1
