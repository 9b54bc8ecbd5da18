"""The senders: each scheduler process delivers due webhook deliveries from threads of its own.

A delivery is a job of its own kind. It is taken under a lease (``leased_until``: a sender that dies
mid-send leaves it to be taken again when the lease runs out), sent signed (core/events/signing.py)
with one POST, and recorded: delivered on a 2xx answer, otherwise tried again after the next of
JOBYARD_WEBHOOK_RETRY_DELAYS_S, and dead when they run out (the delivery log shows it; a redrive
sends it again, core/events/deliveries.py). The same event is never two deliveries to one endpoint,
and a receiver recognises a repeat (a lost answer, a redrive) by its ``webhook-id``.

Order: of one endpoint's deliveries about one subject (a job), only the oldest pending one is taken,
so a job's ``job.retrying`` reaches the receiver before its ``job.succeeded``, retries included. A
dead delivery leaves the line.

Slow receivers: one try lasts at most JOBYARD_WEBHOOK_TIMEOUT_S, in the scheduler's sender threads
(never a job worker's), and one endpoint has at most JOBYARD_WEBHOOK_ENDPOINT_CONCURRENCY tries in
flight across the farm, so a slow endpoint cannot take every sender. An endpoint whose every try
failed for JOBYARD_WEBHOOK_DISABLE_AFTER_S is disabled: an audit entry and a log line tell ops, and
its deliveries wait until it is enabled again (``PATCH /v1/webhook-endpoints/{id}``).

Waking: the trigger that records an event notifies ``jobyard_events``; a listener thread wakes the
senders at once, and they look at least every second for retries coming due.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx2
import msgspec
import psycopg
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection

from core.engine import audit
from core.engine.jobs import utcnow
from core.errors import AddressRefused, SettingsError
from core.events import log as event_log
from core.events.endpoints import secrets_in_force
from core.events.signing import headers
from core.platform.db import transaction
from core.platform.netguard import AllowList
from core.platform.settings import Settings
from core.platform.tables import webhook_deliveries, webhook_endpoints
from core.providers.guarded_http import guarded_client

log = structlog.get_logger(__name__)

#: Senders look for due retries at least this often, notified or not.
POLL_S = 1.0
#: A lease outlives the try's timeout by this much, so a slow try is never taken twice.
LEASE_MARGIN_S = 30.0
#: At most this much of a receiver's answer is kept, to show in the delivery log.
KEPT_ANSWER = 500
#: Claims of every sender of the farm take turns under this lock (one short statement each), so two
#: never count an endpoint's deliveries in flight at the same moment.
CLAIM_LOCK = 0x6A6F6279_77686B31  # "jobywhk1"

_CLAIM = sa.text(
    """
    WITH busy AS (
        SELECT endpoint_id, count(*) AS n FROM webhook_deliveries
        WHERE status = 'pending' AND leased_until IS NOT NULL AND leased_until > now()
        GROUP BY endpoint_id
    ), room AS (
        SELECT e.id, :per_endpoint - coalesce(b.n, 0) AS free
        FROM webhook_endpoints e LEFT JOIN busy b ON b.endpoint_id = e.id
        WHERE e.enabled AND :per_endpoint - coalesce(b.n, 0) > 0
    ), picked AS (
        SELECT c.id FROM room r CROSS JOIN LATERAL (
            SELECT d.id FROM webhook_deliveries d
            WHERE d.endpoint_id = r.id AND d.status = 'pending' AND d.next_attempt_at <= now()
              AND (d.leased_until IS NULL OR d.leased_until <= now())
              AND NOT EXISTS (
                  SELECT 1 FROM webhook_deliveries p
                  WHERE p.endpoint_id = d.endpoint_id AND p.subject = d.subject
                    AND p.status = 'pending' AND p.id < d.id)
            ORDER BY d.next_attempt_at LIMIT r.free
        ) c
        ORDER BY c.id LIMIT :n
    )
    UPDATE webhook_deliveries w
    SET leased_until = now() + make_interval(secs => :lease_s), attempts = w.attempts + 1,
        last_attempt_at = now()
    FROM picked, webhook_endpoints e, events ev
    WHERE w.id = picked.id AND e.id = w.endpoint_id AND ev.id = w.event_id
    RETURNING w.id, w.endpoint_id, w.event_id, w.attempts, e.url, e.secret_sealed,
              e.previous_secret_sealed, e.previous_until, ev.xid, ev.tenant, ev.type, ev.subject,
              ev.job_type, ev.data, ev.created_at
    """
)
# Successes, the common outcome, recorded together: one statement for a whole round's.
_DELIVERED = sa.text(
    """
    WITH done AS (
        UPDATE webhook_deliveries d
        SET status = 'delivered', delivered_at = now(), leased_until = NULL, last_status_code = r.code,
            last_error = NULL, last_duration_ms = r.ms
        FROM unnest(CAST(:ids AS bigint[]), CAST(:attempts AS int[]), CAST(:codes AS int[]),
                    CAST(:ms AS int[])) AS r(id, attempt, code, ms)
        WHERE d.id = r.id AND d.attempts = r.attempt AND d.status = 'pending'
        RETURNING d.endpoint_id
    )
    UPDATE webhook_endpoints SET failing_since = NULL
    WHERE id IN (SELECT endpoint_id FROM done) AND failing_since IS NOT NULL
    """
)


@dataclass(frozen=True, slots=True)
class Taken:
    """A delivery a sender holds, with what sending it needs: ``attempt`` fences the write of its
    outcome; ``endpoint`` is the endpoint's row (url, sealed secrets), ``event`` the event."""

    id: int
    endpoint_id: uuid.UUID
    event_id: int
    attempt: int
    endpoint: Any
    event: event_log.Event


