"""`POST /v1/jobs` on a short path: the same contract as the route in control_api/jobs.py, with one
layer instead of Litestar's routing, injection, middleware stack and response objects.

The single-job enqueue is the API's busiest request, and for a request that goes through, the
full stack costs more than the work itself: a request object, the route's state copied, the
handler's arguments resolved, six middlewares each wrapping ``send``. ``LeanEnqueue`` (installed by
control_api/app.py's ``App`` when JOBYARD_API_LEAN_ENQUEUE is on, tracing is off and Sentry is not
configured) answers the request itself when it is the plain case: a key this process has cached as
live holding ``jobs:write``, an address not being limited, a body of a declared length that is a
valid job. It then does what the full stack does, in the same order and with the same code: the
trusted proxies' headers (control_api/forwarded.py), the request id and the access line
(control_api/request_id.py), the usage clock, the key's and the tenant's rates
(control_api/ratelimit.py), the queue cap and the group commit (control_api/jobs.py), the HTTP
metrics (control_api/http_metrics.py), the security headers (control_api/headers.py); an error
after the job was handed to the group commit is answered by the app's own exception handlers
(control_api/errors.py).

Anything else is handed to the full stack untouched, before anything was spent: no cached key, a
key without the scope, a blocked address somewhere, no Content-Length. A request that was already
counted against the rate limits (a 429 to answer, or a body that is too deep, not JSON or not a
valid job) goes to the full stack with the body it sent and the verdicts already spent
(``SPENT_VERDICTS``), so it answers with the full stack's own words and is not counted twice.
tests/integration/api/test_lean_enqueue.py checks that both paths answer alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import msgspec
from litestar import Litestar
from litestar.serialization import encode_json
from litestar.types import Message, Receive, ReceiveMessage, Scope, Send

from control_api.addresslimit import AddressLimiter
from control_api.auth import KeyLookups, _touch
from control_api.errors import answer_error
from control_api.forwarded import TrustedProxies, apply_forwarded
from control_api.headers import add_security_headers
from control_api.http_metrics import HttpMetricsMiddleware
from control_api.jobs import _enqueue
from control_api.limits import json_depth_exceeds
from control_api.metrics import PROMETHEUS
from control_api.ratelimit import SPENT_VERDICTS, KeyRateLimiter, TenantRateLimiter, Verdicts, spend
from control_api.readerview import FULL_ERRORS_SCOPE, shown
from control_api.request_id import HEADER as REQUEST_ID_HEADER
from control_api.request_id import on_access_line, start_request, write_access_line
from control_api.schemas import JobIn
from core.access.keys import ApiKey, KeyCache, UsageClock, carried_secret, well_formed
from core.platform.redact import Redactor
from core.platform.settings import Settings

#: The route this path answers (what Litestar names its template too, for the HTTP metrics).
PATH = "/v1/jobs"
#: The scope the route's guard demands (control_api/jobs.py, ``create``).
SCOPE = "jobs:write"
_JSON = (b"content-type", b"application/json")
_decode_job = msgspec.json.Decoder(JobIn).decode

Full = Callable[[Scope, Receive, Send], Coroutine[Any, Any, None]]


def wants(scope: Scope) -> bool:
    """Whether the request is one this path may take (the rest never reaches it)."""
    return scope["type"] == "http" and scope["path"] == PATH and scope.get("method") == "POST"  # type: ignore[comparison-overlap]


def _replay(messages: list[ReceiveMessage], receive: Receive) -> Receive:
    """``receive`` as if nothing had been read: ``messages`` first, then the connection's own."""
    pending = list(messages)

    async def replayed() -> ReceiveMessage:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


