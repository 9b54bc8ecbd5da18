"""A running job's progress, as its handler reports it (``ctx.progress(0.4, "400 of 1,000")``).

Stored on the job's row (``progress_fraction``, ``progress_message``, ``progress_at``), where
``GET /v1/jobs/{id}`` and the dashboard read it, and told as a ``job.progress`` event to the events
streams that asked for it (migration 0026). A handler may report in a tight loop: the row is
written at most once per JOBYARD_PROGRESS_INTERVAL_S per job, the reports in between are held, and
the last one held is written when the handler ends, so the value a finished job shows is the last
one reported.

Written in a short transaction of its own, never in the job's: the job's transaction commits only
at its end, and progress is for while it runs. Fenced by the attempt, like every write of a run, so
a run that lost its claim writes nothing. A write that fails (Postgres busy) is logged and
dropped: progress never fails a job. A report that is not a number from 0 to 1 is the handler's bug
and fails the job, permanently, with ``invalid_progress``.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import sqlalchemy as sa
import sqlalchemy.exc
import structlog

from core.engine.jobs import JobStatus, utcnow
from core.engine.lifecycle import Claim
from core.errors import PermanentError
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import jobs

log = structlog.get_logger(__name__)

#: Longest message stored; a longer one is cut.
MAX_MESSAGE = 500
#: How long a progress write may wait for the job's row (the job's own transaction may hold it).
LOCK_WAIT_MS = 200


def checked(fraction: object, message: object) -> tuple[float, str | None]:
    """The report as stored; PermanentError ``invalid_progress`` for anything but a number 0..1 and
    a string (or None)."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise PermanentError(
            f"ctx.progress({fraction!r}): the fraction must be a number from 0 to 1", code="invalid_progress"
        )
    value = float(fraction)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise PermanentError(
            f"ctx.progress({fraction!r}): the fraction must be a number from 0 to 1", code="invalid_progress"
        )
    if message is not None and not isinstance(message, str):
        raise PermanentError(
            f"ctx.progress(..., message={message!r}): the message must be a string", code="invalid_progress"
        )
    if message is not None:
        message = message.replace("\x00", "\ufffd")[:MAX_MESSAGE]
    return value, message


@dataclass
class ProgressReporter:
    """One run's reports: written at most once per ``interval_s``, the last one always (``flush``)."""

    claim: Claim
    settings: Settings
    _last_write: float = float("-inf")
    _pending: tuple[float, str | None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def report(self, fraction: object, message: object = None) -> None:
        value = checked(fraction, message)
        now = time.monotonic()
        with self._lock:
            self._pending = value
            if now - self._last_write < self.settings.progress_interval_s:
                return
            self._last_write = now
            self._pending = None
        self._write(*value)

    def flush(self) -> None:
        """Write the report held back by the throttle, if any (at the end of the run)."""
        with self._lock:
            value, self._pending = self._pending, None
        if value is not None:
            self._write(*value)

    def _write(self, fraction: float, message: str | None) -> None:
        c = self.claim
        try:
            with transaction(self.settings) as conn:
                conn.execute(sa.text(f"SET LOCAL lock_timeout = {LOCK_WAIT_MS}"))
                conn.execute(
                    sa.update(jobs)
                    .where(
                        jobs.c.id == c.job_id,
                        jobs.c.status == JobStatus.RUNNING,
                        jobs.c.attempts == c.attempt,
                    )
                    .values(progress_fraction=fraction, progress_message=message, progress_at=utcnow())
                )
        except sqlalchemy.exc.SQLAlchemyError as exc:
            log.warning("progress_not_written", job_id=str(c.job_id), error=str(exc).splitlines()[0])
