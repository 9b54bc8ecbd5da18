"""A request the middleware refuses (a key that is not one, a key over its rate) is answered like any
other: with its X-Request-ID, an access line with the status the client got, and the HTTP metrics
counting that status. On the short path of `POST /v1/jobs` and on the full stack alike."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from litestar.testing import TestClient
from prometheus_client import REGISTRY

from core.platform.settings import Settings
from tests.integration.conftest import make_key

JOB = {"type": "unread_count", "payload": {"chat_id": "c1", "user_id": "u"}}


@pytest.fixture(params=["short path", "full stack"])
def client(request: pytest.FixtureRequest, settings: Settings) -> Iterator[TestClient[Any]]:
    """The app with one request a second for each key (a burst of one), with and without the short
    path of `POST /v1/jobs`."""
    from control_api.app import create_app

    limited = dataclasses.replace(
        settings, rate_limit_per_s=1.0, rate_limit_burst=1, api_lean_enqueue=request.param == "short path"
    )
    with TestClient(create_app(limited, configure_logs=False)) as c:
        yield c


def _count(method: str, path: str, status: int) -> float:
    labels = {"method": method, "path": path, "status_code": str(status), "app_name": "jobyard"}
    return REGISTRY.get_sample_value("jobyard_http_requests_total", labels) or 0.0


def _answer(
    client: TestClient[Any], method: str, path: str, key: str, request_id: str
) -> tuple[Any, dict[str, Any]]:
    """The answer and the request's one access line."""
    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": request_id}
    with structlog.testing.capture_logs() as logs:
        r = client.request(method, path, json=JOB if method == "POST" else None, headers=headers)
    (line,) = [entry for entry in logs if entry["event"] == "request"]
    return r, line


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/jobs"), ("GET", "/v1/jobs")])
def test_a_key_that_is_not_one_is_answered_401_and_logged_and_counted_as_401(
    client: TestClient[Any], method: str, path: str
) -> None:
    before = _count(method, path, 401), _count(method, path, 500)
    r, line = _answer(client, method, path, "jy_" + "x" * 40, "refused-401")
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "unauthorized"
    assert r.headers["x-request-id"] == "refused-401"
    assert (line["status"], line["method"], line["path"]) == (401, method, path)
    assert (_count(method, path, 401), _count(method, path, 500)) == (before[0] + 1, before[1])


def test_a_key_over_its_rate_is_answered_429_and_logged_and_counted_as_429(
    client: TestClient[Any], settings: Settings
) -> None:
    key = make_key(settings, "jobs:write")
    first, _ = _answer(client, "POST", "/v1/jobs", key, "within-rate")
    assert first.status_code == 201, first.text
    before = _count("POST", "/v1/jobs", 429), _count("POST", "/v1/jobs", 500)
    r, line = _answer(client, "POST", "/v1/jobs", key, "over-rate")
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "rate_limited"
    assert "retry-after" in r.headers and r.headers["x-request-id"] == "over-rate"
    assert (line["status"], line["method"], line["path"]) == (429, "POST", "/v1/jobs")
    assert (_count("POST", "/v1/jobs", 429), _count("POST", "/v1/jobs", 500)) == (before[0] + 1, before[1])
