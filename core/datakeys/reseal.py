"""What a data key rotation does to each table's rows: which rows still hold a value not under the
current key (found by content, so a rotation can stop and run again), and one batch of them moved,
in the caller's transaction, locked FOR UPDATE SKIP LOCKED. core/datakeys/rotation.py drives the batches.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection

from core.chats import tenant_llm as llm
from core.engine.job_types import job_types, payload_context
from core.errors import SealedValueError
from core.events.endpoints import secret_context
from core.messaging import numbers
from core.messaging.conversations import CUSTOMER_CONTEXT
from core.messaging.optouts import OPT_OUT_CONTEXT
from core.messaging.outbound import BODY_TO_CONTEXT, TO_CONTEXT
from core.platform.crypto import LEGACY_PREFIX, SEALED_PREFIX, KeyRing, key_id_of, key_label, looks_sealed
from core.platform.tables import (
    job_history,
    jobs,
    opt_outs,
    outbound_messages,
    schedules,
    tenant_llm,
    tenant_whatsapp,
    webhook_endpoints,
    whatsapp_conversations,
)

log = structlog.get_logger(__name__)


@dataclass
class Tally:
    """What one pass (or the whole rotation) did, per table."""

    moved: dict[str, int] = field(default_factory=dict)
    #: Rows whose sealed value does not open with any key of the ring: left as they are.
    unopenable: dict[str, int] = field(default_factory=dict)
    #: Keys (labels) that values named but this process does not hold.
    missing_key_ids: set[str] = field(default_factory=set)
    #: Keys (labels, with "(jy1)" for the older format, or "clear") values were moved from.
    from_key_ids: set[str] = field(default_factory=set)
    #: Opt-outs of a number already recorded under the current key: the older row was removed.
    merged_opt_outs: int = 0

    def add(self, table: str, moved: int = 0, unopenable: int = 0) -> None:
        self.moved[table] = self.moved.get(table, 0) + moved
        self.unopenable[table] = self.unopenable.get(table, 0) + unopenable


def _origin(value: str) -> str:
    """Where a value is moved from, for the report: its key (and format), or that it was in clear."""
    if not looks_sealed(value):
        return "clear"
    label = key_label(key_id_of(value) or "?")
    return f"{label} (jy1)" if value.startswith(LEGACY_PREFIX) else label


def _not_current(column: sa.ColumnElement[str], key_id: str) -> sa.ColumnElement[bool]:
    return sa.not_(column.startswith(f"{SEALED_PREFIX}{key_id}:", autoescape=True))


# -- payloads of jobs and schedules ------------------------------------------------------------


def _sealed_fields() -> dict[str, tuple[str, ...]]:
    return {name: jt.sealed_fields for name, jt in job_types().items() if jt.sealed_fields}


def _type_pending(
    table: sa.Table, type_name: str, fields: tuple[str, ...], key_id: str
) -> sa.ColumnElement[bool]:
    """Rows of one job type with a sealed field not yet under the current key."""
    return sa.and_(
        table.c.type == type_name,
        sa.or_(
            *(
                sa.and_(
                    sa.func.jsonb_typeof(table.c.payload[f]) == "string",
                    _not_current(table.c.payload[f].astext, key_id),
                )
                for f in fields
            )
        ),
    )


def _payload_pending(table: sa.Table, key_id: str) -> sa.ColumnElement[bool]:
    clauses = [_type_pending(table, name, fields, key_id) for name, fields in _sealed_fields().items()]
    return sa.or_(*clauses) if clauses else sa.false()


_UPDATE_PAYLOADS = """
    UPDATE {table} SET payload = u.payload::jsonb
    FROM unnest(CAST(:ids AS uuid[]), CAST(:payloads AS text[])) AS u(id, payload)
    WHERE {table}.id = u.id