class LeanEnqueue:
    """The short path (module docstring); ``full`` is the app's own stack, for everything else."""

    def __init__(self, app: Litestar, full: Full) -> None:
        # What this path does in their place; another hook would be the full stack's alone.
        if list(app.before_send) != [add_security_headers] or any(
            (app.before_request, app.after_request, app.after_response)
        ):
            raise ValueError("the short path of POST /v1/jobs knows of no hook but add_security_headers")
        self.app = app
        self.full = full
        # The same metric children the full stack's middleware counts in (prometheus-client keeps one
        # metric per name; Litestar's middleware shares them between instances).
        self.metrics = HttpMetricsMiddleware(full, PROMETHEUS)
        #: Requests this path answered itself (the others went to the full stack).
        self.answered = 0
        self._security: dict[str, list[tuple[bytes, bytes]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        state = self.app.state
        address_limiter: AddressLimiter | None = getattr(state, "address_limiter", None)
        if address_limiter is None or address_limiter.any_blocked():
            await self.full(scope, receive, send)  # the gate's turn (control_api/addresslimit.py)
            return
        given = b""
        authorization = length = None
        api_key: bytes | None = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                given = value  # the last, as the full stack's dict of the headers keeps it
            elif name == b"authorization":
                authorization = value if authorization is None else authorization
            elif name == b"x-api-key":
                api_key = value if api_key is None else api_key
            elif name == b"content-length":
                length = value if length is None else b""
            elif name == b"transfer-encoding":
                length = b""
        settings: Settings = state.settings
        secret = (
            carried_secret(
                authorization.decode("latin-1") if authorization is not None else "",
                api_key.decode("latin-1") if api_key is not None else None,
            )
            or ""
        )
        cache: KeyCache = state.key_cache
        hit, key = cache.get(secret) if well_formed(secret) else (True, None)
        if not hit and cache.known(secret):
            # A live key's cached entry expired (JOBYARD_API_KEY_CACHE_SECONDS): its refresh, shared
            # with the requests in flight, as authentication would make it (control_api/auth.py). A
            # key found gone is left to the full stack, which finds it in the cache as gone.
            lookups: KeyLookups = state.key_lookups
            try:
                key = await lookups.lookup(secret)
            except Exception:  # the full stack tries again and answers the error
                key = None
        if (
            key is None
            or SCOPE not in key.scopes
            or not length
            or not length.isdigit()
            or int(length) > settings.max_body_bytes
        ):
            await self.full(scope, receive, send)
            return

        # From here on the request is this path's, or the full stack's with what was spent so far.
        request_id = start_request(given)
        own: Scope = {**scope}  # type: ignore[assignment]
        proxies: TrustedProxies | None = getattr(state, "trusted_proxies", None)
        if proxies is not None:
            apply_forwarded(own, proxies)
        clock: UsageClock = state.usage_clock
        if clock.due(key.id):
            await anyio.to_thread.run_sync(_touch, settings, key)
        limiter: KeyRateLimiter = state.rate_limiter
        tenants: TenantRateLimiter | None = getattr(state, "tenant_rate_limiter", None)
        verdicts = await spend(limiter, tenants, key)
        received: list[ReceiveMessage] = []
        chunks: list[bytes] = []
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        new_job = None
        if (
            verdicts.allowed
            and received[-1]["type"] == "http.request"
            and not json_depth_exceeds(body, settings.max_json_depth)
        ):
            try:
                job_in = _decode_job(body)
            except msgspec.DecodeError:
                pass
            else:
                new_job, _ = job_in.to_new_job(request_id, tenant=key.tenant, created_by=key.id)
        if new_job is None:
            # The full stack answers (its 429, 400, 413 or 422), with the verdicts already spent.
            scope.setdefault("state", {})[SPENT_VERDICTS] = verdicts
            await self.full(scope, _replay(received, receive), send)
            return

        own["state"] = own_state = {**own.get("state", {}), "request_id": request_id}
        own["path_template"] = PATH
        await self._answer(own, own_state, receive, send, new_job, key, verdicts, started)

    async def _answer(
        self,
        scope: Scope,
        state: dict[str, Any],
        receive: Receive,
        send: Send,
        new_job: Any,
        key: ApiKey,
        verdicts: Verdicts,
        started: float,
    ) -> None:
        self.answered += 1
        metrics = self.metrics
        app_name = metrics._config.app_name
        status = 500
        duration = 0.0
        extra = [*verdicts.key.headers()] if verdicts.key is not None else []
        request_id = state["request_id"].encode()

        async def send_wrapped(message: Message) -> None:
            nonlocal status, duration
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), *extra, (REQUEST_ID_HEADER, request_id)]
                await add_security_headers(message, scope)
            elif message["type"] == "http.response.body":
                duration = time.perf_counter() - started
            await send(message)

        async def send_created(status_code: int, body: bytes) -> None:
            # A job's answer: what send_wrapped would make of it, with the security headers worked out
            # once per scheme (they depend on nothing else for a JSON answer without them).
            nonlocal status, duration
            status = status_code
            headers = [
                _JSON,
                (b"content-length", str(len(body)).encode()),
                *extra,
                (REQUEST_ID_HEADER, request_id),
            ]
            headers += await self._security_headers(scope)
            await send({"type": "http.response.start", "status": status_code, "headers": headers})
            duration = time.perf_counter() - started
            await send({"type": "http.response.body", "body": body, "more_body": False})

        in_progress = metrics._child(metrics._in_progress, "POST", PATH, 200, app_name)
        in_progress.inc()
        try:
            try:
                (result,) = await _enqueue(self.app.state, [new_job])
            except Exception as exc:
                await answer_error(scope, receive, send_wrapped, exc)
                return
            job = result.job
            on_access_line(scope, job_id=str(job.id), type=job.type, created=result.created)
            if job.error and FULL_ERRORS_SCOPE not in key.scopes:
                redactor: Redactor = self.app.state.redactor
                job = shown(job, redactor)
            await send_created(201 if result.created else 200, encode_json(job))
        finally:
            in_progress.dec()
            if status >= 500:
                metrics._child(metrics._errors, "POST", PATH, status, app_name).inc()
            metrics._child(metrics._count, "POST", PATH, status, app_name).inc()
            metrics._child(metrics._time, "POST", PATH, status, app_name).observe(duration)
            write_access_line(scope, status, started)

    async def _security_headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        scheme = scope.get("scheme", "http")
        headers = self._security.get(scheme)
        if headers is None:
            message: Any = {"type": "http.response.start", "status": 201, "headers": [_JSON]}
            await add_security_headers(message, scope)
            headers = self._security[scheme] = message["headers"][1:]
        return headers
