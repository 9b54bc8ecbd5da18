"""Every route of the app needs a scope, or is on the explicit public list below.

The test walks the Litestar app's routes generically (every handler, every method), so a route added
later is covered the moment it is mounted. A route is protected when its guards demand a scope
(`requires`/`requires_any`), or when its `auth` opt names another scheme this test knows how to
check (SESSION_SCHEMES: the dashboard's cookie login). Anything else must be listed in PUBLIC.
Each scope-guarded route is then called for real: no key gives 401, a key without its scope 403.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from control_api.app import create_app
from control_api.auth import AUTH_OPT, guard_scopes, needs_every_tenant, protection
from core.access.keys import SCOPES
from core.platform.settings import Settings
from tests.integration.conftest import make_key

#: (method, path) anyone may call. Keep it short: each entry is a door without a lock of ours.
PUBLIC = {
    ("GET", "/healthz"),  # liveness
    ("GET", "/readyz"),  # readiness
    ("GET", "/webhooks/whatsapp"),  # Meta's handshake: checks WHATSAPP_VERIFY_TOKEN
    ("POST", "/webhooks/whatsapp"),  # Meta's notifications: checks the X-Hub-Signature-256 HMAC
    # The dashboard's CSS, JS and icon: the login page needs them before a session exists; no data.
    ("GET", "/dashboard/static/{file_path:path}"),
}
#: The API's description (OpenAPI JSON/YAML and the docs viewers) is public by path prefix.
PUBLIC_PREFIXES = ("/schema",)
#: Other auth schemes a route may declare with the `auth` opt, and how a request without
#: credentials is refused by each (a login redirect, or 401). The dashboard registers "session".
SESSION_SCHEMES = {"session": {302, 303, 401}}


def _handlers(app: Litestar) -> list[tuple[str, str, HTTPRouteHandler]]:
    found = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for method in sorted(handler.http_methods):
                if method not in ("HEAD", "OPTIONS"):
                    found.append((method, route.path, handler))
    return found


def _concrete(path: str) -> str:
    """A request path for a route path: each parameter filled with a value of its type."""

    def fill(match: re.Match[str]) -> str:
        kind = match.group(2)
        return {"uuid": str(uuid.uuid4()), "int": "1", "float": "1.0", "path": "x"}.get(kind, "x")

    return re.sub(r"\{(\w+):(\w+)\}", fill, path)


def test_every_route_needs_a_scope_or_is_on_the_public_list(settings: Settings) -> None:
    app = create_app(settings, configure_logs=False)
    unprotected = []
    for method, path, handler in _handlers(app):
        scheme = protection(handler)
        if scheme == "scope":
            assert set(guard_scopes(handler)) <= set(SCOPES), (method, path)
            continue
        if scheme in SESSION_SCHEMES:
            continue
        if path.startswith(PUBLIC_PREFIXES) or (method, path) in PUBLIC:
            assert scheme in (None, "public") or path.startswith(PUBLIC_PREFIXES), (method, path, scheme)
            continue
        unprotected.append((method, path, handler.opt.get(AUTH_OPT)))
    assert unprotected == [], (
        f"routes with neither a scope guard nor a place on the public list: {unprotected}"
    )
    # And the public list names real routes (a renamed route must not leave a stale hole behind).
    mounted = {(m, p) for m, p, _ in _handlers(app)}
    assert mounted >= PUBLIC


def test_scope_guarded_routes_refuse_no_key_and_a_key_without_the_scope(settings: Settings) -> None:
    # Two failed authentications a route: past the limit on an address's failures (its burst of 100)
    # once the API has 50 routes; the limit has tests of its own (api/test_hostile_edge.py).
    # An events stream ends at once, so the client reads each answer to its end.
    app = create_app(settings.replace(auth_failures_per_s=0, events_stream_max_s=0.05), configure_logs=False)
    keys = {scope: make_key(settings, scope, name=f"only-{scope}") for scope in SCOPES}
    # For routes showing every tenant's figures together: each scope with admin's reach.
    reaching = {scope: make_key(settings, scope, "admin", name=f"{scope}-admin") for scope in SCOPES}
    checked = 0
    with TestClient(app) as client:
        for method, path, handler in _handlers(app):
            needed = set(guard_scopes(handler))
            if not needed:
                continue
            url = _concrete(path)
            kwargs: dict[str, Any] = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
            anonymous = client.request(method, url, **kwargs)
            assert anonymous.status_code == 401, (method, path, anonymous.text)
            assert anonymous.json()["error"]["code"] == "unauthorized"
            bad = client.request(
                method, url, headers={"Authorization": "Bearer jy_not-a-real-key-at-all"}, **kwargs
            )
            assert bad.status_code == 401, (method, path, bad.text)
            every_tenant = needs_every_tenant(handler)
            for scope, secret in keys.items():
                r = client.request(method, url, headers={"Authorization": f"Bearer {secret}"}, **kwargs)
                if every_tenant and scope in needed and scope != "admin":
                    # The scope alone is not enough: a key of one tenant is refused, one reaching
                    # every tenant is let through.
                    assert r.status_code == 403, (method, path, scope, r.text)
                    r = client.request(
                        method, url, headers={"Authorization": f"Bearer {reaching[scope]}"}, **kwargs
                    )
                if scope in needed:
                    assert r.status_code not in (401, 403) and r.status_code < 500, (
                        method,
                        path,
                        scope,
                        r.text,
                    )
                else:
                    assert r.status_code == 403, (method, path, scope, r.text)
                    assert r.json()["error"]["code"] == "forbidden"
            checked += 1
    assert checked >= 30  # every API route of v1 today; the walk must not quietly find nothing


def test_ops_read_reads_whatever_ops_reads_and_nothing_it_changes(settings: Settings) -> None:
    """The view-only role, over every route mounted: each GET an `ops` key may call takes `ops:read`
    too, and no other method does. The walk above then calls each of them with an `ops:read` key."""
    app = create_app(settings, configure_logs=False)
    unreadable, writable = [], []
    for method, path, handler in _handlers(app):
        needed = set(guard_scopes(handler))
        if method == "GET" and "ops" in needed and "ops:read" not in needed:
            unreadable.append(path)
        if method != "GET" and "ops:read" in needed:
            writable.append((method, path))
    assert unreadable == [], f"GET routes ops reads that ops:read may not: {unreadable}"
    assert writable == [], f"routes that change something yet take ops:read: {writable}"
    # And for real: a view-only key reads the queues and is refused every change.
    reader = make_key(settings, "ops:read", name="viewer")
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {reader}"}
        assert client.get("/v1/queues", headers=headers).status_code == 200
        for method, path, handler in _handlers(app):
            if method == "GET" or not guard_scopes(handler):
                continue
            r = client.request(method, _concrete(path), headers=headers, json={})
            assert r.status_code == 403, (method, path, r.text)


#: Dashboard POSTs a view-only session may send: they change no job (session.VIEW_ONLY_OK).
_FORM = re.compile(r'<form[^>]*method="post"[^>]*action="([^"]+)"')


def test_an_ops_read_login_sees_every_page_and_no_action(
    browser: TestClient[Any], settings: Settings
) -> None:
    from control_api.dashboard.session import PUBLIC as DASHBOARD_PUBLIC
    from control_api.dashboard.session import VIEW_ONLY_OK
    from tests.integration.access.test_sessions import SESSION_TOKEN, dashboard_login

    app = browser.app
    assert isinstance(app, Litestar)
    key = make_key(settings, "ops:read", name="viewer")
    assert dashboard_login(browser, key).status_code == 303
    pages = [
        path
        for method, path, handler in _handlers(app)
        if method == "GET"
        and path.startswith("/dashboard")
        and "{" not in path
        and not handler.opt.get(DASHBOARD_PUBLIC)
        # The live events stream never ends (tests/integration/dashboard/test_live.py reads it).
        and path != "/dashboard/events"
    ]
    assert "/dashboard/jobs" in pages
    for path in pages:
        r = browser.get(path)
        assert r.status_code == 200, (path, r.text[:300])
        actions = set(_FORM.findall(r.text)) - {"/dashboard/logout", "/dashboard/tenant"}
        assert actions == set(), (path, actions)
    token = SESSION_TOKEN.search(browser.get("/dashboard").text)
    assert token
    refused = []
    for method, path, handler in _handlers(app):
        if method != "POST" or not path.startswith("/dashboard") or handler.opt.get(VIEW_ONLY_OK):
            continue
        if handler.opt.get(DASHBOARD_PUBLIC):
            continue
        r = browser.post(_concrete(path), data={"csrf_token": token.group(1), "reason": "look"})
        assert r.status_code == 403 and "View only" in r.text, (path, r.status_code, r.text[:300])
        refused.append(path)
    assert {"/dashboard/jobs/apply", "/dashboard/jobs/{job_id:uuid}/act"} <= set(refused)