"""


def _payload_batch(
    conn: Connection, ring: KeyRing, after: Any, limit: int, tally: Tally, *, table: sa.Table, type_name: str
) -> tuple[Any, int]:
    """One batch of one job type's rows, newest first by (created_at, id): the walk follows the
    (type, created_at) index, so a type with few rows costs little in a table of millions."""
    fields = job_types()[type_name].sealed_fields
    c = table.c
    query = sa.select(c.id, c.created_at, c.payload).where(
        _type_pending(table, type_name, fields, ring.key_id)
    )
    if after is not None:
        query = query.where(sa.tuple_(c.created_at, c.id) < sa.tuple_(*after))
    rows = conn.execute(
        query.order_by(c.created_at.desc(), c.id.desc()).limit(limit).with_for_update(skip_locked=True)
    ).all()
    ids: list[uuid.UUID] = []
    payloads: list[str] = []
    unopenable = 0
    for row in rows:
        payload = dict(row.payload)
        try:
            for f in fields:
                value = payload.get(f)
                if not isinstance(value, str) or ring.is_current(value):
                    continue
                context = payload_context(type_name, f)
                clear = ring.open(value, context) if looks_sealed(value) else value
                payload[f] = ring.seal(clear, context)
                tally.from_key_ids.add(_origin(value))
        except SealedValueError as exc:
            _unopenable(exc, tally, table.name, row.id)
            unopenable += 1
            continue
        ids.append(row.id)
        payloads.append(msgspec.json.encode(payload).decode())
    if ids:
        conn.execute(sa.text(_UPDATE_PAYLOADS.format(table=table.name)), {"ids": ids, "payloads": payloads})
    tally.add(table.name, len(ids), unopenable)
    last = rows[-1] if rows else None
    return ((last.created_at, last.id) if last is not None else None), len(rows)


def _unopenable(exc: SealedValueError, tally: Tally, table: str, row_id: Any) -> None:
    if exc.key_id is not None and not exc.key_held:
        tally.missing_key_ids.add(key_label(exc.key_id))
    log.warning("rotation_value_unopenable", table=table, row=str(row_id), error=str(exc))


# -- opt-outs ----------------------------------------------------------------------------------


def _opt_out_pending(key_id: str) -> sa.ColumnElement[bool]:
    return sa.or_(opt_outs.c.address_key_id != key_id, _not_current(opt_outs.c.address_sealed, key_id))


def _opt_out_batch(conn: Connection, ring: KeyRing, after: Any, limit: int, tally: Tally) -> tuple[Any, int]:
    """Re-hash and re-seal opt-outs. A number one tenant recorded under both an older key and the
    current one (a STOP that came in during the rotation, or two older keys) keeps one row: the older
    rows go, so the unique (tenant, channel, address_hash) never trips."""
    oo = opt_outs.c
    query = sa.select(oo.tenant, oo.channel, oo.address_hash, oo.address_sealed).where(
        _opt_out_pending(ring.key_id)
    )
    if after is not None:
        query = query.where(sa.tuple_(oo.tenant, oo.channel, oo.address_hash) > sa.tuple_(*after))
    rows = conn.execute(
        query.order_by(oo.tenant, oo.channel, oo.address_hash).limit(limit).with_for_update(skip_locked=True)
    ).all()
    moves: list[tuple[Any, str, str, str]] = []  # (row, new hash, new sealed, origin)
    unopenable = 0
    for row in rows:
        try:
            clear = ring.open(row.address_sealed, OPT_OUT_CONTEXT)
        except SealedValueError as exc:
            _unopenable(exc, tally, "opt_outs", (row.tenant, row.channel, row.address_hash))
            unopenable += 1
            continue
        moves.append(
            (
                row,
                ring.lookup_hash(clear),
                ring.seal(clear, OPT_OUT_CONTEXT),
                _origin(row.address_sealed),
            )
        )
    # A row whose hash stays (already under the current key, older format) keeps its place first.
    moves.sort(key=lambda m: m[0].address_hash != m[1])
    targets = [m[1] for m in moves if m[0].address_hash != m[1]]
    taken = {
        (r.tenant, r.channel, r.address_hash)
        for r in conn.execute(
            sa.select(oo.tenant, oo.channel, oo.address_hash)
            .where(oo.address_hash.in_(targets))
            .with_for_update()
        )
    }
    updates: list[dict[str, Any]] = []
    deletes: list[dict[str, Any]] = []
    for row, new_hash, sealed, origin in moves:
        tally.from_key_ids.add(origin)
        key = {"b_tenant": row.tenant, "b_channel": row.channel, "b_hash": row.address_hash}
        if new_hash != row.address_hash and (row.tenant, row.channel, new_hash) in taken:
            deletes.append(key)
            continue
        taken.add((row.tenant, row.channel, new_hash))
        updates.append({**key, "b_new_hash": new_hash, "b_sealed": sealed})
    where = sa.and_(
        oo.tenant == sa.bindparam("b_tenant"),
        oo.channel == sa.bindparam("b_channel"),
        oo.address_hash == sa.bindparam("b_hash"),
    )
    if updates:
        conn.execute(
            sa.update(opt_outs)
            .where(where)
            .values(
                address_hash=sa.bindparam("b_new_hash"),
                address_sealed=sa.bindparam("b_sealed"),
                address_key_id=ring.key_id,
            ),
            updates,
        )
    if deletes:
        conn.execute(sa.delete(opt_outs).where(where), deletes)
    tally.merged_opt_outs += len(deletes)
    tally.add("opt_outs", len(updates) + len(deletes), unopenable)
    last = rows[-1] if rows else None
    return ((last.tenant, last.channel, last.address_hash) if last is not None else None), len(rows)


# -- tenants' WhatsApp numbers -----------------------------------------------------------------


def _number_pending(key_id: str) -> sa.ColumnElement[bool]:
    tw = tenant_whatsapp.c
    return sa.or_(
        tw.key_id != key_id,
        *(sa.and_(tw[column].isnot(None), _not_current(tw[column], key_id)) for column in numbers.SEALED),
    )


def _number_batch(conn: Connection, ring: KeyRing, after: Any, limit: int, tally: Tally) -> tuple[Any, int]:
    """Re-seal the secrets of tenants' own WhatsApp numbers (token, app secret, verify token)."""
    tw = tenant_whatsapp.c
    query = sa.select(tenant_whatsapp).where(_number_pending(ring.key_id))
    if after is not None:
        query = query.where(tw.tenant > after)
    rows = conn.execute(query.order_by(tw.tenant).limit(limit).with_for_update(skip_locked=True)).all()
    moved = unopenable = 0
    for row in rows:
        values: dict[str, Any] = {}
        try:
            for column in numbers.SEALED:
                sealed = row._mapping[column]
                if sealed is None:
                    continue
                context = numbers.sealing_context(column, row.tenant)
                values[column] = ring.seal(ring.open(sealed, context), context)
                tally.from_key_ids.add(_origin(sealed))
        except SealedValueError as exc:
            _unopenable(exc, tally, "tenant_whatsapp", row.tenant)
            unopenable += 1
            continue
        conn.execute(
            sa.update(tenant_whatsapp).where(tw.tenant == row.tenant).values(key_id=ring.key_id, **values)
        )
        moved += 1
    tally.add("tenant_whatsapp", moved, unopenable)
    return (rows[-1].tenant if rows else None), len(rows)


