"""Chromium for `scrape` jobs: one browser per worker process, launched at boot, a fresh context per page.

Dramatiq runs jobs in threads, and Playwright's sync API belongs to the thread that started it. So
the browser lives in a thread of its own that runs an asyncio loop with Playwright's async API; a job
thread submits its page to that loop (``run_coroutine_threadsafe``) and waits at most the page's
timeout plus the time to close its context. Contexts are cheap (tens of milliseconds) where a
browser launch costs half a second or more, and they share nothing: cookies, storage and cache die
with the job.

Every context goes through its own SSRF guard (core/providers/guard_proxy.py). Playwright itself is
imported only in the browser thread, so importing this module (the API does, for the types) starts
nothing and loads nothing heavy.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import re
import shutil
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import structlog

from core.errors import JobyardError, PermanentError, RateLimitedError, RetryableError
from core.netguard import AllowList
from core.providers import guard_proxy
from core.providers.guard_proxy import GuardProxy
from core.providers.http import parse_retry_after
from core.settings import Settings, SettingsError

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page, Playwright, Request, Response, Route

log = structlog.get_logger(__name__)
T = TypeVar("T")

#: Chromium features turned off. Chromium takes the last `--disable-features` it is given, so this
#: repeats Playwright's own list (as of 1.65: HTTP stays HTTP, no requests to Google at start-up, ...)
#: and adds the spare renderer: after each navigation Chromium starts a renderer process for the
#: context's next one, and a context that lives for one page only throws it away (measured with the
#: full browser: a fifth of the CPU a page costs; the headless shell starts fewer of them anyway).
DISABLED_FEATURES = (
    "AvoidUnnecessaryBeforeUnloadCheckSync",
    "DestroyProfileOnBrowserClose",
    "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable",
    "LensOverlay",
    "MediaRouter",
    "PaintHolding",
    "ThirdPartyStoragePartitioning",
    "AvoidCorsURLLoaderRestartOnRedirect",
    "OptimizationHints",
    "NetworkTimeServiceQuerying",
    "AimEnabled",
    "PreconnectToSearch",
    "SpareRendererForSitePerProcess",
)
#: Launch flags: headless server use (no GPU, no background fetches of Google services). No QUIC:
#: UDP would not go through the guard proxy (Chromium uses none to origins behind a proxy anyway),
#: and WebRTC may not send UDP around it either. /dev/shm is small in containers.
LAUNCH_ARGS = (
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--disable-features=" + ",".join(DISABLED_FEATURES),
)
#: Names tried on PATH when neither JOBYARD_CHROMIUM_PATH nor Playwright's own browser is there. The
#: old headless shell first (Debian's `chromium-headless-shell`, what Playwright itself runs headless):
#: built without the full browser's profile services, it makes a context and its page for a third of
#: the CPU (measured 150 ms against 500 ms), and a job makes one of each.
BROWSER_NAMES = (
    "chromium-headless-shell",
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
)
#: Not fetched unless a screenshot needs them: most of a page's bytes and none of its text.
HEAVY_RESOURCES = frozenset({"image", "media", "font"})
VIEWPORT = {"width": 1280, "height": 800}
MAX_LINKS = 1000
MAX_MATCHES_PER_SELECTOR = 100
#: Most text read from a page (and hashed): a bound on one job's memory, far above any real page.
MAX_PAGE_TEXT = 10_000_000
#: Refused subresource URLs reported in a result.
MAX_BLOCKED_REPORTED = 50
#: Longest wait for a context to close, or for a launch, before the browser is presumed wedged.
CLOSE_TIMEOUT_S = 10.0
LAUNCH_TIMEOUT_S = 60.0

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


def find_chromium(configured: str | None, playwright_own: str | None) -> str | None:
    """The browser to launch; None means Playwright's own, which is installed."""
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise PermanentError(
                f"JOBYARD_CHROMIUM_PATH={configured!r} is not an executable", code="browser_unavailable"
            )
        return found
    if playwright_own and os.path.exists(playwright_own):
        return None
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise RetryableError(
        "no Chromium found: install Playwright's (`playwright install chromium`) or a system chromium, "
        "or set JOBYARD_CHROMIUM_PATH",
        code="browser_unavailable",
    )


