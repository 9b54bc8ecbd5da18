"""The scheduler process: publishes due jobs, fires recurring schedules, re-publishes jobs whose
message Redis lost, recovers jobs from dead or hung workers, fails rows holding times Python
cannot read, and, in a thread of its own, removes history past its retention (core/engine/retention.py),
so that a long pruning never makes a due job late; and sends webhook deliveries from threads of its
own (core/events/delivery.py), so a slow receiver never holds a job worker nor a due job. It beats
in Redis every few seconds (core/engine/scheduler_beats.py), so /metrics and the JobyardSchedulerDown
alert know whether any scheduler runs.

Any number of schedulers may run; row locks keep them from publishing the same job twice, or
pruning the same rows.
Run it with `jobyard scheduler` (or `python -m workers.scheduler`).

Nothing a client sends may stop this loop. Each step isolates its items (core/engine/isolation.py); a step
that still raises is logged with its traceback and backs off on its own, doubling its pause while
it keeps failing, so the other steps (and a job due in two seconds) go on. A catch-all around the
loop does the same for anything else: the process never exits on an error.
"""

from __future__ import annotations

# First, before any module imports structlog or redis-py: they load without optional packages the
# farm does not use (core/platform/lean_imports.py).
import core.platform.lean_imports  # noqa: F401

# isort: split

import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import FrameType

import structlog

from core.access.quotas import SYNC_EVERY_S, sync_limits
from core.catalog import load_job_types
from core.engine.broker import build_broker
from core.engine.dispatch import Prepared, publish_due_backlog, read_ahead, republish_lost, seconds_until_due
from core.engine.isolation import describe, is_transient
from core.engine.jobs import utcnow
from core.engine.out_of_range import fail_out_of_range
from core.engine.pauses import SYNC_EVERY_S as PAUSES_SYNC_EVERY_S
from core.engine.pauses import sync_pauses
from core.engine.recovery import recover_lost_jobs
from core.engine.retention import prune
from core.engine.scheduler_beats import BEAT_S, beat, this_process
from core.engine.schedules import fire_due_schedules
from core.events.delivery import Senders
from core.platform.crypto import use_data_key
from core.platform.heap import settle as settle_heap
from core.platform.logs import configure_logging
from core.platform.settings import Settings, get_settings

log = structlog.get_logger(__name__)

#: After a failure (Postgres or Redis down, or a bug), a step waits this long before its next try,
#: doubling while it keeps failing up to the maximum: no spinning, and back within seconds of the end
#: of an outage (due jobs are late by at most the maximum).
ERROR_BACKOFF_S = 0.5
MAX_ERROR_BACKOFF_S = 8.0

#: The scheduler reads the jobs due at its next wake-up ahead (JOBYARD_SCHEDULER_READ_AHEAD) once that
#: is at most two sleeps away (JOBYARD_SCHEDULER_INTERVAL each), so usually a whole sleep early, but
#: not when it is closer than this; it stops preparing them half this before their time (on a loaded
#: machine 10,000 took up to 0.8 s), and those it did not prepare go the ordinary way.
READ_AHEAD_MIN_S = 0.2
#: Jobs due up to this long after the next one are read with it (the two clocks' rounding, and jobs
#: due a moment apart).
READ_AHEAD_SLACK_S = 0.05


def backoff(failures: int) -> float:
    """The pause after ``failures`` failures in a row."""
    return float(min(ERROR_BACKOFF_S * 2 ** min(failures - 1, 16), MAX_ERROR_BACKOFF_S))


@dataclass
class Step:
    """One of the scheduler's jobs: runs every ``every_s`` (0: every pass), or later after failures."""

    name: str
    run: Callable[[], int]
    every_s: float = 0.0
    next_at: float = 0.0
    failures: int = 0

    def attempt(self, now: float) -> int:
        if now < self.next_at:
            return 0
        try:
            done = self.run()
        except Exception as exc:
            self.failures += 1
            pause = backoff(self.failures)
            self.next_at = now + pause
            fields = {
                "step": self.name,
                "failures": self.failures,
                "retry_in_s": pause,
                "error": describe(exc),
            }
            if is_transient(exc):
                log.error("scheduler_step_failed", **fields)  # Postgres or Redis away: no traceback needed
            else:
                log.exception("scheduler_step_failed", **fields)
            return 0
        if self.failures:
            log.info("scheduler_step_recovered", step=self.name, after_failures=self.failures)
        self.failures = 0
        self.next_at = now + self.every_s
        return done


