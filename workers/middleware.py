"""The job lifecycle around every message: claim in Postgres, bind log context, record the outcome.

Delivery from Redis is at-least-once; the claim makes execution once-per-attempt. A message whose
job is finished, cancelled or running elsewhere is skipped and acknowledged. A message of a queue
paused since it was fetched is skipped and handed back to the front of its queue, unclaimed
(core/engine/pauses.py).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from datetime import timedelta
from typing import Any, cast

import dramatiq
import sqlalchemy.exc
import structlog
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware, SkipMessage

from core.engine.consumer import BATCH_OPTION, HAND_BACK_OPTION
from core.engine.job_types import get_job_type
from core.engine.jobs import JobStatus, utcnow
from core.engine.lifecycle import Claim, claim, mark_failed
from core.engine.pauses import PausedQueues
from core.engine.recovery import beat, hand_back, new_worker_id, register_worker, unregister_worker
from core.engine.retry import error_record
from core.errors import ClaimLost
from core.platform.db import transaction
from core.platform.logs import flush_logs
from core.platform.settings import Settings
from workers.quiet import Quiet

log = structlog.get_logger(__name__)

_local = threading.local()
#: This process's lifecycle middleware (there is one per worker process).
_lifecycle: JobLifecycle | None = None


def current_claim() -> Claim:
    """The job this worker thread is running (set by JobLifecycle before the actor is called)."""
    found: Claim | None = getattr(_local, "claim", None)
    if found is None:
        raise RuntimeError("no job is being processed on this thread")
    return found


def current_lifecycle() -> JobLifecycle:
    if _lifecycle is None:
        raise RuntimeError("no JobLifecycle middleware in this process")
    return _lifecycle


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


class JobLifecycle(Middleware):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker_id = new_worker_id()
        self._stop_beating = threading.Event()
        self.paused: PausedQueues | None = None
        global _lifecycle
        _lifecycle = self

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Registered before the consumers start: a job claimed by a worker that recovery does not
        # know yet would look lost and be run a second time. The queues it consumes (its
        # --queues), not every queue declared: ops read this.
        consumed = worker.consumer_whitelist or broker.get_declared_queues()
        register_worker(
            self.settings,
            self.worker_id,
            sorted(consumed),
            cast(RedisBroker, broker).broker_id,
            worker.worker_threads,
        )
        self._quiet = Quiet(self.settings, self.worker_id, worker)
        self.paused = PausedQueues(cast(RedisBroker, broker).client, self.settings.redis_namespace)
        threading.Thread(target=self._beat, name="jobyard-heartbeat", daemon=True).start()
        log.info("worker_registered", worker_id=self.worker_id)

    def _beat(self) -> None:
        while not self._stop_beating.wait(self.settings.worker_heartbeat_s):
            try:
                self._quiet.follow(beat(self.settings, self.worker_id))  # workers/quiet.py
            except sqlalchemy.exc.SQLAlchemyError as exc:
                log.error("heartbeat_failed", worker_id=self.worker_id, error=str(exc))

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Jobs still running here outlived the shutdown deadline: give them back unspent.
        handed_back = hand_back(self.settings, cast(RedisBroker, broker), self.worker_id)
        self._stop_beating.set()
        unregister_worker(self.settings, self.worker_id)
        log.info("worker_unregistered", worker_id=self.worker_id, handed_back=handed_back)
        # Through Dramatiq's pipe to its main process while it is open (core/platform/logs.py).
        flush_logs()

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        if self.paused is not None and message.queue_name in self.paused:
            # Fetched before its queue was paused: not started, and given back (the consumer's ack
            # requeues a message carrying this option); the job stays queued in Postgres.
            message.options[HAND_BACK_OPTION] = True
            _local.skip_reason = "queue_paused"
            raise SkipMessage(f"queue {message.queue_name} is paused")
        if BATCH_OPTION in message.options:
            # A batch claims its jobs itself, all in one statement (workers/execution.py).
            structlog.contextvars.clear_contextvars()
            return
        job_id = uuid.UUID(message.args[0])
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            job_id=str(job_id), type=message.actor_name, request_id=message.options.get("request_id")
        )
        deadline = utcnow() + timedelta(
            seconds=get_job_type(message.actor_name).timeout_s + self.settings.stuck_grace_s
        )
        try:
            with transaction(self.settings) as conn:
                claimed = claim(conn, job_id, worker_name(), self.worker_id, deadline)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
            # Postgres is unreachable: the job is still queued there. Dropping the message lets the
            # sweeper publish it again once Postgres is back, instead of Dramatiq running the actor
            # without a claim.
            _local.skip_reason = "claim_failed"
            log.warning("claim_failed", error=str(exc), detail="the sweeper publishes the job again")
            raise SkipMessage(f"job {job_id} could not be claimed") from None
        if claimed is None:
            # Finished, cancelled or running elsewhere: a duplicate delivery or a stale message.
            raise SkipMessage(f"job {job_id} is not claimable")
        _local.claim = claimed
        _local.started = time.monotonic()
        structlog.contextvars.bind_contextvars(attempt=claimed.attempt, request_id=claimed.request_id)
        # DEBUG: a job's INFO line is its outcome's (job_succeeded, job_failed, ...), which carries
        # the same fields; one line per job instead of two (docs/operations/metrics.md).
        log.debug("job_started")

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        reason = getattr(_local, "skip_reason", None) or "not claimable"
        _local.skip_reason = None
        if reason == "not claimable":
            log.info("job_skipped", reason=reason)
        elif reason == "queue_paused":
            log.info("job_handed_back", reason=reason, queue=message.queue_name)
        self._reset()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        claimed: Claim | None = getattr(_local, "claim", None)
        try:
            if BATCH_OPTION in message.options:
                if exception is not None:
                    log.error("batch_error", jobs=len(message.options[BATCH_OPTION]), error=str(exception))
                return
            if claimed is None:
                # The claim itself failed (Postgres unreachable): the job is still queued in
                # Postgres and the sweeper publishes it again.
                if exception is not None:
                    log.error("claim_failed", error=str(exception))
                return
            if exception is None:
                log.info("job_succeeded", duration_ms=_elapsed_ms(getattr(_local, "started", None)))
                return
            if isinstance(exception, ClaimLost):
                log.warning("claim_lost", detail="another worker or a recovery owns this job now")
                return
            self.record_failure(claimed, exception)
        finally:
            self._reset()

    def record_failure(self, claimed: Claim, exception: BaseException) -> None:
        error = error_record(exception)
        try:
            with transaction(self.settings) as conn:
                status = mark_failed(conn, claimed, error)
        except ClaimLost:
            log.warning("claim_lost", detail="failure not recorded; another worker owns this job now")
            return
        # The job's fields named here too: a job of a batch has none bound (workers/execution.py).
        job = {
            "job_id": str(claimed.job_id),
            "type": claimed.type,
            "attempt": claimed.attempt,
            "request_id": claimed.request_id,
        }
        if status == JobStatus.CANCELLED:  # its cancel was asked while it ran
            log.info("job_cancelled", **job, error_code=error["code"])
            return
        log.warning(
            "job_failed", **job, status=status, error_code=error["code"], error_message=error["message"]
        )

    def _reset(self) -> None:
        _local.claim = None
        _local.started = None
        structlog.contextvars.clear_contextvars()


def _elapsed_ms(started: float | None) -> float | None:
    return None if started is None else round((time.monotonic() - started) * 1000, 1)
