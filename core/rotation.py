"""`jobyard data-key rotate`: every sealed value and keyed hash moved under the current data key, in
short batches, while the farm runs.

Where they live: the sealed fields of job payloads (every state, dead letters included) and of
schedule payloads, opt-outs (sealed number, hash and its key id) and outbound messages (sealed
recipient, hash and its key id, and the `to` of the stored request body). Nothing else holds one:
error texts and audit entries hold numbers masked, chats hold no numbers.

Each batch is one short transaction that locks its rows with FOR UPDATE SKIP LOCKED: a row a worker
holds right now is passed over (never waited for) and taken on the next pass, so enqueues and
claims are never blocked behind a rotation. What is still to move is found by its content (not
under the current key, or in the older format), so a rotation stopped half-way simply runs again,
and running it twice changes nothing the second time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection

from core import audit
from core.crypto import (
    LEGACY_PREFIX,
    SEALED_PREFIX,
    KeyRing,
    SealedValueError,
    key_id_of,
    key_label,
    looks_sealed,
)
from core.db import transaction
from core.job_types import job_types, payload_context
from core.models import jobs, opt_outs, outbound_messages, schedules
from core.optouts import OPT_OUT_CONTEXT
from core.outbound import BODY_TO_CONTEXT, TO_CONTEXT
from core.settings import Settings

log = structlog.get_logger(__name__)

#: Rows per transaction: small enough that a batch's locks last milliseconds, large enough that
#: 100,000 values move in well under a minute.
BATCH_SIZE = 500
#: Full passes at most: a pass passes over rows locked by running work; the next one takes them.
MAX_PASSES = 5
#: Pause between passes, so the work that held the skipped rows can finish.
PASS_PAUSE_S = 1.0

#: Called after each batch with the number of rows it handled.
Progress = Callable[[int], object]


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


@dataclass(frozen=True, slots=True)
class Report:
    key_id: str
    moved: dict[str, int]
    unopenable: dict[str, int]
    missing_key_ids: list[str]
    from_key_ids: list[str]
    merged_opt_outs: int
    #: Values still not under the current key when the rotation ended (unopenable ones included).
    remaining: int
    passes: int
    audit_id: uuid.UUID


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


def _payload_pending(table: sa.Table, key_id: str) -> sa.ColumnElement[bool]:
    clauses = [
        sa.and_(
            table.c.type == name,
            sa.func.jsonb_typeof(table.c.payload[f]) == "string",
            _not_current(table.c.payload[f].astext, key_id),
        )
        for name, fields in _sealed_fields().items()
        for f in fields
    ]
    return sa.or_(*clauses) if clauses else sa.false()


_UPDATE_PAYLOADS = """
    UPDATE {table} SET payload = u.payload::jsonb
    FROM unnest(CAST(:ids AS uuid[]), CAST(:payloads AS text[])) AS u(id, payload)
    WHERE {table}.id = u.id
