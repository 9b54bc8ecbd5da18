"""A fake text-embeddings-inference server: POST / with {"inputs": [texts]} answers one vector per
text (words hashed into DIM buckets, so texts sharing words are near), or a scripted failure."""

from __future__ import annotations

import hashlib
import json
from collections import deque
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.base import FakeHTTPServer, read_body, reply_json

DIM = 32


def vector(text: str) -> list[float]:
    out = [0.0] * DIM
    for word in text.lower().split():
        out[int(hashlib.sha256(word.strip(".,").encode()).hexdigest(), 16) % DIM] += 1.0
    return out


class FakeEmbeddingServer(FakeHTTPServer):
    def __init__(self) -> None:
        self.failures: deque[tuple[int, str | None]] = deque()
        self.inputs: list[list[str]] = []
        super().__init__()

    def post(self, request: BaseHTTPRequestHandler) -> None:
        body = json.loads(read_body(request))
        with self._lock:
            failure = self.failures.popleft() if self.failures else None
            if failure is None:
                self.inputs.append(list(body["inputs"]))
        status, retry_after = failure or (200, None)
        answer: Any = [vector(t) for t in body["inputs"]] if failure is None else {"error": "scripted"}
        reply_json(request, status, answer, retry_after=retry_after)

    def fail(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        with self._lock:
            self.failures.extend([(status, retry_after)] * times)
