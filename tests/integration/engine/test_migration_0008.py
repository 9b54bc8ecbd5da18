"""Upgrading a database that holds times Python cannot read (stored before client times were bounded)
leaves every row readable: a job waiting for year 10000 is dead with a code, a job "due in year 0"
that ran keeps its history, a schedule holding such a time is disabled with a reason."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from control_api.app import create_app
from core.access.keys import SCOPES, create_key
from core.platform.db import transaction
from core.platform.migrate import upgrade
from core.platform.settings import Settings
from tests import services as test_services
from tests.integration.conftest import database_at

PAYLOAD = '{"chat_id": "c", "user_id": "u"}'


@pytest.fixture
def at_0007(services: test_services.TestServices, settings: Settings) -> Iterator[Settings]:
    with database_at(services, settings, "0007") as migrated:
        yield migrated


def _insert_job(conn: Any, status: str, run_at: str) -> uuid.UUID:
    job_id = uuid.uuid4()
    conn.execute(
        sa.text(
            "INSERT INTO jobs (id, type, queue, status, payload, max_retries, run_at) "
            "VALUES (:id, 'unread_count', 'unread_count', :status, CAST(:payload AS jsonb), 3, CAST(:run_at AS timestamptz))"
        ),
        {"id": job_id, "status": status, "payload": PAYLOAD, "run_at": run_at},
    )
    return job_id


def test_upgrading_makes_every_row_readable_and_says_what_happened(at_0007: Settings) -> None:
    schedule_id = uuid.uuid4()
    with transaction(at_0007) as conn:
        waiting = _insert_job(conn, "scheduled", "9999-12-31T23:59:59-14:00")
        ran = _insert_job(conn, "succeeded", "0001-01-01T00:00:00+14:00")
        fine = _insert_job(conn, "scheduled", "2030-01-01T00:00:00Z")
        conn.execute(
            sa.text(
                "INSERT INTO schedules (id, type, payload, every_seconds, start_at, next_run_at) VALUES "
                "(:id, 'unread_count', CAST(:payload AS jsonb), 60, '10000-01-01T00:00:00Z', '10000-01-01T00:00:00Z')"
            ),
            {"id": schedule_id, "payload": PAYLOAD},
        )
    upgrade(at_0007)
    with transaction(at_0007) as conn:
        _, admin = create_key(conn, "admin", SCOPES)

    with TestClient(create_app(at_0007, configure_logs=False)) as api:
        api.headers["Authorization"] = f"Bearer {admin}"
        dead = api.get(f"/v1/jobs/{waiting}").json()
        assert dead["status"] == "dead" and dead["error"]["code"] == "run_at_out_of_range"
        assert "10000" in dead["error"]["message"]
        assert api.get(f"/v1/jobs/{ran}").json()["status"] == "succeeded"
        assert api.get(f"/v1/jobs/{fine}").json()["run_at"] == "2030-01-01T00:00:00Z"
        schedule = api.get(f"/v1/schedules/{schedule_id}").json()
        assert (schedule["enabled"], schedule["disabled_code"]) == (False, "time_out_of_range")
        assert api.get("/v1/jobs").status_code == 200 and api.get("/v1/schedules").status_code == 200
