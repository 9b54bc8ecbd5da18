"""What every fake HTTP server of the tests shares: a threaded server on 127.0.0.1 and a free port,
served from a daemon thread from construction until ``close()``, with quiet logs and one way to
answer.

A fake subclasses ``FakeHTTPServer`` and answers in ``post(request)`` and ``get(request)`` (a method
it does not answer gets 501, as from any ``BaseHTTPRequestHandler``). Scripted failures speak the
provider's terms where they fit (tests/fakes/provider.py: ``Respond``, ``Stall``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeHTTPServer:
    #: "HTTP/1.1" for a fake that keeps connections open, as a browser expects.
    protocol_version = "HTTP/1.0"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = fake.protocol_version

            def do_GET(self) -> None:
                fake.get(self)

            def do_POST(self) -> None:
                fake.post(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.port: int = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def get(self, request: BaseHTTPRequestHandler) -> None:
        request.send_error(501, "Unsupported method ('GET')")

    def post(self, request: BaseHTTPRequestHandler) -> None:
        request.send_error(501, "Unsupported method ('POST')")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def read_body(request: BaseHTTPRequestHandler) -> bytes:
    return request.rfile.read(int(request.headers.get("content-length") or 0))


def reply(
    request: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> None:
    request.send_response(status)
    for name, value in (headers or {}).items():
        request.send_header(name, value)
    request.send_header("Content-Type", content_type)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)


def reply_json(
    request: BaseHTTPRequestHandler,
    status: int,
    answer: Any,
    *,
    retry_after: float | str | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """``answer`` as JSON, with a Retry-After header when one is given."""
    extra = dict(headers or {})
    if retry_after is not None:
        extra["Retry-After"] = str(retry_after)
    reply(request, status, json.dumps(answer).encode(), "application/json", extra)