# -- tenants' LLM providers --------------------------------------------------------------------


def _llm_pending(key_id: str) -> sa.ColumnElement[bool]:
    """A chain whose key id is not the current key's, or that holds an api key sealed otherwise."""
    element = (
        sa.func.jsonb_array_elements(tenant_llm.c.providers).table_valued("value").render_derived(name="p")
    )
    sealed = element.c.value.op("->>")("api_key_sealed")
    stale = sa.exists(
        sa.select(1).select_from(element).where(sealed.isnot(None), _not_current(sealed, key_id))
    )
    return sa.or_(tenant_llm.c.key_id != key_id, stale)


def _llm_batch(conn: Connection, ring: KeyRing, after: Any, limit: int, tally: Tally) -> tuple[Any, int]:
    """Re-seal the api keys of tenants' own LLM providers. ``updated_at`` stays: the clear keys are
    the same, so the workers' cached chains stay good."""
    tl = tenant_llm.c
    query = sa.select(tenant_llm).where(_llm_pending(ring.key_id))
    if after is not None:
        query = query.where(tl.tenant > after)
    rows = conn.execute(query.order_by(tl.tenant).limit(limit).with_for_update(skip_locked=True)).all()
    moved = unopenable = 0
    for row in rows:
        providers = []
        try:
            for provider in row.providers:
                sealed = provider.get("api_key_sealed")
                if sealed is not None:
                    context = llm.sealing_context(row.tenant, provider["name"])
                    provider = {**provider, "api_key_sealed": ring.seal(ring.open(sealed, context), context)}
                    tally.from_key_ids.add(_origin(sealed))
                providers.append(provider)
        except SealedValueError as exc:
            _unopenable(exc, tally, "tenant_llm", row.tenant)
            unopenable += 1
            continue
        conn.execute(
            sa.update(tenant_llm)
            .where(tl.tenant == row.tenant)
            .values(key_id=ring.key_id, providers=providers)
        )
        moved += 1
    tally.add("tenant_llm", moved, unopenable)
    return (rows[-1].tenant if rows else None), len(rows)