@dataclass(frozen=True, slots=True)
class Outcome:
    delivered: bool
    status_code: int | None
    error: str | None
    duration_ms: int


def retry_delays(settings: Settings) -> list[float]:
    """JOBYARD_WEBHOOK_RETRY_DELAYS_S as seconds; SettingsError for a value that is not one."""
    try:
        delays = [float(d) for d in settings.webhook_retry_delays_s]
    except ValueError:
        raise SettingsError(
            f"JOBYARD_WEBHOOK_RETRY_DELAYS_S={','.join(settings.webhook_retry_delays_s)!r}: "
            "comma-separated seconds expected"
        ) from None
    if any(not 0 <= d < 10**7 for d in delays):
        raise SettingsError("JOBYARD_WEBHOOK_RETRY_DELAYS_S: each delay between 0 and 10,000,000 seconds")
    return delays


def take(conn: Connection, settings: Settings, n: int) -> list[Taken]:
    """Lease up to ``n`` due deliveries, the oldest of each line, within each endpoint's limit."""
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(CLAIM_LOCK)))
    rows = conn.execute(
        _CLAIM,
        {
            "per_endpoint": settings.webhook_endpoint_concurrency,
            "n": n,
            "lease_s": settings.webhook_timeout_s + LEASE_MARGIN_S,
        },
    ).all()
    return [
        Taken(
            r.id,
            r.endpoint_id,
            r.event_id,
            r.attempts,
            endpoint=r,
            event=event_log.Event(
                r.event_id, r.xid, r.tenant, r.type, r.subject, r.job_type, r.data, r.created_at
            ),
        )
        for r in rows
    ]


def _answer_text(response: httpx2.Response, deadline: float) -> str:
    kept = b""
    for chunk in response.iter_bytes():
        kept += chunk
        if len(kept) >= KEPT_ANSWER or time.monotonic() > deadline:
            break
    return kept[:KEPT_ANSWER].decode("utf-8", "replace")


def send(client: httpx2.Client, url: str, body: bytes, signed: dict[str, str], timeout_s: float) -> Outcome:
    """One POST of a delivery; never raises for what the receiver or the network does."""
    started = time.monotonic()
    deadline = started + timeout_s
    status: int | None = None
    error: str | None = None
    try:
        with client.stream(
            "POST", url, content=body, headers={**signed, "content-type": "application/json"}
        ) as response:
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}: {_answer_text(response, deadline)}".strip()
    except AddressRefused as exc:
        error = f"address refused: {exc}"
    except httpx2.TimeoutException:
        error = f"no answer within {timeout_s:g} s"
    except httpx2.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:KEPT_ANSWER]
    duration_ms = int((time.monotonic() - started) * 1000)
    return Outcome(error is None, status, error, duration_ms)


