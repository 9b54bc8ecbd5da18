"""The OpenAPI document: how callers authenticate, the error answers every route can give, and each
operation's operationId, summary and examples.

Litestar documents each handler's success answer from its type; the errors (one envelope, see
control_api/errors.py) come from middleware and guards it cannot see, so they are declared here for
every route at once, by what the route is: key-authenticated routes can answer 401, 403 and 429,
routes with a body 413 and 422, and so on. The schemathesis run checks every answer against this.
OperationIds, summaries and examples come from one table (control_api/examples.py), applied as each
operation is built, so the controllers carry none of it.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, OpenAPIResponse, Operation, Parameter, SecurityScheme
from litestar.openapi.spec.base import BaseSchemaObject
from litestar.routes import HTTPRoute
from litestar.types import Method

from control_api.auth import AUTH_OPT
from control_api.examples import OPERATIONS, OperationDoc
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
        operation_id_creator=operation_id,
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
    """Add the error answers to each route's documented responses (the handler's own win), and have
    its operations documented from the table of examples."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if handler.include_in_schema is False:
                continue
            handler.operation_class = DocumentedOperation
            declared = dict(handler.responses or {})
            for status in _statuses(handler):
                declared.setdefault(
                    status, ResponseSpec(data_container=ErrorOut, description=_ERRORS[status])
                )
            handler.responses = declared


#: The table by operationId, for the operations as Litestar builds them.
_BY_ID = {doc.operation_id: doc for doc in OPERATIONS.values()}


def operation_id(handler: HTTPRouteHandler, method: Method, path_components: list[Any]) -> str:
    """The table's operationId for the route; Litestar's own name for one missing from the table
    (tests/unit/control_api/test_openapi.py then fails, naming it)."""
    path = "/" + "/".join(c if isinstance(c, str) else f"{{{c.name}}}" for c in path_components)
    doc = OPERATIONS.get((str(getattr(method, "value", method)).upper(), path))
    if doc is not None:
        return doc.operation_id
    return "".join(c.title() if isinstance(c, str) else c.name.title() for c in path_components) + (
        handler.handler_name.title().replace("_", "")
    )


@dataclasses.dataclass
class DocumentedOperation(Operation):
    """An operation with its table entry applied: summary, and examples for the path parameters, the
    request body and every 2xx answer with a body."""

    def __post_init__(self) -> None:
        doc = _BY_ID.get(self.operation_id or "")
        if doc is not None:
            _apply(self, doc)


@dataclasses.dataclass
class _Verbatim(BaseSchemaObject):
    """An example as written. Litestar drops None values from the document's dicts, but an example's
    nulls are part of what it shows (and of what its schema requires)."""

    value: Any = None

    def to_schema(self) -> Any:
        return copy.deepcopy(self.value)


def _apply(operation: Operation, doc: OperationDoc) -> None:
    if doc.summary:
        operation.summary = doc.summary
    for parameter in operation.parameters or []:
        if isinstance(parameter, Parameter) and parameter.name in doc.params:
            parameter.example = doc.params[parameter.name]
    body = operation.request_body
    if doc.request is not None and body is not None and not hasattr(body, "ref"):
        for media in body.content.values():
            media.example = _Verbatim(doc.request)
    if doc.response is None:
        return
    for status, response in (operation.responses or {}).items():
        if status.startswith("2") and isinstance(response, OpenAPIResponse):
            for media_type, media in (response.content or {}).items():
                if media_type.startswith(("application/json", "text/")):
                    media.example = _Verbatim(doc.response)