class BrowserPool:
    """This process's browser and the thread that drives it; ``load`` is safe from any thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        try:
            self.allow = AllowList.parse(settings.scrape_allow_hosts)
        except ValueError as exc:
            raise SettingsError(f"JOBYARD_SCRAPE_ALLOW_HOSTS: {exc}") from None
        #: Browsers launched so far (a relaunch after a crash adds one).
        self.launches = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._launch_lock: asyncio.Lock | None = None
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._relaunch: asyncio.Future[None] | None = None

    # -- from job threads --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the browser thread and launch Chromium. A failed launch is logged; the next page
        tries again."""
        self._ensure_thread()
        try:
            self._call(self._ensure_browser(), LAUNCH_TIMEOUT_S)
        except (JobyardError, concurrent.futures.TimeoutError) as exc:
            log.error("browser_unavailable", error=str(exc))

    def load(self, request: PageRequest) -> PageResult:
        """Load one page in a fresh context; raises an error from core.errors."""
        self._ensure_thread()
        try:
            # The job's log fields (job id, attempt) go along: the page runs in the browser thread.
            job_log = structlog.contextvars.get_contextvars()
            return self._call(self._load(request, job_log), request.timeout_s + CLOSE_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            # The loop did not give the page back in time (it was cancelled above): its context is
            # closed there, and the browser relaunched if that fails.
            raise RetryableError(
                f"the page did not finish within {request.timeout_s:g} s", code="scrape_timeout"
            ) from None

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._call(self._shutdown(), CLOSE_TIMEOUT_S * 2)
        except (Exception, concurrent.futures.TimeoutError) as exc:
            log.warning("browser_stop_failed", error=str(exc))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CLOSE_TIMEOUT_S)
        self._loop = self._thread = None

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="jobyard-browser", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    # -- in the browser thread ---------------------------------------------------------------------

    async def _ensure_browser(self) -> Browser:
        if self._launch_lock is None:
            self._launch_lock = asyncio.Lock()
        async with self._launch_lock:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            from playwright.async_api import Error as PlaywrightError
            from playwright.async_api import async_playwright

            if self._playwright is None:
                self._playwright = await async_playwright().start()
            executable = find_chromium(self.settings.chromium_path, self._playwright.chromium.executable_path)
            try:
                browser = await self._playwright.chromium.launch(
                    executable_path=executable,
                    headless=True,
                    args=list(LAUNCH_ARGS),
                    chromium_sandbox=self.settings.chromium_sandbox,
                    # The worker decides when the browser goes (after its jobs finished), not a signal.
                    handle_sigint=False,
                    handle_sigterm=False,
                    handle_sighup=False,
                    timeout=LAUNCH_TIMEOUT_S * 1000,
                )
            except PlaywrightError as exc:
                # Perhaps Playwright's driver itself died: start it afresh next time.
                await self._stop_playwright()
                raise RetryableError(
                    f"Chromium did not start: {_first_line(exc)}", code="browser_unavailable"
                ) from exc
            self.launches += 1
            self._browser = browser
            browser.on("disconnected", self._on_disconnected)
            log.info("browser_launched", version=browser.version, executable=executable or "playwright's own")
            return browser

    def _on_disconnected(self, browser: Browser) -> None:
        if browser is not self._browser:
            return  # closed on purpose
        # Crashed or killed (OOM): launch the next one now, not in the next job's time.
        log.warning("browser_disconnected", detail="relaunching")
        self._relaunch = asyncio.ensure_future(self._launch_quietly())

    async def _launch_quietly(self) -> None:
        try:
            await self._ensure_browser()
        except JobyardError as exc:
            log.error("browser_unavailable", error=exc.message)

    async def _load(self, request: PageRequest, job_log: dict[str, Any]) -> PageResult:
        from playwright.async_api import Error as PlaywrightError

        structlog.contextvars.bind_contextvars(**job_log)  # this task's own context
        browser = await self._ensure_browser()
        guard = GuardProxy(self.allow, log_fields=job_log)
        proxy = await guard.start()
        context: BrowserContext | None = None
        visit = _Visit(request, guard)
        try:
            # The page's own timeouts fire first (clear messages); this one also bounds the calls that
            # have none, such as reading the text of a page whose script loops.
            async with asyncio.timeout(request.timeout_s + 0.5):
                context = await browser.new_context(
                    proxy={"server": proxy, "bypass": "<-loopback>"},
                    user_agent=self.settings.scrape_user_agent,
                    viewport={"width": VIEWPORT["width"], "height": VIEWPORT["height"]},
                    service_workers="block",  # a service worker could answer from a cache the guard never saw
                    accept_downloads=False,
                )
                return await visit.run(context)
        except TimeoutError:
            raise RetryableError(
                f"the page did not finish within {request.timeout_s:g} s", code="scrape_timeout"
            ) from None
        except PlaywrightError as exc:
            if not browser.is_connected():
                raise RetryableError(
                    f"the browser died during the page: {_first_line(exc)}", code="browser_crashed"
                ) from None
            raise visit.error(exc) from None
        finally:
            if context is not None:
                await self._close_context(context)
            await guard.close()

    async def _close_context(self, context: BrowserContext) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await context.close()
        except Exception as exc:  # a context that cannot close means a wedged browser: replace it
            log.warning("browser_context_not_closed", error=str(exc))
            await self._discard_browser()

    async def _discard_browser(self) -> None:
        browser, self._browser = self._browser, None
        if browser is not None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await browser.close()
            except Exception as exc:
                log.warning("browser_close_failed", error=str(exc))

    async def _stop_playwright(self) -> None:
        playwright, self._playwright = self._playwright, None
        if playwright is not None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await playwright.stop()
            except Exception as exc:
                log.warning("playwright_stop_failed", error=str(exc))

    async def _shutdown(self) -> None:
        await self._discard_browser()
        await self._stop_playwright()


