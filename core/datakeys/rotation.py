"""`jobyard data-key rotate`: every sealed value and keyed hash moved under the current data key, in
short batches, while the farm runs.

Where they live: the sealed fields of job payloads (every state, dead letters included) and of
schedule payloads, opt-outs (sealed number, hash and its key id), outbound messages (sealed
recipient, hash and its key id, and the `to` of the stored request body), tenants' own WhatsApp
numbers (sealed access token, app secret and verify token, and their key id) and tenants' own LLM
providers (their sealed api keys, and their key id). Nothing else holds one:
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
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import structlog

from core.datakeys.reseal import Tally, pending_counts, tables
from core.engine import audit
from core.platform.crypto import KeyRing, key_label
from core.platform.db import transaction
from core.platform.settings import Settings

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


def _pass(
    settings: Settings, ring: KeyRing, batch_size: int, tally: Tally, progress: Progress | None
) -> None:
    for name, batch in tables():
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
        "data_key_rotated",
        key=key_label(ring.key_id),
        moved=total.moved,
        remaining=remaining,
        audit_id=str(audit_id),
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
