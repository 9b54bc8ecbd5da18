"""Chromium for `scrape` jobs: one browser per worker process, launched at boot, a fresh context per page.

Dramatiq runs jobs in threads, and Playwright's sync API belongs to the thread that started it. So
the browser lives in a thread of its own that runs an asyncio loop with Playwright's async API; a job
thread submits its page to that loop (``run_coroutine_threadsafe``) and waits at most the page's
timeout plus the time to close its context (or until the job is cancelled: its page's task is then
cancelled in the browser thread, which closes the context). A context costs a fraction of a browser launch, and
contexts share nothing: cookies, storage and cache die with the job.

Every context goes through its own SSRF guard (core/providers/guard_proxy.py); the page itself is
core/providers/page.py. Playwright is imported only in the browser thread, so importing this module
starts nothing and loads nothing heavy.

Chromium holds no secrets: it is launched with an environment of its own (``browser_env``), a few
variables it needs and a private HOME, so the farm's DATABASE_URL, REDIS_URL, data key and provider
tokens are in none of its processes (the zygote, renderers and GPU/utility processes inherit the
browser's environment, not the worker's). A page that breaks a sandboxed renderer finds nothing in
its memory or environment. Playwright's driver (node), which starts Chromium, is spawned by
Playwright from the worker's own environment and has no option to change that; it runs no page
content, and a renderer that could read another process's environment (no sandbox: the same user)
could read the worker's too. Closing that needs Chromium's sandbox (JOBYARD_CHROMIUM_SANDBOX) or a
scrape worker that holds only the secrets it needs (docs/operations/security.md, "Sandboxing the
scrape workers").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import structlog
from opentelemetry.trace import SpanKind

from core.errors import JobFailure, PermanentError, RetryableError, SettingsError
from core.platform import cancellation
from core.platform.netguard import AllowList
from core.platform.settings import Settings
from core.platform.tracing import tracer
from core.providers.guard_proxy import GuardProxy
from core.providers.page import PageRequest, PageResult, Visit, first_line

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Playwright

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
#: What Chromium gets of the worker's environment, and nothing more: where programs and libraries
#: are, the locale and time zone (dates and text on pages), fontconfig's files, the temporary
#: directory, and the setuid sandbox helper if one is installed. HOME and the XDG directories are
#: set to a private directory of the browser's own (``browser_env``).
PASSED_ENV = (
    "PATH",
    "LD_LIBRARY_PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "FONTCONFIG_FILE",
    "FONTCONFIG_PATH",
    "CHROME_DEVEL_SANDBOX",
)
#: The viewport of every page, and so the size of its screenshot.
VIEWPORT = {"width": 1280, "height": 800}
#: Longest wait for a context to close, or for a launch, before the browser is presumed wedged.
CLOSE_TIMEOUT_S = 10.0
LAUNCH_TIMEOUT_S = 60.0


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


def browser_env(home: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Chromium's whole environment: PASSED_ENV from ``environ`` (the process's), HOME and the XDG
    directories in ``home``. No setting, key or token of the farm's is among them."""
    source = os.environ if environ is None else environ
    env = {name: source[name] for name in PASSED_ENV if source.get(name)}
    env.setdefault("PATH", os.defpath)
    env["HOME"] = str(home)
    for name, sub in (
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_CACHE_HOME", ".cache"),
        ("XDG_DATA_HOME", ".local"),
    ):
        env[name] = str(home / sub)
    return env


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
        #: Chromium's HOME (made at the first launch, removed at stop); private to this process.
        self._home: Path | None = None

    # -- from job threads --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the browser thread and launch Chromium. A failed launch is logged; the next page
        tries again."""
        self._ensure_thread()
        try:
            self._call(self._ensure_browser(), LAUNCH_TIMEOUT_S)
        except (JobFailure, concurrent.futures.TimeoutError) as exc:
            log.error("browser_unavailable", error=str(exc))

    def load(self, request: PageRequest) -> PageResult:
        """Load one page in a fresh context; raises an error from core.errors."""
        self._ensure_thread()
        # A span of the job's trace (core/platform/tracing.py); no-op with tracing off.
        with tracer.start_as_current_span(
            "browser page load",
            kind=SpanKind.CLIENT,
            attributes={"server.address": urlsplit(request.url).hostname or ""},
        ) as span:
            result = self._load_page(request)
            if result.status_code is not None:
                span.set_attribute("http.response.status_code", result.status_code)
            return result

    def _load_page(self, request: PageRequest) -> PageResult:
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
        # The job's cancel cancels the page's task in the browser thread (the only thread that
        # touches Playwright): its context is closed there, as after a timeout.
        with cancellation.aborting(future.cancel):
            try:
                return future.result(timeout)
            except concurrent.futures.TimeoutError:
                future.cancel()
                raise
            except concurrent.futures.CancelledError:
                cancellation.stop_if_cancelled()
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
            if self._home is None:
                self._home = Path(tempfile.mkdtemp(prefix="jobyard-chromium-"))  # mode 0700
            try:
                browser = await self._playwright.chromium.launch(
                    executable_path=executable,
                    headless=True,
                    env=dict[str, str | float | bool](browser_env(self._home)),
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
                    f"Chromium did not start: {first_line(exc)}", code="browser_unavailable"
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
        except JobFailure as exc:
            log.error("browser_unavailable", error=exc.message)

    async def _load(self, request: PageRequest, job_log: dict[str, Any]) -> PageResult:
        from playwright.async_api import Error as PlaywrightError

        structlog.contextvars.bind_contextvars(**job_log)  # this task's own context
        browser = await self._ensure_browser()
        guard = GuardProxy(self.allow, log_fields=job_log)
        proxy = await guard.start()
        context: BrowserContext | None = None
        visit = Visit(request, guard)
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
                    f"the browser died during the page: {first_line(exc)}", code="browser_crashed"
                ) from None
            raise visit.error(exc) from None
        finally:
            if context is not None:
                await self._close_context(context)
            await guard.close()

    async def _close_context(self, context: BrowserContext) -> None:
        if not await _closed(context.close, "browser_context_not_closed"):
            await self._discard_browser()  # a context that cannot close means a wedged browser

    async def _discard_browser(self) -> None:
        browser, self._browser = self._browser, None
        if browser is not None:
            await _closed(browser.close, "browser_close_failed")

    async def _stop_playwright(self) -> None:
        playwright, self._playwright = self._playwright, None
        if playwright is not None:
            await _closed(playwright.stop, "playwright_stop_failed")

    async def _shutdown(self) -> None:
        await self._discard_browser()
        await self._stop_playwright()
        home, self._home = self._home, None
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)


async def _closed(close: Callable[[], Awaitable[None]], event: str) -> bool:
    """Run a close within CLOSE_TIMEOUT_S; False (logged as ``event``) if it failed or hung."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await close()
    except Exception as exc:
        log.warning(event, error=str(exc) or type(exc).__name__)
        return False
    return True
