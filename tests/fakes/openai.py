"""A fake OpenAI-compatible chat-completions server: answers, or fails on demand, and records calls
(each body, and the Authorization header it came with). With ``hang_s`` it holds each request that
long before answering, as a slow model does, and records a client that closes its connection
meanwhile (``disconnects``)."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.base import FakeHTTPServer, read_body, reply_json
from tests.fakes.provider import Respond


class FakeOpenAI(FakeHTTPServer):
    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[dict[str, Any]] = []
        #: The Authorization header of each request, in the order of ``requests``.
        self.authorizations: list[str | None] = []
        #: The OpenAI-Organization header of each request (absent: None).
        self.organizations: list[str | None] = []
        self.times: list[float] = []
        self._script: deque[Respond] = deque()
        self.default: Respond = Respond(200)
        #: Seconds every answer takes, as a real model's do.
        self.latency_s = 0.0
        #: Seconds each request is held, watching for the client to close its connection.
        self.hang_s = 0.0
        #: When a held request's client closed its connection (time.time()), one per request.
        self.disconnects: list[float] = []
        #: Set when a request starts being held.
        self.holding = threading.Event()
        super().__init__()
        self.base_url = f"{self.url}/v1"

    def post(self, request: BaseHTTPRequestHandler) -> None:
        body = json.loads(read_body(request) or b"{}")
        with self._lock:
            self.requests.append(body)
            self.authorizations.append(request.headers.get("Authorization"))
            self.organizations.append(request.headers.get("OpenAI-Organization"))
            self.times.append(time.time())
            behavior = self._script.popleft() if self._script else self.default
            n = len(self.requests)
        if self.latency_s:
            time.sleep(self.latency_s)
        if self.hang_s and not self._held(request):
            return  # the client is gone: nobody to answer
        if request.path != "/v1/chat/completions":
            behavior = Respond(404)
        if behavior.status == 200:
            last = body["messages"][-1]["content"] if body.get("messages") else ""
            answer: dict[str, Any] = {
                "id": f"chatcmpl-{n}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake-model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"{self.name} says: re {last}"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
            }
        else:
            answer = {"error": {"message": f"scripted {behavior.status}", "type": "test", "code": None}}
        reply_json(request, behavior.status, answer, retry_after=behavior.retry_after)

    def _held(self, request: BaseHTTPRequestHandler) -> bool:
        """Hold the request for ``hang_s``; False (recorded) if the client closed its connection."""
        sock: socket.socket = request.connection
        self.holding.set()
        deadline = time.monotonic() + self.hang_s
        while time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                try:
                    closed = sock.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    closed = True
                if closed:
                    with self._lock:
                        self.disconnects.append(time.time())
                    return False
        return True

    def script(self, *behaviors: Respond) -> None:
        with self._lock:
            self._script.extend(behaviors)

    def calls(self) -> int:
        with self._lock:
            return len(self.requests)
