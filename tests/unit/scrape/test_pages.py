"""The `scrape` job type without a browser (core/scrape/pages.py): payload validation."""

from __future__ import annotations

import pytest

from core.catalog import load_job_types
from core.engine.job_types import JobType, get_job_type, validate_payload
from core.platform.settings import Settings


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
