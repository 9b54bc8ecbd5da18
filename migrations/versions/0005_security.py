"""security: key rotation and per-key rate limits; phone numbers sealed at rest with keyed hashes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 09:00:00.000000

Existing numbers are converted in place: outbound messages and opt-outs get a sealed copy and a
keyed hash instead of the clear number, `whatsapp_message` payloads of jobs and schedules have
their `to` sealed, and numbers inside error messages and the audit log are masked. Converting needs
the data key (JOBYARD_DATA_KEY); a database without phone numbers migrates without one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

from core.errors import DataKeyError
from core.platform.crypto import DataCipher, looks_sealed, mask_phones_in, resolve_data_key
from core.platform.settings import Settings, get_settings

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: Rows converted per statement, so a large table does not build one huge parameter list.
_BATCH = 1000
# What each sealed value is bound to (AES-GCM associated data): kept here, not imported, so this
# revision does not change when the code does; they match core.messaging.outbound, core.messaging.optouts and
# core.engine.job_types.payload_context.
_OUTBOUND_TO, _OUTBOUND_BODY_TO = "outbound_messages.to", "outbound_messages.body.to"
_OPT_OUT = "opt_outs.address"
_PAYLOAD_TO = "payload:whatsapp_message:to"
#: Postgres regex that any text holding a phone number matches (a cheap pre-filter).
_DIGITS = r"[0-9]{7}"


class _Key:
    """The data key, resolved only if some row needs sealing."""

    def __init__(self) -> None:
        self._cipher: DataCipher | None = None

    def __call__(self) -> DataCipher:
        if self._cipher is None:
            settings = op.get_context().config.attributes.get("settings") if op.get_context().config else None
            encoded = resolve_data_key(settings if isinstance(settings, Settings) else get_settings())
            if not encoded:
                raise DataKeyError(
                    "this database holds phone numbers, which migration 0005 encrypts: set JOBYARD_DATA_KEY "
                    "(generate one with `jobyard data-key generate`) and run the migration again"
                )
            self._cipher = DataCipher(encoded)
        return self._cipher


def _stream(conn: sa.Connection, statement: sa.TextClause) -> sa.CursorResult[Any]:
    """Rows read from a server-side cursor, a batch at a time."""
    return conn.execute(statement.execution_options(stream_results=True))


def _batches(rows: sa.CursorResult[Any]) -> Iterator[list[Any]]:
    while chunk := rows.fetchmany(_BATCH):
        yield list(chunk)


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("rate_limit_per_s", sa.Float(), nullable=True))
    op.add_column("api_keys", sa.Column("replaced_by", sa.UUID(), nullable=True))
    key = _Key()
    conn = op.get_bind()
    _outbound(conn, key)
    _opt_outs(conn, key)
    _payloads(conn, key, "jobs", "type")
    _payloads(conn, key, "schedules", "type")
    for table, column, kind in (
        ("jobs", "error", "jsonb"),
        ("job_attempts", "error", "jsonb"),
        ("outbound_messages", "error", "jsonb"),
        ("audit_log", "selection", "jsonb"),
        ("audit_log", "payload_patch", "jsonb"),
        ("opt_outs", "reason", "text"),
    ):
        _mask(conn, table, column, kind)


def _outbound(conn: sa.Connection, key: _Key) -> None:
    op.add_column("outbound_messages", sa.Column("to_sealed", sa.Text(), nullable=True))
    op.add_column("outbound_messages", sa.Column("to_hash", sa.Text(), nullable=True))
    rows = _stream(conn, sa.text("SELECT id, to_number, body FROM outbound_messages"))
    for chunk in _batches(rows):
        cipher = key()
        params = []
        for row in chunk:
            body = dict(row.body)
            if isinstance(body.get("to"), str):
                body["to"] = cipher.seal(body["to"], _OUTBOUND_BODY_TO)
            params.append(
                {
                    "id": row.id,
                    "sealed": cipher.seal(row.to_number, _OUTBOUND_TO),
                    "hash": cipher.lookup_hash(row.to_number),
                    "body": json.dumps(body),
                }
            )
        conn.execute(
            sa.text(
                "UPDATE outbound_messages SET to_sealed = :sealed, to_hash = :hash, "
                "body = CAST(:body AS jsonb) WHERE id = :id"
            ),
            params,
        )
    op.alter_column("outbound_messages", "to_sealed", nullable=False)
    op.alter_column("outbound_messages", "to_hash", nullable=False)
    op.drop_column("outbound_messages", "to_number")
    op.create_index(
        "ix_outbound_messages_to_hash",
        "outbound_messages",
        ["to_hash", sa.text("created_at DESC")],
        unique=False,
    )


def _opt_outs(conn: sa.Connection, key: _Key) -> None:
    op.add_column("opt_outs", sa.Column("address_hash", sa.Text(), nullable=True))
    op.add_column("opt_outs", sa.Column("address_sealed", sa.Text(), nullable=True))
    rows = _stream(conn, sa.text("SELECT channel, address FROM opt_outs"))
    for chunk in _batches(rows):
        cipher = key()
        conn.execute(
            sa.text(
                "UPDATE opt_outs SET address_hash = :hash, address_sealed = :sealed "
                "WHERE channel = :channel AND address = :address"
            ),
            [
                {
                    "channel": r.channel,
                    "address": r.address,
                    "hash": cipher.lookup_hash(r.address),
                    "sealed": cipher.seal(r.address, _OPT_OUT),
                }
                for r in chunk
            ],
        )
    op.drop_constraint("pk_opt_outs", "opt_outs", type_="primary")
    op.drop_column("opt_outs", "address")
    op.alter_column("opt_outs", "address_hash", nullable=False)
    op.alter_column("opt_outs", "address_sealed", nullable=False)
    op.create_primary_key("pk_opt_outs", "opt_outs", ["channel", "address_hash"])


def _payloads(conn: sa.Connection, key: _Key, table: str, type_column: str) -> None:
    """Seal `to` in the payloads of `whatsapp_message` jobs (or schedules) stored before 0005."""
    rows = _stream(
        conn,
        sa.text(
            f"SELECT id, payload FROM {table} WHERE {type_column} = 'whatsapp_message' "
            "AND jsonb_typeof(payload -> 'to') = 'string' AND payload ->> 'to' NOT LIKE 'jy1:%'"
        ),
    )
    for chunk in _batches(rows):
        cipher = key()
        conn.execute(
            sa.text(
                f"UPDATE {table} SET payload = jsonb_set(payload, '{{to}}', to_jsonb(CAST(:to AS text))) WHERE id = :id"
            ),
            [
                {"id": r.id, "to": cipher.seal(r.payload["to"], _PAYLOAD_TO)}
                for r in chunk
                if not looks_sealed(r.payload["to"])
            ],
        )


def _mask(conn: sa.Connection, table: str, column: str, kind: str) -> None:
    """Mask numbers written into text (an error message or a reason naming the recipient)."""
    rows = _stream(
        conn,
        sa.text(
            f"SELECT ctid::text AS rid, {column}::text AS doc FROM {table} WHERE {column}::text ~ '{_DIGITS}'"
        ),
    )
    for chunk in _batches(rows):
        params = [{"rid": r.rid, "doc": mask_phones_in(r.doc)} for r in chunk]
        changed = [p for p, r in zip(params, chunk, strict=True) if p["doc"] != r.doc]
        if changed:
            conn.execute(
                sa.text(f"UPDATE {table} SET {column} = CAST(:doc AS {kind}) WHERE ctid = CAST(:rid AS tid)"),
                changed,
            )


def downgrade() -> None:
    # Sealed numbers are not written back in clear: a downgrade keeps only their masked form's place.
    op.drop_index("ix_outbound_messages_to_hash", table_name="outbound_messages")
    op.add_column("outbound_messages", sa.Column("to_number", sa.Text(), nullable=True))
    op.execute("UPDATE outbound_messages SET to_number = to_sealed")
    op.alter_column("outbound_messages", "to_number", nullable=False)
    op.drop_column("outbound_messages", "to_hash")
    op.drop_column("outbound_messages", "to_sealed")
    op.drop_constraint("pk_opt_outs", "opt_outs", type_="primary")
    op.add_column("opt_outs", sa.Column("address", sa.Text(), nullable=True))
    op.execute("UPDATE opt_outs SET address = address_sealed")
    op.alter_column("opt_outs", "address", nullable=False)
    op.drop_column("opt_outs", "address_sealed")
    op.drop_column("opt_outs", "address_hash")
    op.create_primary_key("pk_opt_outs", "opt_outs", ["channel", "address"])
    op.drop_column("api_keys", "replaced_by")
    op.drop_column("api_keys", "rate_limit_per_s")