class _Visit:
    """One page load in a fresh context, and what its failures mean."""

    def __init__(self, request: PageRequest, guard: GuardProxy) -> None:
        self.request = request
        self.guard = guard
        self.deadline = time.monotonic() + request.timeout_s
        #: The last main-frame document request that failed (a redirect hop, perhaps).
        self.failed_document: str | None = None
        #: The last main-frame document response: (status, url, Retry-After).
        self.document_response: tuple[int, str, str | None] | None = None
        #: Every URL the page asked for, to tell which ones the guard refused.
        self.requested: list[str] = []

    def _remaining_ms(self) -> float:
        return max(self.deadline - time.monotonic(), 0.001) * 1000

    def _on_request(self, request: Request) -> None:
        self.requested.append(request.url)

    def _on_failed(self, request: Request) -> None:
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
        if not request.screenshot:
            await context.route("**/*", _skip_heavy)
        page = await context.new_page()
        page.set_default_timeout(self._remaining_ms())
        page.on("request", self._on_request)
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
        for url in dict.fromkeys(self.requested):
            failure = self.guard.failure(*_host_port(url))
            if failure is not None and failure.kind == guard_proxy.REFUSED:
                refused.append(url)
        return refused

    def error(self, exc: Exception) -> JobyardError:
        """What a failed page load means for the job."""
        message = _first_line(exc)
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


def _guard_error(url: str, failure: guard_proxy.Failure) -> JobyardError:
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


def net_error(message: str) -> JobyardError:
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


def status_error(status: int, url: str, retry_after: str | None = None) -> JobyardError | None:
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


async def _skip_heavy(route: Route) -> None:
    if route.request.resource_type in HEAVY_RESOURCES:
        await route.abort("blockedbyclient")
    else:
        await route.continue_()


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.hostname or "", port or (443 if parts.scheme == "https" else 80)


def _first_line(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return message.strip().splitlines()[0] if message.strip() else type(exc).__name__


def _clean(text: str) -> str:
    """Text Postgres can store: no NUL (text and JSONB refuse it), no lone surrogates from JavaScript."""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
