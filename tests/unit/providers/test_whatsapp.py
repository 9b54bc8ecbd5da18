"""The WhatsApp Cloud API client (core/providers/whatsapp.py): Graph errors mapped onto the error tree."""

from __future__ import annotations

import pytest

from core.errors import PermanentError, RateLimitedError, RetryableError
from core.providers.whatsapp import GraphError, classify


@pytest.mark.parametrize(
    ("status", "code", "kind", "our_code"),
    [
        (429, 130429, RateLimitedError, "rate_limited"),
        (400, 130429, RateLimitedError, "rate_limited"),
        (400, 131056, RateLimitedError, "rate_limited"),
        (400, 4, RateLimitedError, "rate_limited"),
        (400, 80007, RateLimitedError, "rate_limited"),
        (400, 131048, RateLimitedError, "rate_limited"),
        (400, 131026, PermanentError, "message_undeliverable"),
        (400, 131030, PermanentError, "recipient_invalid"),
        (400, 131047, PermanentError, "outside_service_window"),
        (400, 131051, PermanentError, "request_invalid"),
        (400, 100, PermanentError, "request_invalid"),
        (404, 132001, PermanentError, "template_invalid"),
        (401, 190, PermanentError, "provider_auth_failed"),
        (403, 200, PermanentError, "provider_auth_failed"),
        (400, 131031, PermanentError, "account_restricted"),
        (500, 131000, RetryableError, "provider_unavailable"),
        (503, 131016, RetryableError, "provider_unavailable"),
        (500, 999999, RetryableError, "provider_unavailable"),
        (429, 999999, RateLimitedError, "rate_limited"),
        (400, 999999, PermanentError, "provider_rejected"),
    ],
)
def test_graph_errors_map_onto_the_error_tree(status: int, code: int, kind: type, our_code: str) -> None:
    body = {"error": {"message": "(#x) boom", "type": "OAuthException", "code": code, "fbtrace_id": "Abc"}}
    exc = classify(GraphError.from_response(status, body))
    assert type(exc) is kind
    assert exc.code == our_code
    assert f"Graph error {code}" in exc.message and "fbtrace_id Abc" in exc.message


def test_rate_limit_waits_follow_the_code_or_retry_after() -> None:
    pair = classify(GraphError.from_response(400, {"error": {"code": 131056, "message": "pair"}}))
    assert isinstance(pair, RateLimitedError) and pair.retry_after == 6.0
    told = classify(GraphError.from_response(429, {"error": {"code": 130429}}), retry_after="12")
    assert isinstance(told, RateLimitedError) and told.retry_after == 12.0


def test_a_body_that_is_not_a_graph_error_falls_back_to_the_http_status() -> None:
    assert classify(GraphError.from_response(502, "<html>bad gateway</html>")).code == "provider_unavailable"
    assert classify(GraphError.from_response(400, None)).code == "provider_rejected"
