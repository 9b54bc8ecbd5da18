"""Dashboard dead-letter actions in-process: discard by filter, a bad patch refused with nothing
changed, bad forms answered with a page (never a 500), and the Secure cookie over https."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import audit_log, jobs
from tests.integration.access.test_sessions import SESSION_TOKEN, dashboard_login
from tests.integration.conftest import make_key
from tests.integration.engine.test_dead_letters import insert_dead, job_status


@pytest.fixture
def logged_in(settings: Settings) -> Iterator[tuple[TestClient[Any], str]]:
    """A logged-in browser and its session's CSRF token."""
    from control_api.app import create_app

    with TestClient(create_app(settings, configure_logs=False)) as client:
        client.follow_redirects = False
        dashboard_login(client, make_key(settings, "ops", name="day-shift"))
        token = SESSION_TOKEN.search(client.get("/dashboard/dead-letters").text)
        assert token
        yield client, token.group(1)


def test_discard_every_dead_letter_matching_a_filter(
    logged_in: tuple[TestClient[Any], str], settings: Settings
) -> None:
    client, csrf = logged_in
    insert_dead(settings, 3, code="provider_unavailable", message="upstream answered 503")
    kept = insert_dead(settings, 2, code="provider_rejected")
    listed = client.get("/dashboard/dead-letters", params={"error_code": "provider_unavailable"})
    assert 'data-field="matched">3<' in listed.text
    assert listed.text.count("<tr data-job=") == 3

    form = {
        "csrf_token": csrf,
        "action": "discard",
        "target": "matching",
        "error_code": "provider_unavailable",
        "reason": "the site is gone",
    }
    preview = client.post("/dashboard/dead-letters/preview", data=form)
    assert preview.status_code == 200
    assert 'data-field="matched">3<' in preview.text
    assert job_status(settings)["dead"] == 5  # a dry run changes nothing

    done = client.post("/dashboard/dead-letters/apply", data=form)
    assert done.status_code == 303
    entry_page = client.get(done.headers["location"])
    assert 'data-field="discarded">3<' in entry_page.text
    assert job_status(settings) == {"dead": 2, "cancelled": 3}
    with transaction(settings) as conn:
        entry = conn.execute(sa.select(audit_log)).one()
        left = {str(i) for i in conn.execute(sa.select(jobs.c.id).where(jobs.c.status == "dead")).scalars()}
    assert (entry.actor, entry.action, entry.reason) == ("day-shift", "discard", "the site is gone")
    assert entry.selection == {"filter": {"error_code": "provider_unavailable"}}
    assert left == set(kept)


def test_bad_forms_change_nothing_and_say_why(
    logged_in: tuple[TestClient[Any], str], settings: Settings
) -> None:
    client, csrf = logged_in
    (job_id,) = insert_dead(settings, 1)
    base = {"csrf_token": csrf, "action": "redrive", "ids": job_id, "reason": "fix it"}

    def refused(**changes: str) -> str:
        r = client.post("/dashboard/dead-letters/apply", data={**base, **changes})
        assert r.status_code == 422, r.text
        assert job_status(settings) == {"dead": 1}
        return re.sub(r"\s+", " ", r.text)

    assert "payload.fail_times" in refused(payload_patch='{"fail_times": "many"}')
    assert "not valid JSON" in refused(payload_patch="{oops")
    assert "must be a JSON object" in refused(payload_patch="[1]")
    assert "A reason is required" in refused(reason="   ")
    assert "Select at least one job" in refused(ids="")
    assert "since: not a time" in refused(target="matching", since="yesterday")
    bad_id = client.post("/dashboard/dead-letters/apply", data={**base, "ids": "not-a-uuid"})
    assert bad_id.status_code == 422
    assert "The form is not valid" in bad_id.text
    assert client.get("/dashboard/dead-letters", params={"until": "soon"}).status_code == 200
    assert client.get("/dashboard/jobs/00000000-0000-0000-0000-000000000000").status_code == 404


def test_the_session_cookie_is_secure_over_https(settings: Settings) -> None:
    from control_api.app import create_app

    with TestClient(create_app(settings, configure_logs=False), base_url="https://jobyard.test") as client:
        client.follow_redirects = False
        r = dashboard_login(client, make_key(settings, "ops"))
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("jobyard_session="))
        assert "Secure" in cookie
