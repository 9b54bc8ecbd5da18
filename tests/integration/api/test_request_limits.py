"""Bad input gets a clear 4xx in the one error shape, never a 500; and every answer carries the
security headers."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar, Response, get
from litestar.enums import MediaType
from litestar.testing import TestClient

from control_api.app import create_app
from control_api.headers import STRICT_CSP, add_security_headers
from core.platform.settings import Settings


def _job(**payload: Any) -> dict[str, Any]:
    return {"type": "unread_count", "payload": {"chat_id": "c1", "user_id": "u1", **payload}}


def _error(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == code, error
    return error


def test_body_size_batch_size_and_payload_size_have_limits(settings: Settings, admin_key: str) -> None:
    small = settings.replace(max_body_bytes=64 * 1024)
    with TestClient(create_app(small, configure_logs=False)) as api:
        api.headers["Authorization"] = f"Bearer {admin_key}"
        big = _job(chat_id="c" * 100) | {"business_key": "k"}
        too_large = api.post("/v1/jobs/batch", json={"jobs": [big] * 1000})
        _error(too_large, 413, "body_too_large")

    with TestClient(create_app(settings, configure_logs=False)) as api:
        api.headers["Authorization"] = f"Bearer {admin_key}"
        error = _error(api.post("/v1/jobs/batch", json={"jobs": [_job()] * 1001}), 422, "validation_error")
        assert "1000" in error["details"][0]["message"]
        assert api.post("/v1/jobs/batch", json={"jobs": [_job()] * 1000}).status_code == 201
        # Each type bounds its payload: a whatsapp text is at most 4096 characters, an ai_reply
        # message 32,000, and a payload as a whole its type's max_payload_bytes.
        long_text = {"type": "whatsapp_message", "payload": {"to": "+14155550100", "text": "x" * 4097}}
        error = _error(api.post("/v1/jobs", json=long_text), 422, "validation_error")
        assert error["details"][0]["field"] == "payload.text"
        components = [{"type": "body", "parameters": [{"type": "text", "text": "y" * 1000}] * 70}]
        heavy = {
            "type": "whatsapp_message",
            "payload": {
                "to": "+14155550100",
                "template": {"name": "t", "language": "en", "components": components},
            },
        }
        error = _error(api.post("/v1/jobs", json=heavy), 422, "validation_error")
        assert "at most 65536" in error["details"][0]["message"]
        error = _error(api.post("/v1/jobs", json=_job(chat_id="c" * 201)), 422, "validation_error")
        assert error["details"][0]["field"] == "payload.chat_id"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"[" * 100_000 + b"]" * 100_000, 400, "too_deeply_nested"),  # msgspec: RecursionError
        (
            b'{"type": "unread_count", "payload": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}",
            400,
            "too_deeply_nested",
        ),
        (
            b'{"type": "unread_count", "payload": {"chat_id": "c1", "user_id": "u1"}, "urgency": 9}',
            422,
            "validation_error",
        ),
        (
            b'{"type": "unread_count", "payload": {"chat_id": "c1", "user_id": "u1"}, "priority": 10}',
            422,
            "validation_error",
        ),
        (
            b'{"type": "unread_count", "payload": {"chat_id": "c1", "user_id": "u1", "extra": 1}}',
            422,
            "validation_error",
        ),
        (b'{"type": "unread_count", "payload": {"chat_id": "c1"', 400, "malformed_json"),
        (b"\xff\xfe not utf-8", 400, "malformed_json"),
        (b'"just a string"', 422, "validation_error"),
        (b"", 400, "malformed_json"),
        (
            b'{"type": "unread_count", "payload": {"chat_id": "\\ud800", "user_id": "u1"}}',
            400,
            "malformed_json",
        ),
        (b'{"type": "nope", "payload": []}', 422, "validation_error"),
        (
            b'{"type": "unread_count", "payload": {"chat_id": "c1", "user_id": "u1", "by": 1e400}}',
            400,
            "malformed_json",
        ),
    ],
)
def test_bad_bodies_get_a_clear_error_never_a_500(
    api: TestClient[Any], body: bytes, status: int, code: str
) -> None:
    r = api.post("/v1/jobs", content=body, headers={"content-type": "application/json"})
    _error(r, status, code)


def test_values_postgres_cannot_store_are_a_400(api: TestClient[Any]) -> None:
    """Found by the schemathesis run: a NUL character in a string (text or JSONB) was a 500."""
    _error(api.post("/v1/jobs/cancel", json={"business_key": "a\u0000b"}), 400, "unstorable_value")
    _error(api.post("/v1/jobs", json=_job(chat_id="c\u0000")), 400, "unstorable_value")
    _error(api.get("/v1/jobs", params={"business_key": "x\x00"}), 400, "unstorable_value")


def test_deep_nesting_within_the_limit_is_accepted(api: TestClient[Any]) -> None:
    nested: Any = 1
    for _ in range(20):
        nested = {"a": nested}
    body = {
        "type": "whatsapp_message",
        "payload": {
            "to": "+14155550100",
            "template": {"name": "t", "language": "en", "components": [nested]},
        },
    }
    assert api.post("/v1/jobs", json=body).status_code == 201
    # The public webhook is held to the same depth before its signature is even checked.
    r = api.post(
        "/webhooks/whatsapp", content=b"[" * 5000 + b"]" * 5000, headers={"content-type": "application/json"}
    )
    assert r.status_code in (400, 503) and r.status_code != 500


def test_every_answer_carries_the_security_headers(api: TestClient[Any]) -> None:
    for r in (
        api.get("/healthz"),
        api.get("/v1/jobs"),
        api.get("/v1/jobs", headers={"Authorization": "Bearer nope"}),
    ):
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert r.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["Cache-Control"] == "no-store"
    # HTML gets the strict policy: no inline script, no plugins, no framing, forms post home only.
    # The docs viewers are off by default (JOBYARD_API_DOCS_UI): /schema/redoc is an HTML 404.
    html = api.get("/schema/redoc")
    assert html.status_code == 404 and html.headers["content-type"].startswith("text/html")
    assert html.headers["Content-Security-Policy"] == STRICT_CSP
    assert "default-src 'self'; script-src 'self'" in STRICT_CSP and "'unsafe-inline'" not in STRICT_CSP


def test_html_pages_get_the_strict_content_security_policy() -> None:
    """The dashboard's pages will be HTML from this app; any HTML answer gets the strict policy, and a
    looser one a handler sets is replaced."""

    @get("/page", media_type=MediaType.HTML, sync_to_thread=False)
    def page() -> Response[str]:
        return Response("<p>hi</p>", headers={"Content-Security-Policy": "script-src *"})

    with TestClient(Litestar([page], before_send=[add_security_headers])) as client:
        r = client.get("/page")
    assert r.headers["Content-Security-Policy"] == STRICT_CSP
    assert STRICT_CSP == (
        "default-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    )
    assert r.headers["X-Content-Type-Options"] == "nosniff"
