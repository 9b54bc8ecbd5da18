"""The dead letters: jobs in status `dead` (rows of `jobs`, no separate table), how a filter or a
list of ids selects them, and the reads and dry runs of the dead-letter queue.

Redrive and discard, which change them, are in core/engine/redrive.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.engine import Connection

from core.engine.job_types import FieldError, get_job_type, open_payload, validate_payload
from core.engine.jobs import Job, JobStatus
from core.errors import DataKeyMismatch, InvalidPayloads, InvalidSelection, UnknownJobType
from core.platform.pagination import page, split_page
from core.platform.tables import jobs
from core.platform.tenants import reached

#: Rows read per round trip when resolving a selection.
FETCH_SIZE = 500
#: Jobs shown back by a dry run, a redrive or a discard.
PREVIEW_SIZE = 5
#: Bad fields reported when a patch breaks payloads; a patch that breaks thousands of jobs breaks
#: them the same way, and the response must stay readable.
MAX_REPORTED_ERRORS = 100


class DeadFilter(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Which dead letters: every given field must match."""

    type: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    #: The last error's code (``error->>'code'``).
    error_code: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    #: Case-insensitive text searched in the last error's message and in the payload.
    q: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    #: Bounds on when the job died (``finished_at``): since <= finished_at < until.
    since: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    until: Annotated[datetime, msgspec.Meta(tz=True)] | None = None


@dataclass(frozen=True, slots=True)
class Selection:
    """The dead letters an action applies to: explicit ids, or a filter (exactly one of them),
    among ``tenant``'s jobs (the caller's reach; None: every tenant's)."""

    ids: tuple[uuid.UUID, ...] | None = None
    filter: DeadFilter | None = None
    tenant: str | None = None

    def __post_init__(self) -> None:
        if (self.ids is None) == (self.filter is None):
            raise InvalidSelection("give either ids or a filter")
        if self.ids is not None and not self.ids:
            raise InvalidSelection("ids must not be empty")

    def as_json(self) -> dict[str, Any]:
        """The selection as the audit log stores it (the tenant has a column of its own)."""
        if self.ids is not None:
            return {"ids": [str(i) for i in self.ids]}
        return {"filter": msgspec.to_builtins(self.filter)}


@dataclass(frozen=True, slots=True)
class Outcome:
    matched: int
    #: Jobs redriven or discarded; 0 on a dry run.
    changed: int
    #: None on a dry run, which writes no audit row.
    audit_id: uuid.UUID | None
    #: The first few matched jobs as they are now (dry run) or after the change.
    preview: list[Job]


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply a JSON merge patch (RFC 7386): objects merge recursively, null deletes a key, anything
    else replaces. ``target`` is not modified."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def text_matches(error: Any, payload: Any, q: str) -> sa.ColumnElement[bool]:
    """``q``, case-insensitive, in the error's message or anywhere in the payload's JSON text."""
    pattern = f"%{_escape_like(q)}%"
    return sa.or_(
        error["message"].astext.ilike(pattern, escape="\\"),
        sa.cast(payload, sa.Text).ilike(pattern, escape="\\"),
    )


def any_id(ids: Sequence[uuid.UUID]) -> sa.ColumnElement[bool]:
    # One array parameter rather than one parameter per id (Postgres allows 65,535 per statement).
    return jobs.c.id == sa.any_(sa.literal(list(ids), ARRAY(UUID(as_uuid=True))))


def _filter_where(f: DeadFilter) -> list[sa.ColumnElement[bool]]:
    where = []
    if f.type:
        where.append(jobs.c.type == f.type)
    if f.error_code:
        where.append(jobs.c.error["code"].astext == f.error_code)
    if f.q:
        where.append(text_matches(jobs.c.error, jobs.c.payload, f.q))
    if f.since:
        where.append(jobs.c.finished_at >= f.since)
    if f.until:
        where.append(jobs.c.finished_at < f.until)
    return where


def _dead(tenant: str | None) -> list[sa.ColumnElement[bool]]:
    """Dead letters, of ``tenant`` (every tenant's for None)."""
    return [jobs.c.status == JobStatus.DEAD, reached(jobs, tenant)]


def _where(selection: Selection) -> list[sa.ColumnElement[bool]]:
    dead = _dead(selection.tenant)
    if selection.ids is not None:
        return [*dead, any_id(selection.ids)]
    assert selection.filter is not None
    return [*dead, *_filter_where(selection.filter)]


