"""The browser and the per-host slots of a worker process that consumes the scrape queue: a resource
of `scrape`.

Chromium is launched once per process, at boot, and only in processes that consume the `scrape` queue
(workers/resources.py): the API, the scheduler and workers of other queues never start it. It is
closed at shutdown, after the running jobs finished.
"""

from __future__ import annotations

import threading

from core.engine.broker import redis_client
from core.platform.settings import Settings
from core.providers.browser import BrowserPool
from core.scrape.domain_slots import DomainSlots


class ScrapeBrowser:
    """This process's browser pool and its client of the per-host slots, each built on first use."""

    def __init__(self) -> None:
        self._pool: BrowserPool | None = None
        self._slots: DomainSlots | None = None
        self._lock = threading.Lock()

    def start(self, settings: Settings) -> None:
        self.pool(settings).start()

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.stop()

    def pool(self, settings: Settings) -> BrowserPool:
        """This process's browser; started at boot, or on the first page if boot did not start it."""
        with self._lock:
            if self._pool is None:
                self._pool = BrowserPool(settings)
            return self._pool

    def slots(self, settings: Settings) -> DomainSlots:
        """The per-host limit, shared with every scrape worker through Redis."""
        with self._lock:
            if self._slots is None:
                client = redis_client(settings, socket_timeout=5)
                self._slots = DomainSlots(
                    client, settings.redis_namespace, settings.scrape_domain_concurrency
                )
            return self._slots


#: The browser of this process (one per process, whatever the settings).
BROWSER = ScrapeBrowser()