def signed_body(taken: Taken) -> tuple[bytes, dict[str, str]]:
    """The delivery's body and its Standard Webhooks headers, signed now."""
    body = msgspec.json.encode(event_log.body(taken.event))
    e = taken.endpoint
    in_force = secrets_in_force(
        taken.endpoint_id, e.secret_sealed, e.previous_secret_sealed, e.previous_until, utcnow()
    )
    return body, headers(in_force, f"msg_{taken.event_id}", int(time.time()), body)


def record_delivered(conn: Connection, done: list[tuple[Taken, Outcome]]) -> None:
    """Write a round's successful tries at once (those whose lease is still this sender's)."""
    if done:
        conn.execute(
            _DELIVERED,
            {
                "ids": [t.id for t, _ in done],
                "attempts": [t.attempt for t, _ in done],
                "codes": [o.status_code for _, o in done],
                "ms": [o.duration_ms for _, o in done],
            },
        )


def record(conn: Connection, settings: Settings, taken: Taken, outcome: Outcome, delays: list[float]) -> None:
    """Write one try's outcome (if the lease is still this sender's) and the endpoint's streak."""
    now = utcnow()
    d = webhook_deliveries.c
    values: dict[str, Any] = {
        "leased_until": None,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error,
        "last_duration_ms": outcome.duration_ms,
    }
    if outcome.delivered:
        values.update(status="delivered", delivered_at=now)
    elif taken.attempt <= len(delays):
        values["next_attempt_at"] = now + timedelta(seconds=delays[taken.attempt - 1])
    else:
        values["status"] = "dead"
    done = conn.execute(
        sa.update(webhook_deliveries)
        .where(d.id == taken.id, d.attempts == taken.attempt, d.status == "pending")
        .values(**values)
    )
    if done.rowcount != 1:
        return  # redriven or its endpoint deleted meanwhile: the newer state stands
    if outcome.delivered:
        conn.execute(
            sa.update(webhook_endpoints)
            .where(webhook_endpoints.c.id == taken.endpoint_id, webhook_endpoints.c.failing_since.isnot(None))
            .values(failing_since=None)
        )
    else:
        _count_failure(conn, settings, taken.endpoint_id, now)


def _count_failure(conn: Connection, settings: Settings, endpoint_id: uuid.UUID, now: datetime) -> None:
    e = webhook_endpoints.c
    row = conn.execute(
        sa.update(webhook_endpoints)
        .where(e.id == endpoint_id)
        .values(failing_since=sa.func.coalesce(e.failing_since, now))
        .returning(e.failing_since, e.enabled, e.tenant, e.url)
    ).one()
    if not row.enabled or row.failing_since > now - timedelta(seconds=settings.webhook_disable_after_s):
        return
    reason = f"every delivery failed since {row.failing_since.isoformat()}"
    conn.execute(
        sa.update(webhook_endpoints)
        .where(e.id == endpoint_id)
        .values(enabled=False, disabled_reason=reason, disabled_at=now, updated_at=now)
    )
    waiting = conn.execute(
        sa.select(sa.func.count())
        .select_from(webhook_deliveries)
        .where(webhook_deliveries.c.endpoint_id == endpoint_id, webhook_deliveries.c.status == "pending")
    ).scalar_one()
    audit.record(
        conn,
        tenant=row.tenant,
        actor="farm",
        action="webhook_endpoint.disable",
        selection={"endpoint": str(endpoint_id), "url": row.url},
        reason=reason,
        counts={"waiting": waiting},
    )
    log.warning("webhook_endpoint_disabled", endpoint=str(endpoint_id), tenant=row.tenant, reason=reason)


