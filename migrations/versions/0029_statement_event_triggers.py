"""events: the job and unread-counter triggers run once per statement, not once per row

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-05 21:30:00.000000

The triggers of migration 0024 ran a PL/pgSQL function for every job that finished and every unread
counter a job changed, and each call looked for a listener with two index lookups: about 14 us a
row, 7 ms of the 31 ms a batch of 500 jobs took to finish, all of it while the batch held the
counters it had just written. Now each is a statement-level trigger over the statement's transition
tables: one call per statement, which returns at once unless some tenant has an enabled webhook
endpoint or an open events stream (``jobyard_anyone_listening``), and otherwise records the same
events as before, one per changed row whose tenant is listened to, in one pass.

What is recorded does not change: a job's event when its status becomes succeeded, dead, retrying
or cancelled; a counter's when it is inserted or its ``unread`` changes. A trigger with transition
tables cannot name columns (``UPDATE OF status``), so these fire on every update of their table and
compare the old and new rows themselves.
"""

from __future__ import annotations

from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

_ANYONE = """
CREATE FUNCTION jobyard_anyone_listening() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled)
        OR EXISTS (SELECT 1 FROM event_consumers WHERE until > now())
$$
"""

_JOB_EVENTS = """
CREATE FUNCTION jobyard_job_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF jobyard_anyone_listening() THEN
        PERFORM jobyard_record_event(n.tenant, 'job.' || n.status, n.id::text, n.type, to_jsonb(n))
        FROM jobyard_new_jobs AS n JOIN jobyard_old_jobs AS o ON o.id = n.id
        WHERE o.status IS DISTINCT FROM n.status
          AND n.status IN ('succeeded', 'dead', 'retrying', 'cancelled')
          AND jobyard_event_listened(n.tenant, 'job.' || n.status, n.type);
    END IF;
    RETURN NULL;
END
$$
"""

#: One counter's event, if its tenant is listened to (the row as the trigger's transition table has it).
_UNREAD_EVENT_OF = """
CREATE FUNCTION jobyard_unread_event_of(n unread_counters) RETURNS void LANGUAGE sql AS $$
    SELECT jobyard_record_event(
        n.tenant, 'unread.changed', n.chat_id || '/' || n.user_id, NULL,
        jsonb_build_object(
            'chat_id', n.chat_id, 'user_id', n.user_id, 'unread', n.unread,
            'last_read_at', n.last_read_at, 'updated_at', n.updated_at))
    WHERE jobyard_event_listened(n.tenant, 'unread.changed', NULL)
$$
"""

_UNREAD_EVENTS = """
CREATE FUNCTION jobyard_unread_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT jobyard_anyone_listening() THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        PERFORM jobyard_unread_event_of(n) FROM jobyard_new_counters AS n;
    ELSE
        PERFORM jobyard_unread_event_of(n)
        FROM jobyard_new_counters AS n
        JOIN jobyard_old_counters AS o USING (user_id, chat_id, tenant)
        WHERE o.unread IS DISTINCT FROM n.unread;
    END IF;
    RETURN NULL;
END
$$
"""

_TRIGGERS = (
    "CREATE TRIGGER jobs_events AFTER UPDATE ON jobs "
    "REFERENCING OLD TABLE AS jobyard_old_jobs NEW TABLE AS jobyard_new_jobs "
    "FOR EACH STATEMENT EXECUTE FUNCTION jobyard_job_events()",
    "CREATE TRIGGER unread_counters_events_insert AFTER INSERT ON unread_counters "
    "REFERENCING NEW TABLE AS jobyard_new_counters "
    "FOR EACH STATEMENT EXECUTE FUNCTION jobyard_unread_events()",
    "CREATE TRIGGER unread_counters_events_update AFTER UPDATE ON unread_counters "
    "REFERENCING OLD TABLE AS jobyard_old_counters NEW TABLE AS jobyard_new_counters "
    "FOR EACH STATEMENT EXECUTE FUNCTION jobyard_unread_events()",
)

#: Migration 0024's row-level triggers, for the downgrade (their functions are kept by the upgrade).
_ROW_TRIGGERS = (
    "CREATE TRIGGER jobs_events AFTER UPDATE OF status ON jobs FOR EACH ROW "
    "WHEN (OLD.status IS DISTINCT FROM NEW.status "
    "AND NEW.status IN ('succeeded', 'dead', 'retrying', 'cancelled')) "
    "EXECUTE FUNCTION jobyard_job_event()",
    "CREATE TRIGGER unread_counters_events_insert AFTER INSERT ON unread_counters FOR EACH ROW "
    "EXECUTE FUNCTION jobyard_unread_event()",
    "CREATE TRIGGER unread_counters_events_update AFTER UPDATE OF unread ON unread_counters FOR EACH ROW "
    "WHEN (OLD.unread IS DISTINCT FROM NEW.unread) EXECUTE FUNCTION jobyard_unread_event()",
)

_DROPS = (
    "DROP TRIGGER jobs_events ON jobs",
    "DROP TRIGGER unread_counters_events_insert ON unread_counters",
    "DROP TRIGGER unread_counters_events_update ON unread_counters",
)


def upgrade() -> None:
    for statement in (*_DROPS, _ANYONE, _JOB_EVENTS, _UNREAD_EVENT_OF, _UNREAD_EVENTS, *_TRIGGERS):
        op.execute(statement)


def downgrade() -> None:
    for statement in _DROPS:
        op.execute(statement)
    for function in (
        "jobyard_unread_events()",
        "jobyard_unread_event_of(unread_counters)",
        "jobyard_job_events()",
        "jobyard_anyone_listening()",
    ):
        op.execute(f"DROP FUNCTION {function}")
    for trigger in _ROW_TRIGGERS:
        op.execute(trigger)
