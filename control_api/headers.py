"""Security headers on every response of the app, JSON and HTML alike.

Every response: no MIME sniffing, no referrer, never framed, not cached (API answers carry job data
and, once, new key secrets). HTML pages (the dashboard) also get a strict Content Security Policy:
scripts and styles only from our own origin, so no inline script runs even if some text slips
through escaping. The API docs viewers under /schema (served only with JOBYARD_API_DOCS_UI) load
from a CDN with an inline bootstrap script; they get a policy that allows exactly that and nothing else.

Over https (directly, or through a proxy of JOBYARD_TRUSTED_PROXIES that says so) every answer also
carries Strict-Transport-Security, so a browser that once reached the API over TLS never again
sends a session cookie over plain http. Over http it is not sent: browsers ignore it there anyway,
and a farm tried on http://localhost must not be pinned to https.
"""

from __future__ import annotations

from litestar.types import Message, Scope

#: The policy of every HTML page we serve.
STRICT_CSP = (
    "default-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)
#: For the third-party API docs viewer under /schema (Redoc, Swagger UI...): their CDN and inline
#: bootstrap, still never framed and never posting anywhere.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://unpkg.com; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://unpkg.com https://fonts.googleapis.com; "
    "font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https://cdn.jsdelivr.net; "
    "worker-src 'self' blob:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
#: Non-HTML answers: nothing to run, but still never framed.
DATA_CSP = "default-src 'none'; frame-ancestors 'none'"

#: One year, the usual value (and what preload lists ask for); no includeSubDomains, since the API
#: may share its domain with sites that are not ours to pin.
HSTS = b"max-age=31536000"

_ALWAYS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


def _docs_ui(scope: Scope) -> bool:
    settings = getattr(scope["app"].state, "settings", None) if "app" in scope else None
    return bool(getattr(settings, "api_docs_ui", False))


def _policy(scope: Scope, content_type: bytes) -> bytes:
    if not content_type.startswith(b"text/html"):
        return DATA_CSP.encode()
    path = scope.get("path", "")
    docs = (path == "/schema" or path.startswith("/schema/")) and _docs_ui(scope)
    return (DOCS_CSP if docs else STRICT_CSP).encode()


async def add_security_headers(message: Message, scope: Scope) -> None:
    """A `before_send` hook: it sees every answer of the app, also the router's own 404 and 405 and
    answers from exception handlers, which middleware does not."""
    if message["type"] != "http.response.start":
        return
    # A handler's own policy is replaced: the app's pages get this one policy, no looser.
    headers = [
        (k, v) for k, v in message.get("headers", []) if bytes(k).lower() != b"content-security-policy"
    ]
    present = {bytes(k).lower() for k, _ in headers}
    content_type = next((bytes(v) for k, v in headers if bytes(k).lower() == b"content-type"), b"")
    extra = [h for h in _ALWAYS if h[0] not in present]
    extra.append((b"content-security-policy", _policy(scope, content_type.lower())))
    if b"cache-control" not in present:
        extra.append((b"cache-control", b"no-store"))
    if scope.get("scheme") == "https" and b"strict-transport-security" not in present:
        extra.append((b"strict-transport-security", HSTS))
    message["headers"] = headers + extra