"""


def _payload_batch(
    conn: Connection, ring: KeyRing, table: sa.Table, after: Any, limit: int, tally: Tally
) -> tuple[Any, int]:
    fields = _sealed_fields()
    query = sa.select(table.c.id, table.c.type, table.c.payload).where(_payload_pending(table, ring.key_id))
    if after is not None:
        query = query.where(table.c.id > after)
    rows = conn.execute(query.order_by(table.c.id).limit(limit).with_for_update(skip_locked=True)).all()
    ids: list[uuid.UUID] = []
    payloads: list[str] = []
    unopenable = 0
    for row in rows:
        payload = dict(row.payload)
        try:
            for f in fields.get(row.type, ()):
                value = payload.get(f)
                if not isinstance(value, str) or ring.is_current(value):
                    continue
                context = payload_context(row.type, f)
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
    return (rows[-1].id if rows else None), len(rows)


def _unopenable(exc: SealedValueError, tally: Tally, table: str, row_id: Any) -> None:
    if exc.key_id is not None and not exc.key_held:
        tally.missing_key_ids.add(key_label(exc.key_id))
    log.warning("rotation_value_unopenable", table=table, row=str(row_id), error=str(exc))


# -- opt-outs ----------------------------------------------------------------------------------


def _opt_out_pending(key_id: str) -> sa.ColumnElement[bool]:
    return sa.or_(opt_outs.c.address_key_id != key_id, _not_current(opt_outs.c.address_sealed, key_id))


def _opt_out_batch(conn: Connection, ring: KeyRing, after: Any, limit: int, tally: Tally) -> tuple[Any, int]:
    """Re-hash and re-seal opt-outs. A number recorded under both an older key and the current one
    (a STOP that came in during the rotation, or two older keys) keeps one row: the older rows go,
    so the unique (channel, address_hash) never trips."""
    oo = opt_outs.c
    query = sa.select(oo.channel, oo.address_hash, oo.address_sealed).where(_opt_out_pending(ring.key_id))
    if after is not None:
        query = query.where(sa.tuple_(oo.channel, oo.address_hash) > sa.tuple_(*after))
    rows = conn.execute(
        query.order_by(oo.channel, oo.address_hash).limit(limit).with_for_update(skip_locked=True)
    ).all()
    moves: list[tuple[Any, str, str, str]] = []  # (row, new hash, new sealed, origin)
    unopenable = 0
    for row in rows:
        try:
            clear = ring.open(row.address_sealed, OPT_OUT_CONTEXT)
        except SealedValueError as exc:
            _unopenable(exc, tally, "opt_outs", (row.channel, row.address_hash))
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
        (r.channel, r.address_hash)
        for r in conn.execute(
            sa.select(oo.channel, oo.address_hash).where(oo.address_hash.in_(targets)).with_for_update()
        )
    }
    updates: list[dict[str, Any]] = []
    deletes: list[dict[str, Any]] = []
    for row, new_hash, sealed, origin in moves:
        tally.from_key_ids.add(origin)
        key = {"b_channel": row.channel, "b_hash": row.address_hash}
        if new_hash != row.address_hash and (row.channel, new_hash) in taken:
            deletes.append(key)
            continue
        taken.add((row.channel, new_hash))
        updates.append({**key, "b_new_hash": new_hash, "b_sealed": sealed})
    where = sa.and_(oo.channel == sa.bindparam("b_channel"), oo.address_hash == sa.bindparam("b_hash"))
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
    return ((last.channel, last.address_hash) if last is not None else None), len(rows)


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


# -- the rotation ------------------------------------------------------------------------------

Batch = Callable[[Connection, KeyRing, Any, int, Tally], tuple[Any, int]]


def _tables() -> list[tuple[str, Batch]]:
    return [
        ("jobs", lambda c, r, a, n, t: _payload_batch(c, r, jobs, a, n, t)),
        ("schedules", lambda c, r, a, n, t: _payload_batch(c, r, schedules, a, n, t)),
        ("opt_outs", _opt_out_batch),
        ("outbound_messages", _outbound_batch),
    ]


def pending_counts(conn: Connection, ring: KeyRing) -> dict[str, int]:
    """Per table, the rows holding a value not yet under the current key (or in the older format)."""
    key_id = ring.key_id
    counts = {
        "jobs": sa.select(sa.func.count()).select_from(jobs).where(_payload_pending(jobs, key_id)),
        "schedules": sa.select(sa.func.count())
        .select_from(schedules)
        .where(_payload_pending(schedules, key_id)),
        "opt_outs": sa.select(sa.func.count()).select_from(opt_outs).where(_opt_out_pending(key_id)),
        "outbound_messages": sa.select(sa.func.count())
        .select_from(outbound_messages)
        .where(_outbound_pending(key_id)),
    }
    return {name: int(conn.execute(query).scalar_one()) for name, query in counts.items()}


def _pass(
    settings: Settings, ring: KeyRing, batch_size: int, tally: Tally, progress: Progress | None
) -> None:
    for name, batch in _tables():
        after: Any = None
        while True:
            try:
                with transaction(settings) as conn:
                    next_after, seen = batch(conn, ring, after, batch_size, tally)
            except sa.exc.IntegrityError as exc:
                # A row written under the current key meanwhile (an opt-out recorded this instant):
                # this batch is left for the next pass, which sees that row.
                log.warning("rotation_batch_conflict", table=name, error=str(exc.orig))
                break
            if progress is not None and seen:
                progress(seen)
            if seen < batch_size:
                break
            after = next_after


def rotate(
    settings: Settings,
    ring: KeyRing,
    *,
    actor: str,
    reason: str,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
    max_passes: int = MAX_PASSES,
) -> Report:
    """Move every sealed value and keyed hash under ``ring``'s current key; see the module's doc.

    A value that no key of the ring opens is left as it is and reported (with the key ids that are
    missing). An audit entry records what was done, even when the rotation is stopped part-way.
    """
    total = Tally()
    remaining = -1
    passes = 0
    try:
        while passes < max_passes:
            passes += 1
            this_pass = Tally()
            _pass(settings, ring, batch_size, this_pass, progress)
            _merge(total, this_pass)
            with transaction(settings) as conn:
                remaining = sum(pending_counts(conn, ring).values())
            if remaining <= sum(this_pass.unopenable.values()):
                break  # nothing left but what cannot be opened
            time.sleep(PASS_PAUSE_S)
    finally:
        with transaction(settings) as conn:
            audit_id = audit.record(
                conn,
                actor=actor,
                action="data_key_rotate",
                selection={
                    "key": key_label(ring.key_id),
                    "from_key_ids": sorted(total.from_key_ids),
                    "missing_key_ids": sorted(total.missing_key_ids),
                },
                reason=reason,
                counts={
                    **{f"moved_{t}": n for t, n in total.moved.items()},
                    "merged_opt_outs": total.merged_opt_outs,
                    "unopenable": sum(total.unopenable.values()),
                    "remaining": remaining,
                },
            )
    report = Report(
        key_id=ring.key_id,
        moved=total.moved,
        unopenable=total.unopenable,
        missing_key_ids=sorted(total.missing_key_ids),
        from_key_ids=sorted(total.from_key_ids),
        merged_opt_outs=total.merged_opt_outs,
        remaining=remaining,
        passes=passes,
        audit_id=audit_id,
    )
    log.info(
        "data_key_rotated", key_id=ring.key_id, moved=total.moved, remaining=remaining, audit_id=str(audit_id)
    )
    return report


def _merge(total: Tally, one: Tally) -> None:
    for table, n in one.moved.items():
        total.add(table, moved=n)
    # What cannot be opened is the same rows on every pass: the last pass's count is the truth.
    total.unopenable = dict(one.unopenable)
    total.missing_key_ids |= one.missing_key_ids
    total.from_key_ids |= one.from_key_ids
    total.merged_opt_outs += one.merged_opt_outs
