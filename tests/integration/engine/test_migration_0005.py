"""Upgrading a database that holds phone numbers in clear (written before migration 0005) ends with
none in clear: they are sealed, found by their keyed hash, and masked inside error text."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from core.engine.job_types import payload_context
from core.errors import DataKeyError
from core.messaging.optouts import is_opted_out
from core.messaging.outbound import BODY_TO_CONTEXT, list_outbound
from core.platform.crypto import data_cipher
from core.platform.db import transaction
from core.platform.migrate import alembic_config, upgrade
from core.platform.settings import Settings
from tests import services as test_services
from tests.integration.conftest import database_at
from tests.integration.datakeys.test_personal_data import columns_holding

NUMBER, OPTED_OUT, IN_SCHEDULE = "+14155550123", "+14155550124", "+14155550125"


@pytest.fixture
def empty_database(services: test_services.TestServices, settings: Settings) -> Iterator[Settings]:
    with database_at(services, settings, None) as migrated:
        yield migrated


def _before_0005() -> str:
    revision = ScriptDirectory.from_config(alembic_config()).get_revision("0005")
    assert revision is not None and isinstance(revision.down_revision, str)
    return revision.down_revision


def _write_clear_rows(settings: Settings) -> uuid.UUID:
    job_id = uuid.uuid4()
    with transaction(settings) as conn:
        payload = {"to": NUMBER, "text": "hello", "respect_quiet_hours": True}
        error = {
            "code": "opted_out",
            "message": f"{OPTED_OUT} opted out of WhatsApp messages",
            "retryable": False,
        }
        conn.execute(
            sa.text(
                "INSERT INTO jobs (id, type, queue, status, payload, max_retries, error) "
                "VALUES (:id, 'whatsapp_message', 'whatsapp_message', 'dead', CAST(:p AS jsonb), 5, CAST(:e AS jsonb))"
            ),
            {"id": job_id, "p": json.dumps(payload), "e": json.dumps(error)},
        )
        conn.execute(
            sa.text(
                "INSERT INTO job_attempts (job_id, number, worker, outcome, error) "
                "VALUES (:id, 1, 'w', 'failed', CAST(:e AS jsonb))"
            ),
            {"id": job_id, "e": json.dumps(error)},
        )
        body = {"messaging_product": "whatsapp", "to": NUMBER, "type": "text", "text": {"body": "hello"}}
        conn.execute(
            sa.text(
                "INSERT INTO outbound_messages (id, job_id, attempt, to_number, kind, body, status) "
                "VALUES (:id, :job, 1, :to, 'text', CAST(:b AS jsonb), 'sent')"
            ),
            {"id": uuid.uuid4(), "job": job_id, "to": NUMBER, "b": json.dumps(body)},
        )
        conn.execute(
            sa.text(
                "INSERT INTO opt_outs (channel, address, source, reason) VALUES ('whatsapp', :a, 'api', :r)"
            ),
            {"a": OPTED_OUT, "r": f"asked on {OPTED_OUT}"},
        )
        conn.execute(
            sa.text(
                "INSERT INTO schedules (id, type, payload, every_seconds, next_run_at) "
                "VALUES (:id, 'whatsapp_message', CAST(:p AS jsonb), 86400, now())"
            ),
            {"id": uuid.uuid4(), "p": json.dumps({"to": IN_SCHEDULE, "text": "weekly"})},
        )
    return job_id


def test_upgrading_seals_every_number_written_before(empty_database: Settings) -> None:
    settings = empty_database
    upgrade(settings, _before_0005())
    job_id = _write_clear_rows(settings)
    assert columns_holding(settings, [NUMBER[1:]]) != []  # the check sees clear numbers

    # Without the data key the upgrade refuses (and changes nothing), saying what to do.
    with pytest.raises(DataKeyError, match="JOBYARD_DATA_KEY"):
        upgrade(settings.replace(data_key=None, home=settings.home_path / "no-such-home"))
    upgrade(settings)

    assert columns_holding(settings, [n[1:] for n in (NUMBER, OPTED_OUT, IN_SCHEDULE)]) == []
    cipher = data_cipher()
    with transaction(settings) as conn:
        payload = conn.execute(
            sa.text("SELECT payload FROM jobs WHERE id = :id"), {"id": job_id}
        ).scalar_one()
        assert (
            cipher.open(payload["to"], payload_context("whatsapp_message", "to")) == NUMBER
            and payload["text"] == "hello"
        )
        error = conn.execute(sa.text("SELECT error FROM jobs WHERE id = :id"), {"id": job_id}).scalar_one()
        assert error["message"] == "+14******124 opted out of WhatsApp messages"
        assert is_opted_out(conn, OPTED_OUT) and not is_opted_out(conn, NUMBER)
        (message,), _ = list_outbound(conn, job_id=None, to=NUMBER, status=None, limit=10, cursor=None)
        assert message.to == "+14******123" and message.body["to"] == "+14******123"
        sealed_body = conn.execute(sa.text("SELECT body FROM outbound_messages")).scalar_one()
        assert cipher.open(sealed_body["to"], BODY_TO_CONTEXT) == NUMBER
        schedule = conn.execute(sa.text("SELECT payload FROM schedules")).scalar_one()
        assert cipher.open(schedule["to"], payload_context("whatsapp_message", "to")) == IN_SCHEDULE
