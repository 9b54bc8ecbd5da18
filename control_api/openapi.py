"""The OpenAPI document: how callers authenticate, and the error answers every route can give.

Litestar documents each handler's success answer from its type; the errors (one envelope, see
control_api/errors.py) come from middleware and guards it cannot see, so they are declared here for
every route at once, by what the route is: key-authenticated routes can answer 401, 403 and 429,
routes with a body 413 and 422, and so on. The schemathesis run checks every answer against this.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.routes import HTTPRoute

from control_api.auth import AUTH_OPT
from control_api.schemas import ErrorOut

_ERRORS = {
    400: "Malformed JSON, a bad cursor or query parameter, or a body nested too deeply",
    401: "No API key, or an unknown, revoked or expired one",
    403: "The API key lacks the route's scope",
    404: "Not found",
    409: "Conflict with the current state",
    413: "The body is larger than JOBYARD_MAX_BODY_BYTES",
    415: "The body is not JSON",
    422: "Invalid fields; details lists each one",
    429: "Over a rate limit (the API key's, or the client address's for failed authentications); see Retry-After",
    503: "Postgres or Redis is unavailable, slow (a statement or lock timeout) or busy; see Retry-After",
}
_WITH_BODY = {"POST", "PUT", "PATCH"}


def openapi_config(description: str | None, *, ui: bool = False) -> OpenAPIConfig:
    """The document at /schema/openapi.json (and .yaml); with ``ui`` (JOBYARD_API_DOCS_UI) also
    Litestar's viewers, which load their scripts and styles from a CDN: off by default, so the API
    serves no page that runs someone else's code."""
    plugins: list[OpenAPIRenderPlugin] = [] if ui else [JsonRenderPlugin(), YamlRenderPlugin()]
    return OpenAPIConfig(
        title="Jobyard control API",
        version="1",
        path="/schema",
        description=description,
        render_plugins=plugins,
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(
                    type="http", scheme="bearer", description="Authorization: Bearer jy_..."
                ),
                "apiKey": SecurityScheme(type="apiKey", name="X-API-Key", security_scheme_in="header"),
            }
        ),
        security=[{"bearer": []}, {"apiKey": []}],
    )


def _statuses(handler: HTTPRouteHandler) -> set[int]:
    statuses = {400, 404, 422, 503}
    if handler.opt.get(AUTH_OPT) is None:  # API-key routes (public and session ones say so in opt)
        statuses |= {401, 403, 429}
    if handler.http_methods & _WITH_BODY:
        statuses |= {409, 413, 415}
    elif "DELETE" in handler.http_methods:
        statuses.add(409)
    return statuses


def declare_common_responses(app: Litestar) -> None:
    """Add the error answers to each route's documented responses (the handler's own win)."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if handler.include_in_schema is False:
                continue
            declared = dict(handler.responses or {})
            for status in _statuses(handler):
                declared.setdefault(
                    status, ResponseSpec(data_container=ErrorOut, description=_ERRORS[status])
                )
            handler.responses = declared
