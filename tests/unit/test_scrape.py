"""The scrape job type without a browser: payload validation, what page errors mean, finding Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.catalog import load_job_types
from core.engine.job_types import JobType, get_job_type, validate_payload
from core.errors import PermanentError, RateLimitedError, RetryableError
from core.platform.settings import Settings
from core.providers.browser import BROWSER_NAMES, find_chromium
from core.providers.page import net_error, status_error


@pytest.fixture(scope="module")
def scrape() -> JobType:
    load_job_types(Settings())
    return get_job_type("scrape")


def test_defaults_are_filled_in(scrape: JobType) -> None:
    payload, errors = validate_payload(scrape, {"url": "https://example.com/a?b=c"})
    assert errors == []
    assert payload == {
        "url": "https://example.com/a?b=c",
        "selectors": None,
        "wait_for": None,
        "timeout_s": 30.0,
        "screenshot": False,
        "max_text_chars": 100_000,
    }


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "example.com",
        "http://",
        "http://a b/",
    ],
)
def test_only_http_and_https_urls_are_taken(scrape: JobType, url: str) -> None:
    _, errors = validate_payload(scrape, {"url": url})
    assert [e.field for e in errors] == ["payload.url"], errors


def test_bad_fields_are_listed(scrape: JobType) -> None:
    _, errors = validate_payload(
        scrape,
        {
            "url": "http://example.com:99999/",
            "timeout_s": 0,
            "max_text_chars": -1,
            "selectors": {"": "h1"},
            "colour": "red",
        },
    )
    assert {e.field for e in errors} == {
        "payload.timeout_s",
        "payload.max_text_chars",
        "payload.selectors",
        "payload.colour",
    }
    _, errors = validate_payload(scrape, {"url": "http://example.com:99999/"})
    assert errors[0].field == "payload" and "port" in errors[0].message


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


def test_chromium_is_found(tmp_path: Path) -> None:
    own = tmp_path / "chrome"
    own.write_text("")
    assert find_chromium(None, str(own)) is None  # Playwright's own browser, when installed
    # Else the first on PATH: the headless shell before the full browser (.ci/run installs both).
    on_path = [found for name in BROWSER_NAMES if (found := shutil.which(name))]
    assert on_path and Path(on_path[0]).name == "chromium-headless-shell"
    assert find_chromium(None, str(tmp_path / "missing")) == on_path[0]
    assert find_chromium("chromium", None) == shutil.which("chromium")
    with pytest.raises(PermanentError, match="JOBYARD_CHROMIUM_PATH"):
        find_chromium(str(tmp_path / "nope"), None)