# -- outbound messages -------------------------------------------------------------------------


def _outbound_pending(key_id: str) -> sa.ColumnElement[bool]:
    om = outbound_messages.c
    return sa.or_(
        om.to_key_id != key_id,
        _not_current(om.to_sealed, key_id),
        sa.and_(sa.func.jsonb_typeof(om.body["to"]) == "string", _not_current(om.body["to"].astext, key_id)),
    )


_UPDATE_OUTBOUND = sa.text(
    """
    UPDATE outbound_messages SET to_sealed = u.sealed, to_hash = u.hash, to_key_id = :key_id,
                                 body = u.body::jsonb
    FROM unnest(CAST(:ids AS uuid[]), CAST(:sealed AS text[]), CAST(:hashes AS text[]),
                CAST(:bodies AS text[])) AS u(id, sealed, hash, body)
    WHERE outbound_messages.id = u.id
    """
)


def _outbound_batch(conn: Connection, ring: KeyRing, after: Any, limit: int, tally: Tally) -> tuple[Any, int]:
    om = outbound_messages.c
    query = sa.select(om.id, om.to_sealed, om.body).where(_outbound_pending(ring.key_id))
    if after is not None:
        query = query.where(om.id > after)
    rows = conn.execute(query.order_by(om.id).limit(limit).with_for_update(skip_locked=True)).all()
    params: dict[str, list[Any]] = {"ids": [], "sealed": [], "hashes": [], "bodies": []}
    unopenable = 0
    for row in rows:
        body = dict(row.body)
        try:
            clear = ring.open(row.to_sealed, TO_CONTEXT)
            if isinstance(body.get("to"), str):
                to = body["to"]
                body["to"] = ring.seal(
                    ring.open(to, BODY_TO_CONTEXT) if looks_sealed(to) else to, BODY_TO_CONTEXT
                )
        except SealedValueError as exc:
            _unopenable(exc, tally, "outbound_messages", row.id)
            unopenable += 1
            continue
        tally.from_key_ids.add(_origin(row.to_sealed))
        params["ids"].append(row.id)
        params["sealed"].append(ring.seal(clear, TO_CONTEXT))
        params["hashes"].append(ring.lookup_hash(clear))
        params["bodies"].append(msgspec.json.encode(body).decode())
    if params["ids"]:
        conn.execute(_UPDATE_OUTBOUND, {**params, "key_id": ring.key_id})
    tally.add("outbound_messages", len(params["ids"]), unopenable)
    return (rows[-1].id if rows else None), len(rows)


# -- customers' WhatsApp conversations ---------------------------------------------------------


def _conversation_pending(key_id: str) -> sa.ColumnElement[bool]:
    wc = whatsapp_conversations.c
    return sa.or_(wc.customer_key_id != key_id, _not_current(wc.customer_sealed, key_id))


def _conversation_batch(
    conn: Connection, ring: KeyRing, after: Any, limit: int, tally: Tally
) -> tuple[Any, int]:
    """Re-hash and re-seal conversations' customer numbers. A conversation is found under any key of
    the ring, so a customer has one row whatever key it was made under: no two rows meet."""
    wc = whatsapp_conversations.c
    position = (wc.tenant, wc.phone_number_id, wc.customer_hash)
    query = sa.select(*position, wc.customer_sealed).where(_conversation_pending(ring.key_id))
    if after is not None:
        query = query.where(sa.tuple_(*position) > sa.tuple_(*after))
    rows = conn.execute(query.order_by(*position).limit(limit).with_for_update(skip_locked=True)).all()
    moved = unopenable = 0
    for row in rows:
        try:
            clear = ring.open(row.customer_sealed, CUSTOMER_CONTEXT)
        except SealedValueError as exc:
            _unopenable(exc, tally, "whatsapp_conversations", (row.tenant, row.customer_hash))
            unopenable += 1
            continue
        tally.from_key_ids.add(_origin(row.customer_sealed))
        conn.execute(
            sa.update(whatsapp_conversations)
            .where(
                wc.tenant == row.tenant,
                wc.phone_number_id == row.phone_number_id,
                wc.customer_hash == row.customer_hash,
            )
            .values(
                customer_hash=ring.lookup_hash(clear),
                customer_sealed=ring.seal(clear, CUSTOMER_CONTEXT),
                customer_key_id=ring.key_id,
            )
        )
        moved += 1
    tally.add("whatsapp_conversations", moved, unopenable)
    last = rows[-1] if rows else None
    return ((last.tenant, last.phone_number_id, last.customer_hash) if last is not None else None), len(rows)


