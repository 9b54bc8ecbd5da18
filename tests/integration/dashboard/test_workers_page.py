"""The workers page and the chart ranges, in-process against real Postgres: who may quiet a worker
from the dashboard, and what a bad form or a bad link gets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from core.engine.recovery import register_worker
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import audit_log, workers
from tests.integration.access.test_sessions import tenant_login

WORKER = "host-a-4242-1f2e3d4c"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient[Any]]:
    from control_api.app import create_app

    with TestClient(create_app(settings, configure_logs=False)) as c:
        c.follow_redirects = False
        yield c


def _quiet_requested(settings: Settings) -> Any:
    with transaction(settings) as conn:
        return conn.execute(
            sa.select(workers.c.quiet_requested_at).where(workers.c.id == WORKER)
        ).scalar_one()


def test_only_a_session_reaching_every_tenant_quiets_a_worker(
    client: TestClient[Any], settings: Settings
) -> None:
    register_worker(settings, WORKER, ["test_sleep"], "broker-a", 4)

    # A tenant's session sees the farm's workers, and no quiet button; its POST is refused.
    csrf = tenant_login(client, settings, "shop-a")
    page = client.get("/dashboard/workers")
    assert page.status_code == 200 and WORKER in page.text
    assert 'class="actions quiet"' not in page.text
    refused = client.post(f"/dashboard/workers/{WORKER}/quiet", data={"csrf_token": csrf, "reason": "mine"})
    assert refused.status_code == 403
    assert _quiet_requested(settings) is None

    client.cookies.clear()
    csrf = tenant_login(client, settings, "default", "admin")
    page = client.get("/dashboard/workers")
    assert 'class="actions quiet"' in page.text and '<td class="num" data-field="threads">4</td>' in page.text
    for form in (
        {"csrf_token": csrf},
        {"csrf_token": csrf, "reason": "   "},
        {"csrf_token": csrf, "reason": "x" * 2001},
    ):
        assert client.post(f"/dashboard/workers/{WORKER}/quiet", data=form).status_code == 422
    missing = client.post("/dashboard/workers/no-such-worker/quiet", data={"csrf_token": csrf, "reason": "x"})
    assert missing.status_code == 404
    assert client.post(f"/dashboard/workers/{WORKER}/quiet", data={"reason": "no token"}).status_code == 403
    assert _quiet_requested(settings) is None

    done = client.post(
        f"/dashboard/workers/{WORKER}/quiet", data={"csrf_token": csrf, "reason": "host a reboots"}
    )
    assert done.status_code == 303 and done.headers["location"] == "/dashboard/workers"
    assert _quiet_requested(settings) is not None
    page = client.get("/dashboard/workers")
    assert 'data-field="state">quieting<' in page.text and 'class="actions quiet"' not in page.text
    with transaction(settings) as conn:
        (entry,) = conn.execute(sa.select(audit_log)).all()
    assert (entry.action, entry.reason, entry.selection) == (
        "worker_quiet",
        "host a reboots",
        {"worker": WORKER},
    )


def test_the_chart_ranges(client: TestClient[Any], settings: Settings) -> None:
    tenant_login(client, settings, "default", "admin")
    for span, bars in (("1h", 60), ("24h", 24), ("30d", 30)):
        page = client.get("/dashboard", params={"range": span})
        assert page.status_code == 200
        assert page.text.count('<g class="bar">') == bars
        assert f'data-refresh-url="/dashboard/overview/fragment?range={span}"' in page.text
        fragment = client.get("/dashboard/overview/fragment", params={"range": span})
        assert fragment.text.count('<g class="bar">') == bars
    assert client.get("/dashboard", params={"range": "7d"}).status_code == 400
    assert client.get("/dashboard/overview/fragment", params={"range": "1h' onload='x"}).status_code == 400
