"""Quiet: this worker process finishes the jobs it holds and takes nothing new (core/engine/workers.py).

The heartbeat (workers/middleware.py) reads whether ops asked for it in the statement that records
the beat, and hands the answer here. Once asked:

1. the broker's ``quiet`` flag is set: each consumer (core/engine/consumer.py) stops fetching at its
   next look (within JOBYARD_WORKER_IDLE_POLL_MS), gives its fetched but not handed out messages back
   to Redis, and keeps its Redis heartbeat, so the messages of its running jobs stay its own;
2. the messages handed out to the worker threads' queue but not started go back to Redis too (on
   every beat until the worker is marked quiet: a consumer may hand one out while it is told);
3. once every consumer has seen the flag and nothing waits in that queue, ``quiet_at`` is written:
   from then on the worker starts nothing, and ops see it ``quiet``.

Messages go back to Dramatiq's list of the queue, which the next fetch of any worker takes first,
so nothing is lost nor sent to the back. The jobs running finish as usual; the process keeps beating
until it is stopped.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import dramatiq
import structlog
from dramatiq.common import iter_queue

from core.engine.recovery import mark_quiet
from core.platform.settings import Settings

log = structlog.get_logger(__name__)


class Quiet:
    """The quiet state of one worker process, driven by its heartbeat thread."""

    def __init__(self, settings: Settings, worker_id: str, worker: dramatiq.Worker) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.worker = worker
        self.marked = False

    def follow(self, asked: bool) -> None:
        """Called after each beat with whether ops asked this worker to be quiet. Never raises: the
        heartbeat thread calling it must go on beating."""
        if not asked or self.marked:
            return
        try:
            self._quiet()
        except Exception as exc:
            log.error("quiet_failed", worker_id=self.worker_id, error=str(exc))

    def _quiet(self) -> None:
        broker = self.worker.broker
        if not broker.quiet.is_set():  # type: ignore[attr-defined]
            broker.quiet.set()  # type: ignore[attr-defined]
            log.info("worker_quieting", worker_id=self.worker_id)
        given_back = self._give_back_unstarted()
        seen: set[str] = broker.quiet_seen  # type: ignore[attr-defined]
        if set(self.worker.consumers) <= seen and self.worker.work_queue.empty():
            mark_quiet(self.settings, self.worker_id)
            self.marked = True
            log.info("worker_quiet", worker_id=self.worker_id, given_back=given_back)

    def _give_back_unstarted(self) -> int:
        """Put the messages waiting for a worker thread back on their queues in Redis."""
        by_queue: dict[str, list[Any]] = defaultdict(list)
        for item in iter_queue(self.worker.work_queue):  # type: ignore[no-untyped-call]
            by_queue[item.message.queue_name].append(item)
            self.worker.work_queue.task_done()
        given = 0
        for queue_name, items in by_queue.items():
            try:
                self.worker.consumers[queue_name].requeue_messages([i.message for i in items])
                given += len(items)
            except Exception as exc:  # Redis away: keep them here, the next beat tries again
                log.warning("quiet_give_back_failed", queue=queue_name, error=str(exc))
                for item in items:
                    self.worker.work_queue.put(item)
        return given