# -- webhook endpoints' secrets ------------------------------------------------------------------

_WEBHOOK_SEALED = ("secret_sealed", "previous_secret_sealed")


def _webhook_pending(key_id: str) -> sa.ColumnElement[bool]:
    we = webhook_endpoints.c
    return sa.or_(
        we.key_id != key_id,
        *(sa.and_(we[column].isnot(None), _not_current(we[column], key_id)) for column in _WEBHOOK_SEALED),
    )


def _webhook_batch(conn: Connection, ring: KeyRing, after: Any, limit: int, tally: Tally) -> tuple[Any, int]:
    """Re-seal webhook endpoints' signing secrets (the current one, and the previous one in a grace)."""
    we = webhook_endpoints.c
    query = sa.select(webhook_endpoints).where(_webhook_pending(ring.key_id))
    if after is not None:
        query = query.where(we.id > after)
    rows = conn.execute(query.order_by(we.id).limit(limit).with_for_update(skip_locked=True)).all()
    moved = unopenable = 0
    for row in rows:
        values: dict[str, Any] = {}
        context = secret_context(row.id)
        try:
            for column in _WEBHOOK_SEALED:
                sealed = row._mapping[column]
                if sealed is not None:
                    values[column] = ring.seal(ring.open(sealed, context), context)
                    tally.from_key_ids.add(_origin(sealed))
        except SealedValueError as exc:
            _unopenable(exc, tally, "webhook_endpoints", row.id)
            unopenable += 1
            continue
        conn.execute(sa.update(webhook_endpoints).where(we.id == row.id).values(key_id=ring.key_id, **values))
        moved += 1
    tally.add("webhook_endpoints", moved, unopenable)
    return (rows[-1].id if rows else None), len(rows)


# -- every table ------------------------------------------------------------------------------

#: Moves one batch of a table's rows after a keyset position (None: from the start); returns the
#: position of its last row and how many rows it looked at.
Batch = Callable[[Connection, KeyRing, Any, int, Tally], tuple[Any, int]]


def tables() -> list[tuple[str, Batch]]:
    """Every table that holds a sealed value or a keyed hash, with its batch; job payloads one job
    type (with sealed fields) at a time."""
    walks: list[tuple[str, Batch]] = []
    # A job that moves to the history during the walk is found again by the history's walk, which
    # comes after.
    for table in (jobs, schedules, job_history):
        for name in sorted(_sealed_fields()):
            walks.append((table.name, functools.partial(_payload_batch, table=table, type_name=name)))
    return [
        *walks,
        ("opt_outs", _opt_out_batch),
        ("outbound_messages", _outbound_batch),
        ("tenant_whatsapp", _number_batch),
        ("tenant_llm", _llm_batch),
        ("whatsapp_conversations", _conversation_batch),
        ("webhook_endpoints", _webhook_batch),
    ]


def pending_counts(conn: Connection, ring: KeyRing) -> dict[str, int]:
    """Per table, the rows holding a value not yet under the current key (or in the older format)."""
    key_id = ring.key_id
    counts = {
        "jobs": sa.select(sa.func.count()).select_from(jobs).where(_payload_pending(jobs, key_id)),
        "job_history": sa.select(sa.func.count())
        .select_from(job_history)
        .where(_payload_pending(job_history, key_id)),
        "schedules": sa.select(sa.func.count())
        .select_from(schedules)
        .where(_payload_pending(schedules, key_id)),
        "opt_outs": sa.select(sa.func.count()).select_from(opt_outs).where(_opt_out_pending(key_id)),
        "outbound_messages": sa.select(sa.func.count())
        .select_from(outbound_messages)
        .where(_outbound_pending(key_id)),
        "tenant_whatsapp": sa.select(sa.func.count())
        .select_from(tenant_whatsapp)
        .where(_number_pending(key_id)),
        "tenant_llm": sa.select(sa.func.count()).select_from(tenant_llm).where(_llm_pending(key_id)),
        "whatsapp_conversations": sa.select(sa.func.count())
        .select_from(whatsapp_conversations)
        .where(_conversation_pending(key_id)),
        "webhook_endpoints": sa.select(sa.func.count())
        .select_from(webhook_endpoints)
        .where(_webhook_pending(key_id)),
    }
    return {name: int(conn.execute(query).scalar_one()) for name, query in counts.items()}