def newest_first(query: sa.Select[Any]) -> sa.Select[Any]:
    return query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc())


# -- reads and dry runs ------------------------------------------------------------------------


def list_dead(
    conn: Connection, f: DeadFilter, limit: int, cursor: str | None, tenant: str | None = None
) -> tuple[list[Job], str | None]:
    """Dead letters of ``tenant`` (None: every tenant) matching ``f``, newest first, with their last
    error."""
    query = sa.select(jobs).where(*_dead(tenant), *_filter_where(f))
    rows, next_cursor = split_page(
        conn.execute(page(query, jobs.c.created_at, jobs.c.id, limit, cursor)).all(), limit
    )
    return [Job.from_row(r) for r in rows], next_cursor


def groups(conn: Connection, tenant: str | None = None) -> list[tuple[str, str | None, int]]:
    """(type, error code, how many) over the dead letters of ``tenant`` (None: all), largest groups
    first: what is wrong."""
    code = jobs.c.error["code"].astext
    query = (
        sa.select(jobs.c.type, code.label("code"), sa.func.count().label("n"))
        .where(*_dead(tenant))
        .group_by(jobs.c.type, code)
        .order_by(sa.func.count().desc(), jobs.c.type, code)
    )
    return [(r.type, r.code, r.n) for r in conn.execute(query)]


def count(conn: Connection, selection: Selection) -> int:
    query = sa.select(sa.func.count()).select_from(jobs).where(*_where(selection))
    return int(conn.execute(query).scalar_one())


def preview(conn: Connection, selection: Selection, limit: int = PREVIEW_SIZE) -> list[Job]:
    rows = conn.execute(newest_first(sa.select(jobs).where(*_where(selection))).limit(limit))
    return [Job.from_row(r) for r in rows]


def dry_run_redrive(
    conn: Connection, selection: Selection, payload_patch: dict[str, Any] | None = None
) -> Outcome:
    """What a redrive would match; raises InvalidPayloads as the redrive would. Changes nothing."""
    matched = len(resolve(conn, selection, payload_patch, check=True))
    return Outcome(matched, 0, None, preview(conn, selection))


def dry_run_discard(conn: Connection, selection: Selection) -> Outcome:
    return Outcome(count(conn, selection), 0, None, preview(conn, selection))


def patched(
    job_type: str, payload: dict[str, Any], patch: dict[str, Any] | None
) -> tuple[Any, list[FieldError]]:
    """The payload after the patch, normalised as enqueue stores it, or the fields that are wrong."""
    try:
        jt = get_job_type(job_type)
    except UnknownJobType:
        return None, [FieldError("type", f"unknown job type {job_type!r}")]
    # A patch applies to what the caller sent, not to sealed text; a field the patch sets again
    # need not open (how a job that died of data_key_mismatch is given a new value).
    try:
        clear = open_payload(jt, payload, keep=patch.keys() if patch else ())
    except DataKeyMismatch as exc:
        return None, [FieldError("payload", exc.message)]
    return validate_payload(jt, clear if patch is None else merge_patch(clear, patch))


def resolve(
    conn: Connection, selection: Selection, patch: dict[str, Any] | None, *, check: bool
) -> list[uuid.UUID]:
    """The ids of the matching dead letters, newest first; with ``check``, every (patched) payload
    is validated first and InvalidPayloads lists the jobs it would break."""
    columns = (jobs.c.id, jobs.c.type, jobs.c.payload) if check else (jobs.c.id,)
    query = newest_first(sa.select(*columns).where(*_where(selection)))
    ids: list[uuid.UUID] = []
    bad_ids: list[uuid.UUID] = []
    errors: list[dict[str, str]] = []
    for row in conn.execute(query.execution_options(yield_per=FETCH_SIZE)):
        ids.append(row.id)
        if not check:
            continue
        _, field_errors = patched(row.type, row.payload, patch)
        if field_errors:
            bad_ids.append(row.id)
            room = MAX_REPORTED_ERRORS - len(errors)
            errors.extend({"job_id": str(row.id), **e.as_dict()} for e in field_errors[:room])
    if bad_ids:
        raise InvalidPayloads(bad_ids, errors)
    return ids
