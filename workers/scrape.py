"""The `scrape` actor, and the browser of the worker processes that consume the scrape queue.

Chromium is launched once per process, at boot (``before_worker_boot``), and only in processes that
consume the `scrape` queue: the API, the scheduler and workers of other queues never start it.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from core.engine.broker import redis_client
from core.platform.settings import Settings
from core.providers.browser import BrowserPool
from core.scrape.domain_slots import DomainSlots
from core.scrape.pages import SCRAPE_QUEUE, ScrapePayload, scrape
from workers.handlers import JobContext, consumes, handler

_pool: BrowserPool | None = None
_pool_lock = threading.Lock()


def _browser(settings: Settings) -> BrowserPool:
    """This process's browser; started at boot, or on the first page if boot did not start it."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = BrowserPool(settings)
        return _pool


@functools.cache
def _slots(settings: Settings) -> DomainSlots:
    client = redis_client(settings, socket_timeout=5)
    return DomainSlots(client, settings.redis_namespace, settings.scrape_domain_concurrency)


class ScrapeBrowser(Middleware):
    """Launches Chromium at boot in processes that consume the scrape queue; closes it at shutdown,
    after the running jobs finished."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if consumes(worker, SCRAPE_QUEUE):
            _browser(self.settings).start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if _pool is not None:
            _pool.stop()


@handler("scrape")
def scrape_page(ctx: JobContext, payload: ScrapePayload) -> dict[str, Any]:
    token = f"{ctx.claim.job_id}:{ctx.claim.attempt}"
    load = _browser(ctx.settings).load
    return scrape(ctx.conn, ctx.claim.job_id, token, payload, load, _slots(ctx.settings))
