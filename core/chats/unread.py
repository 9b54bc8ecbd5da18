"""Unread counters: the `unread_count` job type (batched) and the reads and writes behind it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from core.engine.declare import BatchContext, JobContext, job_type
from core.engine.jobs import utcnow
from core.platform.tables import chat_messages, chats, unread_counters

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class UnreadCountPayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    chat_id: Id
    user_id: Id
    op: Literal["increment", "reset", "recount"] = "increment"
    by: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1


def unread_count_batch(ctx: BatchContext, payloads: list[UnreadCountPayload]) -> list[dict[str, Any]]:
    """Many jobs in one transaction: increments summed per counter (see ``apply_unread_many``)."""
    return apply_unread_many(ctx.conn, payloads)


@job_type(
    "unread_count",
    payload=UnreadCountPayload,
    batch=unread_count_batch,
    max_retries=5,
    min_backoff_s=0.5,
    max_backoff_s=60.0,
    timeout_s=30.0,
    description="Apply an unread delta, reset, or recount a chat for a user, exactly once per job.",
)
def unread_count(ctx: JobContext, payload: UnreadCountPayload) -> dict[str, Any]:
    return apply_unread(ctx.conn, payload)


def ensure_chat(conn: Connection, chat_id: str) -> None:
    conn.execute(pg_insert(chats).values(id=chat_id).on_conflict_do_nothing(index_elements=[chats.c.id]))


def apply_unread(conn: Connection, payload: UnreadCountPayload) -> dict[str, Any]:
    """Apply the payload's operation in the caller's transaction and return the new count."""
    ensure_chat(conn, payload.chat_id)
    key = {"user_id": payload.user_id, "chat_id": payload.chat_id}
    now = utcnow()
    if payload.op == "increment":
        stmt = pg_insert(unread_counters).values(**key, unread=payload.by, updated_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=[unread_counters.c.user_id, unread_counters.c.chat_id],
            set_={"unread": unread_counters.c.unread + payload.by, "updated_at": now},
        )
    elif payload.op == "reset":
        stmt = _upsert_count(key, sa.literal(0), now, last_read_at=now)
    else:
        stmt = _upsert_count(key, _count_unread(payload.chat_id, payload.user_id), now)
    unread = conn.execute(stmt.returning(unread_counters.c.unread)).scalar_one()
    return {"chat_id": payload.chat_id, "unread": unread}


_ENSURE_CHATS = sa.text(
    "INSERT INTO chats (id) SELECT id FROM unnest(CAST(:ids AS text[])) AS c(id) ORDER BY id "
    "ON CONFLICT (id) DO NOTHING"
)
# Sorted, so two batches touching the same counters lock them in the same order (no deadlock).
_ADD_MANY = sa.text(
    """
    INSERT INTO unread_counters (user_id, chat_id, unread, updated_at)
    SELECT u, c, d, :now FROM unnest(CAST(:users AS text[]), CAST(:chats AS text[]), CAST(:deltas AS int[]))
        AS k(u, c, d) ORDER BY u, c
    ON CONFLICT (user_id, chat_id)
    DO UPDATE SET unread = unread_counters.unread + excluded.unread, updated_at = excluded.updated_at
    RETURNING user_id, chat_id, unread
    """
)


def apply_unread_many(conn: Connection, payloads: list[UnreadCountPayload]) -> list[dict[str, Any]]:
    """``apply_unread`` for many payloads in one transaction, each result the count right after its
    own job, as if they had run one by one in this order.

    Increments are summed per counter and written in one upsert; a batch with a reset or a recount
    runs its payloads one after the other instead.
    """
    if any(p.op != "increment" for p in payloads):
        return [apply_unread(conn, p) for p in payloads]
    totals: dict[tuple[str, str], int] = {}
    for p in payloads:
        totals[(p.user_id, p.chat_id)] = totals.get((p.user_id, p.chat_id), 0) + p.by
    conn.execute(_ENSURE_CHATS, {"ids": sorted({p.chat_id for p in payloads})})
    keys = sorted(totals)
    rows = conn.execute(
        _ADD_MANY,
        {
            "now": utcnow(),
            "users": [u for u, _ in keys],
            "chats": [c for _, c in keys],
            "deltas": [totals[k] for k in keys],
        },
    ).all()
    final = {(r.user_id, r.chat_id): r.unread for r in rows}
    # Walk backwards from each counter's final value: a job's count excludes the later jobs' deltas.
    results: list[dict[str, Any]] = []
    for p in reversed(payloads):
        key = (p.user_id, p.chat_id)
        results.append({"chat_id": p.chat_id, "unread": final[key]})
        final[key] -= p.by
    results.reverse()
    return results


def _upsert_count(
    key: dict[str, str], count: Any, now: datetime, last_read_at: datetime | None = None
) -> Any:
    values: dict[str, Any] = {**key, "unread": count, "updated_at": now}
    update: dict[str, Any] = {"unread": count, "updated_at": now}
    if last_read_at is not None:
        values["last_read_at"] = update["last_read_at"] = last_read_at
    return (
        pg_insert(unread_counters)
        .values(**values)
        .on_conflict_do_update(
            index_elements=[unread_counters.c.user_id, unread_counters.c.chat_id], set_=update
        )
    )


def _count_unread(chat_id: str, user_id: str) -> Any:
    """Messages in the chat after the user's last read, not written by the user."""
    last_read = (
        sa.select(unread_counters.c.last_read_at)
        .where(unread_counters.c.user_id == user_id, unread_counters.c.chat_id == chat_id)
        .scalar_subquery()
    )
    return (
        sa.select(sa.func.count())
        .select_from(chat_messages)
        .where(
            chat_messages.c.chat_id == chat_id,
            chat_messages.c.author_id.is_distinct_from(user_id),
            sa.or_(last_read.is_(None), chat_messages.c.created_at > last_read),
        )
        .scalar_subquery()
    )


def mark_read(conn: Connection, chat_id: str, user_id: str) -> dict[str, Any]:
    """The user has read the chat up to now."""
    ensure_chat(conn, chat_id)
    now = utcnow()
    conn.execute(
        _upsert_count({"user_id": user_id, "chat_id": chat_id}, sa.literal(0), now, last_read_at=now)
    )
    return {"chat_id": chat_id, "unread": 0}


def unread_for_user(conn: Connection, user_id: str) -> dict[str, Any]:
    rows = conn.execute(
        sa.select(unread_counters.c.chat_id, unread_counters.c.unread)
        .where(unread_counters.c.user_id == user_id, unread_counters.c.unread > 0)
        .order_by(unread_counters.c.updated_at.desc())
    ).all()
    items = [{"chat_id": r.chat_id, "unread": r.unread} for r in rows]
    return {"items": items, "total": sum(i["unread"] for i in items)}
