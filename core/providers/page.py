"""One page load in a fresh browser context, what is read from it, and what its failures mean.

Runs in the browser thread (core/providers/browser.py). Every connection of the context goes through
its SSRF guard (core/providers/guard_proxy.py); a failed load is explained with what the guard saw.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from core.errors import JobFailure, PermanentError, RateLimitedError, RetryableError
from core.providers import guard_proxy
from core.providers.guard_proxy import GuardProxy
from core.providers.retry_after import parse_retry_after

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page, Request, Response

#: Not fetched unless a screenshot needs them: images, fonts, audio and video, most of a page's bytes
#: and none of its text. Told by their URL's extension (in either case, with or without a query).
HEAVY_EXTENSIONS = (
    "png", "jpg", "jpeg", "gif", "webp", "avif", "bmp", "ico", "svg", "tif", "tiff",
    "woff", "woff2", "ttf", "otf", "eot",
    "mp4", "m4v", "webm", "mov", "ogv", "ogg", "mp3", "m4a", "aac", "wav", "flac", "opus",
)  # fmt: skip
#: The same, as patterns of Chromium's blocked URLs (CDP `Network.setBlockedURLs`): Chromium refuses
#: those requests itself (net::ERR_BLOCKED_BY_CLIENT), with no round trip to Playwright or to this
#: process; a navigation of the main frame is not blocked (a page at an image's URL loaded, headless
#: shell 156). A Playwright route that aborted them instead made Chromium stop every request of the
#: page for Playwright's driver: 10 to 14 ms more CPU per page (python -m bench --only scrape).
HEAVY_URL_PATTERNS = tuple(
    pattern
    for extension in HEAVY_EXTENSIONS
    for spelled in (extension, extension.upper())
    for pattern in (f"*.{spelled}", f"*.{spelled}?*")
)
MAX_LINKS = 1000
MAX_MATCHES_PER_SELECTOR = 100
#: Most text read from a page (and hashed): a bound on one job's memory, far above any real page.
MAX_PAGE_TEXT = 10_000_000
#: Refused subresource URLs reported in a result.
MAX_BLOCKED_REPORTED = 50

# One round trip for everything read from the page. CSS only (querySelectorAll), so `selectors`
# mean the same here as in any browser's developer tools.
_EXTRACT = """([selectors, maxLinks, maxMatches, maxText]) => {
  const body = document.body;
  const text = body ? (body.innerText || "") : "";
  const links = [];
  const seen = new Set();
  for (const a of document.querySelectorAll("a[href]")) {
    const href = a.href;
    if ((href.startsWith("http:") || href.startsWith("https:")) && !seen.has(href)) {
      seen.add(href);
      links.push(href);
      if (links.length >= maxLinks) break;
    }
  }
  const fields = {};
  const invalid = [];
  for (const [name, css] of Object.entries(selectors)) {
    try {
      fields[name] = Array.from(document.querySelectorAll(css)).slice(0, maxMatches)
        .map((e) => (e.innerText ?? e.textContent ?? "").trim());
    } catch (e) {
      invalid.push(name);
    }
  }
  return {title: document.title || "", text: text.slice(0, maxText), links, fields, invalid};
}"""


@dataclass(frozen=True, slots=True)
class PageRequest:
    url: str
    selectors: dict[str, str] = field(default_factory=dict)
    wait_for: str | None = None
    timeout_s: float = 30.0
    screenshot: bool = False


@dataclass(frozen=True, slots=True)
class PageResult:
    status_code: int | None
    final_url: str
    title: str
    #: The page's whole visible text (up to MAX_PAGE_TEXT); callers cap what they store.
    text: str
    fields: dict[str, list[str]]
    links: list[str]
    #: sha256 of ``text``, so a change of content can be told without comparing texts.
    content_sha256: str
    screenshot: bytes | None
    #: Requests of the page the SSRF guard refused (the page loaded without them).
    blocked_requests: list[str]


class Visit:
    """One page load in a fresh context, and what its failures mean."""

    def __init__(self, request: PageRequest, guard: GuardProxy) -> None:
        self.request = request
        self.guard = guard
        self.deadline = time.monotonic() + request.timeout_s
        #: The last main-frame document request that failed (a redirect hop, perhaps).
        self.failed_document: str | None = None
        #: The last main-frame document response: (status, url, Retry-After).
        self.document_response: tuple[int, str, str | None] | None = None
        #: Every URL of the page whose request failed, to tell which ones the guard refused (a
        #: refused connection fails its request). Only failures are listened to: each kind of event
        #: a page is listened to for costs a message to Playwright's driver and back per page.
        self.failed: list[str] = []

    def _remaining_ms(self) -> float:
        return max(self.deadline - time.monotonic(), 0.001) * 1000

    def _on_failed(self, request: Request) -> None:
        self.failed.append(request.url)
        try:
            if request.is_navigation_request() and request.frame.parent_frame is None:
                self.failed_document = request.url
        except Exception:  # noqa: S110 - a worker's request has no frame; it is not the document
            pass

    def _on_response(self, response: Response) -> None:
        try:
            if response.request.is_navigation_request() and response.frame.parent_frame is None:
                self.document_response = (response.status, response.url, response.headers.get("retry-after"))
        except Exception:  # noqa: S110 - as above
            pass

    async def run(self, context: BrowserContext) -> PageResult:
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        request = self.request
        page = await context.new_page()
        if not request.screenshot:
            session = await context.new_cdp_session(page)
            await session.send("Network.enable")  # blocked URLs need it, in this session
            await session.send("Network.setBlockedURLs", {"urls": list(HEAVY_URL_PATTERNS)})
        page.set_default_timeout(self._remaining_ms())
        page.on("requestfailed", self._on_failed)
        page.on("response", self._on_response)
        response = await page.goto(request.url, wait_until="load")
        if response is not None:
            error = status_error(response.status, page.url, response.headers.get("retry-after"))
            if error is not None:
                raise error
        if request.wait_for:
            try:
                await page.wait_for_selector(f"css={request.wait_for}", timeout=self._remaining_ms())
            except PlaywrightTimeout:
                raise RetryableError(
                    f"{request.wait_for!r} did not appear within {request.timeout_s:g} s",
                    code="wait_for_timeout",
                ) from None
        return await self._read(page, response.status if response is not None else None)

    async def _read(self, page: Page, status: int | None) -> PageResult:
        request = self.request
        found: dict[str, Any] = await page.evaluate(
            _EXTRACT, [request.selectors, MAX_LINKS, MAX_MATCHES_PER_SELECTOR, MAX_PAGE_TEXT]
        )
        if found["invalid"]:
            raise PermanentError(
                "not valid CSS: " + ", ".join(f"selectors.{n}" for n in found["invalid"]),
                code="invalid_selector",
            )
        shot = await page.screenshot(type="png") if request.screenshot else None
        text = _clean(found["text"])
        return PageResult(
            status_code=status,
            final_url=page.url,
            title=_clean(found["title"]),
            text=text,
            fields={name: [_clean(t) for t in texts] for name, texts in found["fields"].items()},
            links=[_clean(u) for u in found["links"]],
            content_sha256=hashlib.sha256(text.encode()).hexdigest(),
            screenshot=shot,
            blocked_requests=self.blocked()[:MAX_BLOCKED_REPORTED],
        )

    def blocked(self) -> list[str]:
        refused = []
        for url in dict.fromkeys(self.failed):
            failure = self.guard.failure(*_host_port(url))
            if failure is not None and failure.kind == guard_proxy.REFUSED:
                refused.append(url)
        return refused

    def error(self, exc: Exception) -> JobFailure:
        """What a failed page load means for the job."""
        message = first_line(exc)
        url = self.failed_document or self.request.url
        failure = self.guard.failure(*_host_port(url))
        if failure is not None and re.search(r"ERR_(SOCKS|PROXY)", message):
            return _guard_error(url, failure)
        if "Timeout" in type(exc).__name__:
            return RetryableError(
                f"the page did not load within {self.request.timeout_s:g} s: {message}", code="scrape_timeout"
            )
        if "invalid selector" in message.lower() or "is not a valid selector" in message:
            return PermanentError(f"wait_for is not valid CSS: {message}", code="invalid_selector")
        if "ERR_HTTP_RESPONSE_CODE_FAILURE" in message and self.document_response is not None:
            # Chromium fails the navigation of an error status with an empty body: the status decides.
            status, url, retry_after = self.document_response
            return status_error(status, url, retry_after) or net_error(message)
        return net_error(message)


def _guard_error(url: str, failure: guard_proxy.Failure) -> JobFailure:
    if failure.kind == guard_proxy.REFUSED:
        return PermanentError(f"{url} was not loaded: {failure.detail}", code="ssrf_blocked")
    if failure.kind == guard_proxy.UNRESOLVED:
        return RetryableError(failure.detail, code="dns_failure")
    if failure.kind == guard_proxy.CONNECTION_REFUSED:
        return RetryableError(failure.detail, code="connection_refused")
    if failure.kind == guard_proxy.CONNECT_TIMEOUT:
        return RetryableError(failure.detail, code="connect_timeout")
    return RetryableError(failure.detail, code="host_unreachable")


#: Chromium's net errors that retrying cannot fix (the rest are retried: resets, timeouts, ...).
_PERMANENT_NET_ERRORS = {
    "ERR_ABORTED": "not_a_page",  # what a download looks like to a navigation
    "ERR_TOO_MANY_REDIRECTS": "too_many_redirects",
    "ERR_UNSAFE_PORT": "unsafe_port",
    "ERR_INVALID_URL": "invalid_url",
    "ERR_UNKNOWN_URL_SCHEME": "invalid_url",
    "ERR_UNSAFE_REDIRECT": "unsafe_redirect",
    "ERR_INVALID_REDIRECT": "unsafe_redirect",
    "ERR_BLOCKED_BY_CLIENT": "not_a_page",
    "ERR_BLOCKED_BY_RESPONSE": "blocked_by_response",
}
_RETRYABLE_NET_ERRORS = {
    "ERR_NAME_NOT_RESOLVED": "dns_failure",
    "ERR_CONNECTION_REFUSED": "connection_refused",
    "ERR_CONNECTION_TIMED_OUT": "connect_timeout",
    "ERR_TIMED_OUT": "scrape_timeout",
}


def net_error(message: str) -> JobFailure:
    """A navigation error from Chromium's message (``net::ERR_...``)."""
    found = re.search(r"net::(ERR_[A-Z0-9_]+)", message)
    name = found.group(1) if found else ""
    if "Download is starting" in message:
        name = "ERR_ABORTED"
    if name in _PERMANENT_NET_ERRORS:
        return PermanentError(message, code=_PERMANENT_NET_ERRORS[name])
    if name.startswith(("ERR_CERT_", "ERR_SSL_")):
        return PermanentError(message, code="tls_error")
    if "crash" in message.lower():
        return RetryableError(message, code="page_crashed")
    return RetryableError(message, code=_RETRYABLE_NET_ERRORS.get(name, "navigation_failed"))


def status_error(status: int, url: str, retry_after: str | None = None) -> JobFailure | None:
    """The error an HTTP status of the main document means, or None for a page to read."""
    if status < 400:
        return None
    if status == 429:
        return RateLimitedError(
            f"{url} answered 429 Too Many Requests", retry_after=parse_retry_after(retry_after, 30.0)
        )
    if status >= 500:
        return RetryableError(f"{url} answered {status}", code="page_server_error")
    if status == 408:
        return RetryableError(f"{url} answered 408 Request Timeout", code="page_server_error")
    if status in (404, 410):
        return PermanentError(f"{url} answered {status}", code="page_not_found")
    return PermanentError(f"{url} answered {status}", code="page_rejected")


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.hostname or "", port or (443 if parts.scheme == "https" else 80)


def first_line(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return message.strip().splitlines()[0] if message.strip() else type(exc).__name__


def _clean(text: str) -> str:
    """Text Postgres can store: no NUL (text and JSONB refuse it), no lone surrogates from JavaScript."""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
