"""A fake HTTP provider that fails on demand: each key answers a scripted series of responses
(status, Retry-After, a stall), then the default (200 unless an outage is switched on)."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.base import FakeHTTPServer, read_body, reply_json


@dataclass(frozen=True)
class Respond:
    status: int = 200
    retry_after: float | None = None
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class Stall:
    seconds: float


Behavior = Respond | Stall


class FakeProvider(FakeHTTPServer):
    def __init__(self) -> None:
        self._scripts: dict[str, deque[Behavior]] = defaultdict(deque)
        self._calls: dict[str, list[float]] = defaultdict(list)
        self.default: Behavior = Respond(200)
        super().__init__()

    def post(self, request: BaseHTTPRequestHandler) -> None:
        key = request.path.rsplit("/", 1)[-1]
        read_body(request)
        behavior = self._next(key)
        if isinstance(behavior, Stall):
            time.sleep(behavior.seconds)
            behavior = Respond(200)
        answer = behavior.body or {"ok": True, "key": key}
        reply_json(request, behavior.status, answer, retry_after=behavior.retry_after)

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
