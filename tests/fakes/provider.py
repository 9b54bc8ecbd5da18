"""A fake HTTP provider that fails on demand: each key answers a scripted series of responses
(status, Retry-After, a stall), then the default (200 unless an outage is switched on)."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Respond:
    status: int = 200
    retry_after: float | None = None
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class Stall:
    seconds: float


Behavior = Respond | Stall


class FakeProvider:
    def __init__(self) -> None:
        self._scripts: dict[str, deque[Behavior]] = defaultdict(deque)
        self._calls: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()
        self.default: Behavior = Respond(200)
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                key = self.path.rsplit("/", 1)[-1]
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                behavior = provider._next(key)
                if isinstance(behavior, Stall):
                    time.sleep(behavior.seconds)
                    behavior = Respond(200)
                body = json.dumps(behavior.body or {"ok": True, "key": key}).encode()
                self.send_response(behavior.status)
                if behavior.retry_after is not None:
                    self.send_header("Retry-After", str(behavior.retry_after))
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _next(self, key: str) -> Behavior:
        with self._lock:
            self._calls[key].append(time.time())
            script = self._scripts[key]
            return script.popleft() if script else self.default

    def script(self, key: str, *behaviors: Behavior) -> None:
        with self._lock:
            self._scripts[key].extend(behaviors)

    def calls(self, key: str) -> list[float]:
        with self._lock:
            return list(self._calls[key])

    def total_calls(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._calls.values())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
