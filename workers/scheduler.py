"""The scheduler process: publishes due jobs, fires recurring schedules, re-publishes jobs whose
message Redis lost, and recovers jobs from dead or hung workers.

Any number of schedulers may run; row locks keep them from publishing the same job twice.
Run it with `jobyard scheduler` (or `python -m workers.scheduler`).
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType

import redis
import sqlalchemy.exc
import structlog

from core.broker import build_broker
from core.crypto import use_data_key
from core.dispatch import publish_due, republish_lost, seconds_until_due
from core.job_types import load_job_modules
from core.logs import configure_logging
from core.recovery import recover_lost_jobs
from core.schedules import fire_due_schedules
from core.settings import Settings, get_settings

log = structlog.get_logger(__name__)

#: After an error (Postgres or Redis down), wait this long before the next try instead of spinning.
ERROR_BACKOFF_S = 2.0


class Scheduler:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker = build_broker(settings)
        self.stopping = threading.Event()
        self._next_sweep = 0.0
        self._next_recovery = 0.0

    def tick(self) -> int:
        """One pass: publish what is due, and now and then look for lost messages. Returns jobs published."""
        published = publish_due(self.settings, self.broker)
        published += fire_due_schedules(self.settings, self.broker)
        now = time.monotonic()
        if now >= self._next_sweep:
            # Checking every republish_after_s / 3 bounds the time a lost job waits to ~1.3x that.
            self._next_sweep = now + max(self.settings.republish_after_s / 3, 0.2)
            published += republish_lost(self.settings, self.broker)
        if now >= self._next_recovery:
            # A fifth of the dead-after time: a dead worker's jobs run again within ~1.2x of it.
            self._next_recovery = now + max(min(self.settings.worker_dead_after_s / 5, 5.0), 0.2)
            published += recover_lost_jobs(self.settings, self.broker)
        return published

    def run(self) -> None:
        log.info("scheduler_started", interval_s=self.settings.scheduler_interval_s)
        while not self.stopping.is_set():
            try:
                published = self.tick()
            except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, redis.RedisError) as exc:
                log.error("scheduler_tick_failed", error=str(exc))
                self.stopping.wait(ERROR_BACKOFF_S)
                continue
            if published:
                log.info("published", jobs=published)
            if published < self.settings.scheduler_batch:
                # A full batch means more may be due: go again at once. Otherwise sleep until the
                # next job comes due, but no longer than the interval (new jobs and schedules).
                self.stopping.wait(self._pause())
        log.info("scheduler_stopped")

    def _pause(self) -> float:
        try:
            until_due = seconds_until_due(self.settings)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError):
            return self.settings.scheduler_interval_s
        if until_due is None:
            return self.settings.scheduler_interval_s
        return min(until_due, self.settings.scheduler_interval_s)

    def stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        self.stopping.set()


def main() -> None:
    settings = get_settings()
    configure_logging(settings, process="scheduler")
    use_data_key(settings)  # schedules' payloads hold sealed numbers
    load_job_modules(settings)
    scheduler = Scheduler(settings)
    signal.signal(signal.SIGTERM, scheduler.stop)
    signal.signal(signal.SIGINT, scheduler.stop)
    scheduler.run()


if __name__ == "__main__":
    main()
