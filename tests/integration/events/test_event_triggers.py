"""The event triggers (migrations 0024, 0029): one event per changed row of a listened-to tenant, none
for anyone else, whether a statement changes one row or a batch's hundreds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from core.chats.unread import UnreadCountPayload, apply_unread_many
from core.engine.jobs import NewJob, insert_jobs, utcnow
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import event_consumers, events


def _listen(settings: Settings, tenant: str) -> None:
    """An events stream of ``tenant`` open for a minute, as GET /v1/events/stream keeps one."""
    with transaction(settings) as conn:
        conn.execute(sa.insert(event_consumers).values(tenant=tenant, until=utcnow() + timedelta(minutes=1)))


def _events(settings: Settings) -> list[Any]:
    with transaction(settings) as conn:
        return list(conn.execute(sa.select(events).order_by(events.c.id)))


def _jobs(settings: Settings, tenant: str, n: int) -> list[str]:
    with transaction(settings) as conn:
        made = insert_jobs(
            conn, [NewJob(type="test_echo", payload={"value": i}, tenant=tenant) for i in range(n)]
        )
    return [str(e.job.id) for e in made]


def _set_status(settings: Settings, ids: list[str], status: str) -> None:
    with transaction(settings) as conn:
        conn.execute(
            sa.text("UPDATE jobs SET status = :status WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"status": status, "ids": ids},
        )


def test_nobody_listening_records_nothing(settings: Settings) -> None:
    ids = _jobs(settings, "shop-a", 3)
    _set_status(settings, ids, "succeeded")
    with transaction(settings) as conn:
        apply_unread_many(conn, [("shop-a", UnreadCountPayload(chat_id="c1", user_id="u"))])
    assert _events(settings) == []


def test_one_statement_finishing_many_jobs_records_one_event_per_listened_job(settings: Settings) -> None:
    _listen(settings, "shop-a")
    mine = _jobs(settings, "shop-a", 200)
    theirs = _jobs(settings, "shop-b", 50)
    _set_status(settings, mine + theirs, "running")  # not an event
    assert _events(settings) == []

    _set_status(settings, mine + theirs, "succeeded")  # one statement, 250 rows
    _set_status(settings, mine, "succeeded")  # no change of status: no event

    got = _events(settings)
    assert sorted(e.subject for e in got) == sorted(mine)  # each of shop-a's once, none of shop-b's
    assert {(e.tenant, e.type, e.job_type) for e in got} == {("shop-a", "job.succeeded", "test_echo")}
    assert {e.data["status"] for e in got} == {"succeeded"}
    assert len({e.xid for e in got}) == 1  # recorded in the statement's transaction


def test_a_batch_of_increments_records_an_event_per_changed_counter(settings: Settings) -> None:
    _listen(settings, "shop-a")
    with transaction(settings) as conn:
        apply_unread_many(conn, [("shop-a", UnreadCountPayload(chat_id="c1", user_id="u"))])
    first = _events(settings)
    assert [(e.subject, e.data["unread"]) for e in first] == [("c1/u", 1)]  # an inserted counter

    batch = [
        ("shop-a", UnreadCountPayload(chat_id="c1", user_id="u", by=2)),  # an existing one, changed
        ("shop-a", UnreadCountPayload(chat_id="c2", user_id="u")),  # a new one
        ("shop-b", UnreadCountPayload(chat_id="c1", user_id="u")),  # not listened to
    ]
    with transaction(settings) as conn:
        apply_unread_many(conn, batch)
    got = _events(settings)[len(first) :]
    assert sorted((e.tenant, e.subject, e.data["unread"]) for e in got) == [
        ("shop-a", "c1/u", 3),
        ("shop-a", "c2/u", 1),
    ]
    assert {e.type for e in got} == {"unread.changed"}
