"""A caller's webhook receiver: verifies every delivery with the Standard Webhooks reference library.

What it got is kept per ``webhook-id`` (a repeat is counted, not stored twice), with every
delivery that failed verification. Modes, switched by the test: ``ok`` (204), ``fail`` (500),
``hang`` (reads the request and never answers until ``release()`` or ``close()``), and ``down()``
/ ``up()``, which close the listening socket and open it again on the same port (connections are
refused meanwhile, as for a receiver that is not running).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.fakes.base import read_body


class WebhookReceiver:
    def __init__(self) -> None:
        self.secret: str | None = None
        self.mode = "ok"
        #: webhook-id -> the verified body, in the order they first came.
        self.received: dict[str, dict[str, Any]] = {}
        self.repeats = 0
        self.rejected: list[str] = []
        self.hits = 0
        self._released = threading.Event()
        self._lock = threading.Lock()
        self.port = 0
        self._serve()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def _serve(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._post(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _post(self, request: BaseHTTPRequestHandler) -> None:
        body = read_body(request)
        with self._lock:
            self.hits += 1
            mode = self.mode
        if mode == "hang":
            self._released.wait()
            return
        if mode == "fail":
            request.send_error(500, "the receiver is failing")
            return
        assert self.secret is not None, "the test registers the endpoint before any delivery"
        try:
            verified = Webhook(self.secret).verify(body, dict(request.headers.items()))
        except WebhookVerificationError as exc:
            with self._lock:
                self.rejected.append(str(exc))
            request.send_error(400, "bad signature")
            return
        msg_id = request.headers["webhook-id"]
        with self._lock:
            if msg_id in self.received:
                self.repeats += 1
            else:
                self.received[msg_id] = json.loads(json.dumps(verified))
        request.send_response(204)
        request.end_headers()

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        with self._lock:
            return [b for b in self.received.values() if b["type"] == event_type]

    def down(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def up(self) -> None:
        self._serve()

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self._released.set()
        self.down()