class Senders:
    """The scheduler's webhook senders: a loop that takes due deliveries and records what became of
    them, and a pool of threads that send them."""

    def __init__(self, settings: Settings, stopping: threading.Event) -> None:
        self.settings = settings
        self.stopping = stopping
        self.delays = retry_delays(settings)
        self.client = guarded_client(
            AllowList.parse(settings.webhook_allow_hosts), timeout=settings.webhook_timeout_s
        )
        self.pool = ThreadPoolExecutor(settings.webhook_concurrency, thread_name_prefix="webhook")
        self.wake = threading.Event()
        self.in_flight = 0
        self.outcomes: queue.SimpleQueue[tuple[Taken, Outcome]] = queue.SimpleQueue()
        self._lock = threading.Lock()

    def start(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self._take_loop, name="webhook_take", daemon=True),
            threading.Thread(target=self._listen_loop, name="webhook_listen", daemon=True),
        ]
        for t in threads:
            t.start()
        return threads

    def stop(self) -> None:
        self.wake.set()
        # A try in flight is not waited for: its lease runs out and another sender takes it again.
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    def round(self) -> int:
        """One transaction: record the outcomes that came in (the successes in one statement), then
        lease what there is room for. The leased go to the pool. Returns how many were taken.

        Its commit does not wait for the disk (synchronous_commit off): if Postgres crashes right
        after, a delivery recorded here may be sent once more, which its webhook-id lets the
        receiver recognise; nothing is lost."""
        done: list[tuple[Taken, Outcome]] = []
        while True:
            try:
                done.append(self.outcomes.get_nowait())
            except queue.Empty:
                break
        with self._lock:
            free = self.settings.webhook_concurrency - self.in_flight + len(done)
        try:
            with transaction(self.settings) as conn:
                conn.execute(sa.text("SET LOCAL synchronous_commit TO off"))
                record_delivered(conn, [(t, o) for t, o in done if o.delivered])
                for t, o in done:
                    if not o.delivered:
                        record(conn, self.settings, t, o, self.delays)
                taken = take(conn, self.settings, free) if free > 0 else []
        except Exception:
            for item in done:  # kept for the next round (their leases are long)
                self.outcomes.put(item)
            raise
        with self._lock:
            self.in_flight += len(taken) - len(done)
        for t in taken:
            self.pool.submit(self._send, t)
        return len(taken)

    def _send(self, taken: Taken) -> None:
        try:
            body, signed = signed_body(taken)
            outcome = send(self.client, taken.endpoint.url, body, signed, self.settings.webhook_timeout_s)
        except Exception as exc:  # a secret that does not open, a bug: a failed try, never a lost one
            log.exception("webhook_delivery_crashed", delivery=taken.id)
            outcome = Outcome(False, None, f"not sent: {type(exc).__name__}", 0)
        if not outcome.delivered:
            log.info(
                "webhook_delivery_failed",
                delivery=taken.id,
                endpoint=str(taken.endpoint_id),
                attempt=taken.attempt,
                status=outcome.status_code,
                ms=outcome.duration_ms,
                error=outcome.error,
            )
        self.outcomes.put((taken, outcome))
        self.wake.set()

    def _take_loop(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            self.wake.clear()
            try:
                taken = self.round()
                failures = 0
            except Exception:
                failures += 1
                log.exception("webhook_round_failed", failures=failures)
                self.stopping.wait(min(0.5 * 2**failures, 8.0))
                continue
            if taken == 0:
                self.wake.wait(POLL_S)

    def _listen_loop(self) -> None:
        """Wakes the take loop on every notification; reconnects after a failure."""
        failures = 0
        while not self.stopping.is_set():
            try:
                assert self.settings.database_url
                with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {event_log.CHANNEL}")
                    failures = 0
                    while not self.stopping.is_set():
                        for _ in conn.notifies(timeout=POLL_S, stop_after=1):
                            self.wake.set()
            except Exception as exc:
                failures += 1
                log.warning("webhook_listen_failed", failures=failures, error=str(exc))
                self.stopping.wait(min(0.5 * 2**failures, 8.0))
