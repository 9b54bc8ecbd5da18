"""What a page load's failures mean (core/providers/page.py): HTTP statuses and navigation errors."""

from __future__ import annotations

import pytest

from core.errors import PermanentError, RateLimitedError, RetryableError
from core.providers.page import net_error, status_error


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (200, None, None),
        (304, None, None),
        (404, PermanentError, "page_not_found"),
        (410, PermanentError, "page_not_found"),
        (403, PermanentError, "page_rejected"),
        (500, RetryableError, "page_server_error"),
        (503, RetryableError, "page_server_error"),
        (408, RetryableError, "page_server_error"),
        (429, RateLimitedError, "rate_limited"),
    ],
)
def test_what_a_status_means(status: int, kind: type[Exception] | None, code: str | None) -> None:
    error = status_error(status, "http://example.com/", retry_after="7")
    if kind is None:
        assert error is None
        return
    assert type(error) is kind and error.code == code
    if isinstance(error, RateLimitedError):
        assert error.retry_after == 7


@pytest.mark.parametrize(
    ("message", "retryable", "code"),
    [
        ("Page.goto: net::ERR_NAME_NOT_RESOLVED at http://x/", True, "dns_failure"),
        ("Page.goto: net::ERR_CONNECTION_REFUSED at http://x/", True, "connection_refused"),
        ("Page.goto: net::ERR_CONNECTION_RESET at http://x/", True, "navigation_failed"),
        ("Page.goto: net::ERR_CERT_AUTHORITY_INVALID at https://x/", False, "tls_error"),
        ("Page.goto: net::ERR_TOO_MANY_REDIRECTS at http://x/", False, "too_many_redirects"),
        ("Page.goto: net::ERR_ABORTED at http://x/file.zip", False, "not_a_page"),
        ("Page.goto: Download is starting", False, "not_a_page"),
        ("Page.goto: Navigation failed because page crashed!", True, "page_crashed"),
    ],
)
def test_what_a_navigation_error_means(message: str, retryable: bool, code: str) -> None:
    error = net_error(message)
    assert (error.retryable, error.code) == (retryable, code)
