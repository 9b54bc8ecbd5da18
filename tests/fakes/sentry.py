"""A local Sentry ingest endpoint: takes the SDK's envelope POSTs (``/api/<project>/envelope/``) and
keeps each event item, and the raw text of every envelope so a test can search all of it."""

from __future__ import annotations

import gzip
import json
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.base import FakeHTTPServer, read_body, reply_json


class FakeSentry(FakeHTTPServer):
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        super().__init__()
        #: The DSN that sends here (any public key; project 1).
        self.dsn = f"http://public@127.0.0.1:{self.port}/1"

    def post(self, request: BaseHTTPRequestHandler) -> None:
        body = read_body(request)
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        text = body.decode()
        lines = text.splitlines()
        events = []
        # The envelope's header, then per item its header and its payload.
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == "event":
                events.append(json.loads(payload))
        with self._lock:
            self.raw.append(text)
            self.events += events
        reply_json(request, 200, {})
