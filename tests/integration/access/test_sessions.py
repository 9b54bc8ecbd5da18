"""Dashboard login and sessions, in-process against real Postgres and Redis: which keys get in, what
the cookie looks like, CSRF on every form, and revocation ending a session."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from litestar.testing import TestClient

from core.access.keys import revoke_key
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import dashboard_sessions
from tests.integration.conftest import make_key

SESSION_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def dashboard_login(client: TestClient[Any], key: str, next_path: str = "/dashboard") -> Any:
    form = client.get("/dashboard/login", params={"next": next_path})
    assert form.status_code == 200
    token = SESSION_TOKEN.search(form.text)
    assert token, form.text
    return client.post(
        "/dashboard/login", data={"api_key": key, "csrf_token": token.group(1), "next": next_path}
    )


def tenant_login(browser: TestClient[Any], settings: Settings, tenant: str, *scopes: str) -> str:
    """Log ``browser`` in with a new ops key of ``tenant`` (and ``scopes``); the session's CSRF token."""
    key = make_key(settings, "ops", *scopes, name=f"{tenant} shift", tenant=tenant)
    assert dashboard_login(browser, key).status_code == 303
    token = SESSION_TOKEN.search(browser.get("/dashboard/dead-letters").text)
    assert token
    return token.group(1)


def test_only_a_key_holding_ops_opens_a_session(browser: TestClient[Any], settings: Settings) -> None:
    r = browser.get("/dashboard/dead-letters?type=x")
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard/login?next=%2Fdashboard%2Fdead-letters%3Ftype%3Dx"

    reader = make_key(settings, "jobs:read", name="reader")
    refused = dashboard_login(browser, reader)
    assert refused.status_code == 401
    assert "lacks the &#39;ops&#39; scope" in refused.text
    assert dashboard_login(browser, "jy_not_a_key").status_code == 401
    assert "jobyard_session" not in browser.cookies

    ops = make_key(settings, "ops", name="night-shift")
    ok = dashboard_login(browser, ops, "/dashboard/dead-letters")
    assert ok.status_code == 303
    assert ok.headers["location"] == "/dashboard/dead-letters"
    cookie = next(h for h in ok.headers.get_list("set-cookie") if h.startswith("jobyard_session="))
    assert "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    assert "Path=/dashboard" in cookie
    assert "Secure" not in cookie  # plain http here; over https (or when configured) it is Secure
    assert ops not in cookie  # the key itself never reaches the browser
    page = browser.get("/dashboard")
    assert page.status_code == 200
    assert "night-shift" in page.text
    # The session is for the dashboard only: the API still wants a key.
    assert browser.get("/v1/queues").status_code == 401


def test_a_login_elsewhere_redirect_is_refused(browser: TestClient[Any], settings: Settings) -> None:
    r = dashboard_login(browser, make_key(settings, "ops"), "//evil.example/steal")
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard"


def test_forms_need_the_session_csrf_token(browser: TestClient[Any], settings: Settings) -> None:
    dashboard_login(browser, make_key(settings, "ops"))
    page = browser.get("/dashboard/dead-letters")
    token = SESSION_TOKEN.search(page.text)
    assert token
    form = {"action": "discard", "target": "matching", "reason": "cleanup"}
    assert browser.post("/dashboard/dead-letters/preview", data=form).status_code == 403
    assert (
        browser.post("/dashboard/dead-letters/preview", data={**form, "csrf_token": "x" * 43}).status_code
        == 403
    )
    sent = browser.post("/dashboard/dead-letters/preview", data={**form, "csrf_token": token.group(1)})
    assert sent.status_code == 200
    assert 'data-field="matched">0<' in sent.text
    other_site = browser.post(
        "/dashboard/dead-letters/preview",
        data={**form, "csrf_token": token.group(1)},
        headers={"Origin": "https://evil.example"},
    )
    assert other_site.status_code == 403
    # The login form has its own token: a login posted from elsewhere is refused too.
    assert browser.post("/dashboard/login", data={"api_key": "jy_x"}).status_code == 403


def test_revoking_the_key_or_logging_out_ends_the_session(
    browser: TestClient[Any], settings: Settings
) -> None:
    key = make_key(settings, "ops", name="temp")
    dashboard_login(browser, key)
    assert browser.get("/dashboard").status_code == 200
    with transaction(settings) as conn:
        revoke_key(conn, key[:10])
    assert browser.get("/dashboard").status_code == 303

    dashboard_login(browser, make_key(settings, "ops"))
    token = SESSION_TOKEN.search(browser.get("/dashboard").text)
    assert token
    out = browser.post("/dashboard/logout", data={"csrf_token": token.group(1)})
    assert out.status_code == 303
    assert browser.get("/dashboard").status_code == 303
    with transaction(settings) as conn:
        live = conn.execute(sa.select(sa.func.count()).select_from(dashboard_sessions)).scalar_one()
    assert live == 1  # the logout deleted its row; the revoked key's is useless and goes when it expires
