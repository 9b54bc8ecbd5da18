"""Stopping a job this worker process runs when its cancel is asked (``POST /v1/jobs/{id}/cancel``).

The API records the request on the running job (``cancel_requested_at``) and, in the same
transaction, notifies ``jobyard_cancel`` with the job's id (core/engine/queries.py). Each worker
process holds one LISTEN connection; a notification for a job this process runs cancels that job's
scope (core/platform/cancellation.py): ``ctx.cancelled`` turns True and the job's LLM, HTTP and
browser calls in flight are aborted. The handler then raises, and the job ends ``cancelled``
(core/engine/lifecycle.py, ``mark_failed``).

Why a notification, and not a poll per job: nothing is read while nobody cancels, and the worker
hears of a cancel within milliseconds of its commit. A notification sent while the connection was
down is lost, so the listener also reads, when it (re)connects and then every
JOBYARD_WORKER_HEARTBEAT seconds while the process runs jobs, which of its jobs have a cancel asked:
one primary-key lookup of the jobs it holds, none when it holds none.

A job's scope is opened before its claim (``before_process_message``, ahead of JobLifecycle), so a
cancel that follows the claim's commit always finds it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dramatiq
import psycopg
import sqlalchemy as sa
import structlog
from dramatiq.middleware import Middleware

from core.engine.consumer import BATCH_OPTION
from core.engine.queries import CANCEL_CHANNEL
from core.platform.cancellation import CancelScope
from core.platform.db import session_options, transaction
from core.platform.settings import Settings
from core.platform.tables import jobs

log = structlog.get_logger(__name__)

MAX_BACKOFF_S = 5.0


class Running:
    """The cancel scopes of the jobs this process runs, by job id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scopes: dict[uuid.UUID, CancelScope] = {}

    def open(self, job_id: uuid.UUID) -> CancelScope:
        scope = CancelScope(str(job_id))
        with self._lock:
            self._scopes[job_id] = scope
        return scope

    def get(self, job_id: uuid.UUID) -> CancelScope | None:
        with self._lock:
            return self._scopes.get(job_id)

    def close(self, job_id: uuid.UUID) -> None:
        with self._lock:
            self._scopes.pop(job_id, None)

    def ids(self) -> list[uuid.UUID]:
        with self._lock:
            return list(self._scopes)

    def cancel(self, job_id: uuid.UUID) -> bool:
        scope = self.get(job_id)
        if scope is None or scope.cancelled:
            return False
        log.info("job_cancel_noticed", job_id=str(job_id))
        scope.cancel()
        return True


#: This process's running jobs (one registry per worker process).
running = Running()


@contextmanager
def scope_for(job_id: uuid.UUID) -> Iterator[CancelScope]:
    """The scope of a job this thread is about to run: the one opened before its claim (closed by
    the middleware after the message), or one for the run alone (a job of a batch run by itself
    after its batch failed), closed after it."""
    scope = running.get(job_id)
    if scope is not None:
        yield scope
        return
    scope = running.open(job_id)
    try:
        yield scope
    finally:
        running.close(job_id)


def cancel_requested(settings: Settings, job_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Which of ``job_ids`` (running here) have a cancel asked."""
    if not job_ids:
        return []
    with transaction(settings) as conn:
        return list(
            conn.execute(
                sa.select(jobs.c.id).where(jobs.c.id.in_(job_ids), jobs.c.cancel_requested_at.isnot(None))
            ).scalars()
        )


class CancelListener(Middleware):
    """Opens each job's scope before its claim, closes it after, and listens for cancels."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        threading.Thread(target=self._listen, name="jobyard-cancel-listener", daemon=True).start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        if BATCH_OPTION not in message.options:
            running.open(uuid.UUID(message.args[0]))

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if BATCH_OPTION not in message.options:
            running.close(uuid.UUID(message.args[0]))

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        self.after_process_message(broker, message)

    def _check(self) -> None:
        for job_id in cancel_requested(self.settings, running.ids()):
            running.cancel(job_id)

    def _listen(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self.settings.database_url or "",
                    autocommit=True,
                    options=session_options(self.settings),
                    application_name="jobyard-cancel",
                ) as conn:
                    conn.execute(f"LISTEN {CANCEL_CHANNEL}")
                    backoff = 0.5
                    self._check()  # cancels asked while nobody listened
                    self._serve(conn)
            except Exception as exc:
                log.warning("cancel_listen_failed", error=str(exc), retry_in_s=backoff)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _serve(self, conn: psycopg.Connection[Any]) -> None:
        while not self._stop.is_set():
            for note in conn.notifies(timeout=self.settings.worker_heartbeat_s):
                try:
                    running.cancel(uuid.UUID(note.payload))
                except ValueError:
                    log.warning("cancel_notification_ignored", payload=note.payload[:100])
            if running.ids():
                self._check()