class Scheduler:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker = build_broker(settings)
        self.stopping = threading.Event()
        s, b = settings, self.broker
        member = this_process()
        # Threads for a backlog of due jobs (core/engine/dispatch.py publish_due_backlog).
        self.publishers = (
            ThreadPoolExecutor(s.scheduler_publishers, thread_name_prefix="publish_due")
            if s.scheduler_publishers > 1
            else None
        )
        # Jobs read while waiting for their time (core/engine/dispatch.py read_ahead).
        self.ahead: list[Prepared] = []
        self.ahead_until = 0.0
        self.steps = [
            Step("publish_due", self._publish_due),
            Step("fire_schedules", lambda: fire_due_schedules(s, b)),
            # Every republish_after_s / 3 bounds the time a lost job waits to ~1.3x that.
            Step("republish_lost", lambda: republish_lost(s, b), max(s.republish_after_s / 3, 0.2)),
            # A fifth of the dead-after time: a dead worker's jobs run again within ~1.2x of it.
            Step(
                "recover_lost_jobs",
                lambda: recover_lost_jobs(s, b),
                max(min(s.worker_dead_after_s / 5, 5.0), 0.2),
            ),
            # Rows holding times Python cannot read: only an older release's API can still write them.
            Step("fail_out_of_range", lambda: fail_out_of_range(s), s.out_of_range_interval_s),
            # The tenants' own limits into Redis, where the API and the workers read them.
            Step("sync_tenant_limits", lambda: sync_limits(s, b.client), SYNC_EVERY_S),
            # The paused queues into Redis, where the workers read them: a flushed Redis must not
            # resume a queue.
            Step("sync_queue_pauses", lambda: sync_pauses(s, b.client), PAUSES_SYNC_EVERY_S),
            # That this scheduler is alive, for /metrics (core/engine/scheduler_beats.py).
            Step("heartbeat", lambda: beat(b.client, s.redis_namespace, member), BEAT_S),
        ]
        self._loop_failures = 0
        # Its own loop, in a thread: it runs until nothing past its retention is left, batch by batch.
        self.pruning = Step("prune_history", lambda: prune(s, self.stopping.is_set), s.prune_interval_s)
        self._pruner = threading.Thread(target=self._prune_loop, name="prune_history", daemon=True)
        self.senders = Senders(s, self.stopping)

    def _publish_due(self) -> int:
        now = utcnow().timestamp()
        due = [p for p in self.ahead if p.run_at <= now]
        if due:
            self.ahead = [p for p in self.ahead if p.run_at > now]
        return publish_due_backlog(self.settings, self.broker, self.publishers, due)

    def tick(self) -> int:
        """One pass over the steps that are due. Returns jobs published."""
        now = time.monotonic()
        published = 0
        for step in self.steps:
            published += step.attempt(now)
        return published

    def run(self) -> None:
        log.info("scheduler_started", interval_s=self.settings.scheduler_interval_s)
        self._pruner.start()
        self.senders.start()
        while not self.stopping.is_set():
            try:
                self._pass()
                self._loop_failures = 0
            except Exception as exc:  # the last line of defence: log it, back off, go on
                self._loop_failures += 1
                pause = backoff(self._loop_failures)
                log.exception("scheduler_loop_failed", retry_in_s=pause, error=describe(exc))
                self.stopping.wait(pause)
        # A batch in flight is one short transaction: let it commit rather than be cut off.
        self._pruner.join(timeout=self.settings.db_statement_timeout_s or None)
        self.senders.stop()
        if self.publishers is not None:
            self.publishers.shutdown()
        log.info("scheduler_stopped")

    def _prune_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                removed = self.pruning.attempt(time.monotonic())
                if removed:
                    log.info("pruned", rows=removed)
            except Exception as exc:  # attempt() already catches; this is the last line of defence
                log.exception("prune_loop_failed", error=describe(exc))
                self.pruning.next_at = time.monotonic() + MAX_ERROR_BACKOFF_S
            self.stopping.wait(max(self.pruning.next_at - time.monotonic(), 0.05))

    def _pass(self) -> None:
        published = self.tick()
        if published:
            log.info("published", jobs=published)
        if published < self.settings.scheduler_batch:
            # A full batch means more may be due: go again at once. Otherwise sleep until the
            # next job comes due, but no longer than the interval (new jobs and schedules).
            self.stopping.wait(self._pause())

    def _pause(self) -> float:
        """How long to sleep: until the next job comes due, at most JOBYARD_SCHEDULER_INTERVAL,
        reading the jobs due then ahead meanwhile."""
        interval = self.settings.scheduler_interval_s
        try:
            until_due = seconds_until_due(self.settings)
        except Exception as exc:
            if not is_transient(exc):
                log.exception("scheduler_wait_failed", error=describe(exc))
            return interval
        if until_due is None:
            return interval
        wake = time.monotonic() + min(until_due, interval)
        limit = self.settings.scheduler_read_ahead
        if limit > 0 and READ_AHEAD_MIN_S <= until_due <= 2 * interval:
            # Done preparing a little before the due time, whichever wake-up that is.
            self._read_ahead(until_due, limit, time.monotonic() + until_due - READ_AHEAD_MIN_S / 2)
        return max(wake - time.monotonic(), 0.0)

    def _read_ahead(self, until_due: float, limit: int, stop_at: float) -> None:
        """Read the jobs due by the next wake-up now, so that at their time only the update of their
        rows and the publish remain (core/engine/dispatch.py read_ahead). A read replaces the last,
        so a job is never held twice; one that covers the same time already is not repeated (jobs
        added since go the ordinary way)."""
        horizon = utcnow().timestamp() + until_due + READ_AHEAD_SLACK_S
        if self.ahead and self.ahead_until >= horizon - READ_AHEAD_SLACK_S:
            return
        started = time.monotonic()
        try:
            self.ahead = read_ahead(self.settings, horizon, limit, stop_at)
            self.ahead_until = horizon
            if self.ahead:
                log.debug(
                    "read_ahead", jobs=len(self.ahead), due_in_s=until_due, took_s=time.monotonic() - started
                )
        except Exception as exc:
            self.ahead = []
            if not is_transient(exc):
                log.exception("scheduler_read_ahead_failed", error=describe(exc))

    def stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        self.stopping.set()


def main() -> None:
    settings = get_settings()
    configure_logging(settings, process="scheduler")
    use_data_key(settings)  # schedules' payloads hold sealed numbers
    load_job_types(settings)
    scheduler = Scheduler(settings)
    signal.signal(signal.SIGTERM, scheduler.stop)
    signal.signal(signal.SIGINT, scheduler.stop)
    settle_heap()  # start-up's objects out of every later collection (core/platform/heap.py)
    scheduler.run()


if __name__ == "__main__":
    main()
