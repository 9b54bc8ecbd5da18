"""Unread counters: the `unread_count` job type (batched) and the reads and writes behind it.

Chats and counters are their tenant's: a job writes its own tenant's (``ctx.tenant``), and the API
reads a key's reach (core/platform/tenants.py). Two tenants' chat ``c1`` are two chats.
"""

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
from core.platform.tenants import reached

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class UnreadCountPayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    chat_id: Id
    user_id: Id
    op: Literal["increment", "reset", "recount"] = "increment"
    by: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1


def unread_count_batch(ctx: BatchContext, payloads: list[UnreadCountPayload]) -> list[dict[str, Any]]:
    """Many jobs in one transaction: increments summed per counter (see ``apply_unread_many``)."""
    return apply_unread_many(ctx.conn, [(c.tenant, p) for c, p in zip(ctx.claims, payloads, strict=True)])


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
    return apply_unread(ctx.conn, ctx.tenant, payload)


def ensure_chat(conn: Connection, tenant: str, chat_id: str) -> None:
    """The tenant's chat ``chat_id``, made if it is new."""
    conn.execute(
        pg_insert(chats)
        .values(id=chat_id, tenant=tenant)
        .on_conflict_do_nothing(index_elements=[chats.c.id, chats.c.tenant])
    )


#: A counter's key: its user, its chat and the tenant they are of.
_COUNTER = [unread_counters.c.user_id, unread_counters.c.chat_id, unread_counters.c.tenant]


def apply_unread(conn: Connection, tenant: str, payload: UnreadCountPayload) -> dict[str, Any]:
    """Apply the payload's operation to ``tenant``'s counter in the caller's transaction and return
    the new count."""
    ensure_chat(conn, tenant, payload.chat_id)
    key = {"user_id": payload.user_id, "chat_id": payload.chat_id, "tenant": tenant}
    now = utcnow()
    if payload.op == "increment":
        stmt = pg_insert(unread_counters).values(**key, unread=payload.by, updated_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=_COUNTER,
            set_={"unread": unread_counters.c.unread + payload.by, "updated_at": now},
        )
    elif payload.op == "reset":
        stmt = _upsert_count(key, sa.literal(0), now, last_read_at=now)
    else:
        stmt = _upsert_count(key, _count_unread(tenant, payload.chat_id, payload.user_id), now)
    unread = conn.execute(stmt.returning(unread_counters.c.unread)).scalar_one()
    return {"chat_id": payload.chat_id, "unread": unread}


_ENSURE_CHATS = sa.text(
    "INSERT INTO chats (id, tenant) "
    "SELECT id, t FROM unnest(CAST(:ids AS text[]), CAST(:tenants AS text[])) AS c(id, t) ORDER BY id, t "
    "ON CONFLICT (id, tenant) DO NOTHING"
)
# Sorted, so two batches touching the same counters lock them in the same order (no deadlock).
_ADD_MANY = sa.text(
    """
    INSERT INTO unread_counters (user_id, chat_id, tenant, unread, updated_at)
    SELECT u, c, t, d, :now
    FROM unnest(CAST(:users AS text[]), CAST(:chats AS text[]), CAST(:tenants AS text[]),
                CAST(:deltas AS int[])) AS k(u, c, t, d)
    ORDER BY u, c, t
    ON CONFLICT (user_id, chat_id, tenant)
    DO UPDATE SET unread = unread_counters.unread + excluded.unread, updated_at = excluded.updated_at
    RETURNING user_id, chat_id, tenant, unread
    """
)


def apply_unread_many(conn: Connection, jobs: list[tuple[str, UnreadCountPayload]]) -> list[dict[str, Any]]:
    """``apply_unread`` for many jobs, each a (tenant, payload), in one transaction, each result the
    count right after its own job, as if they had run one by one in this order.

    Increments are summed per counter and written in one upsert; a batch with a reset or a recount
    runs its jobs one after the other instead.
    """
    if any(p.op != "increment" for _, p in jobs):
        return [apply_unread(conn, tenant, p) for tenant, p in jobs]
    totals: dict[tuple[str, str, str], int] = {}
    for tenant, p in jobs:
        key = (p.user_id, p.chat_id, tenant)
        totals[key] = totals.get(key, 0) + p.by
    new_chats = sorted({(p.chat_id, tenant) for tenant, p in jobs})
    conn.execute(_ENSURE_CHATS, {"ids": [c for c, _ in new_chats], "tenants": [t for _, t in new_chats]})
    keys = sorted(totals)
    rows = conn.execute(
        _ADD_MANY,
        {
            "now": utcnow(),
            "users": [u for u, _, _ in keys],
            "chats": [c for _, c, _ in keys],
            "tenants": [t for _, _, t in keys],
            "deltas": [totals[k] for k in keys],
        },
    ).all()
    final = {(r.user_id, r.chat_id, r.tenant): r.unread for r in rows}
    # Walk backwards from each counter's final value: a job's count excludes the later jobs' deltas.
    results: list[dict[str, Any]] = []
    for tenant, p in reversed(jobs):
        key = (p.user_id, p.chat_id, tenant)
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
        .on_conflict_do_update(index_elements=_COUNTER, set_=update)
    )


def _count_unread(tenant: str, chat_id: str, user_id: str) -> Any:
    """Messages in the tenant's chat after the user's last read, not written by the user."""
    counter = unread_counters.c
    last_read = (
        sa.select(counter.last_read_at)
        .where(counter.user_id == user_id, counter.chat_id == chat_id, counter.tenant == tenant)
        .scalar_subquery()
    )
    return (
        sa.select(sa.func.count())
        .select_from(chat_messages)
        .where(
            chat_messages.c.chat_id == chat_id,
            chat_messages.c.tenant == tenant,
            chat_messages.c.author_id.is_distinct_from(user_id),
            sa.or_(last_read.is_(None), chat_messages.c.created_at > last_read),
        )
        .scalar_subquery()
    )


def mark_read(conn: Connection, tenant: str, chat_id: str, user_id: str) -> dict[str, Any]:
    """The user has read the tenant's chat up to now."""
    ensure_chat(conn, tenant, chat_id)
    now = utcnow()
    key = {"user_id": user_id, "chat_id": chat_id, "tenant": tenant}
    conn.execute(_upsert_count(key, sa.literal(0), now, last_read_at=now))
    return {"chat_id": chat_id, "unread": 0, "tenant": tenant}


def unread_for_user(conn: Connection, user_id: str, tenant: str | None = None) -> dict[str, Any]:
    """The user's unread counts per chat, of ``tenant`` (None: of every tenant, each item naming its
    own)."""
    counter = unread_counters.c
    rows = conn.execute(
        sa.select(counter.chat_id, counter.unread, counter.tenant)
        .where(counter.user_id == user_id, counter.unread > 0, reached(unread_counters, tenant))
        .order_by(counter.updated_at.desc())
    ).all()
    items = [{"chat_id": r.chat_id, "unread": r.unread, "tenant": r.tenant} for r in rows]
    return {"items": items, "total": sum(i["unread"] for i in items)}
