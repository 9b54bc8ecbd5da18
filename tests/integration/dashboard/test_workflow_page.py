"""A workflow on the dashboard, in-process against a real farm: its steps drawn in columns by depth
with their states and links to their jobs, a step's job page linking back, and another tenant's
session finding nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from core.platform.settings import Settings
from tests.integration.access.test_sessions import tenant_login
from tests.integration.conftest import Farm, JobWaiter
from tests.integration.engine.test_dead_letters import DIES_AT_ONCE
from tests.integration.engine.test_workflows import echo, step_job, wait_workflow


@pytest.fixture
def browser(settings: Settings) -> Iterator[TestClient[Any]]:
    from control_api.app import create_app

    with TestClient(create_app(settings, configure_logs=False)) as client:
        client.follow_redirects = False
        yield client


def layers(html: str) -> list[list[tuple[str, str]]]:
    """The page's columns, each a list of (step, state)."""
    columns = re.split(r'<div class="layer" data-depth="\d+">', html)[1:]
    return [
        re.findall(
            r'data-step="([^"]+)">\s*<div class="head"><strong>[^<]+</strong> <span class="status (\w+)"', c
        )
        for c in columns
    ]


def test_the_workflow_page_draws_the_steps_by_depth_and_links_their_jobs(
    api: TestClient[Any], browser: TestClient[Any], farm: Farm, settings: Settings, wait_job: JobWaiter
) -> None:
    farm.worker()
    wf = api.post(
        "/v1/workflows",
        json={
            "business_key": "order-77",
            "steps": {
                "a": echo(1),
                "dies": {"type": "test_flaky", "payload": DIES_AT_ONCE, "after": ["a"]},
                "b": echo(2, "a"),
                "c": echo(3, "dies", "b"),
            },
        },
    ).json()
    wait_workflow(api, wf["id"], "dead")
    wf = api.get(f"/v1/workflows/{wf['id']}").json()
    wait_job(step_job(wf, "b"))

    tenant_login(browser, settings, "default")
    page = browser.get(f"/dashboard/workflows/{wf['id']}")
    assert page.status_code == 200, page.text
    assert layers(page.text) == [
        [("a", "succeeded")],
        [("dies", "dead"), ("b", "succeeded")],
        [("c", "blocked")],
    ]
    assert '<span class="status dead" data-field="state">dead</span>' in page.text
    for name in ("a", "dies", "b"):
        assert f'href="/dashboard/jobs/{step_job(wf, name)}"' in page.text
    job_page = browser.get(f"/dashboard/jobs/{step_job(wf, 'dies')}")
    assert f'href="/dashboard/workflows/{wf["id"]}"' in job_page.text

    # Another tenant's session: no such workflow.
    browser.cookies.clear()
    tenant_login(browser, settings, "shop-b")
    assert browser.get(f"/dashboard/workflows/{wf['id']}").status_code == 404
