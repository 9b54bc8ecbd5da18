"""A fake text-embeddings-inference server: POST / with {"inputs": [texts]} answers one vector per
text (words hashed into DIM buckets, so texts sharing words are near), or a scripted failure."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DIM = 32


def vector(text: str) -> list[float]:
    out = [0.0] * DIM
    for word in text.lower().split():
        out[int(hashlib.sha256(word.strip(".,").encode()).hexdigest(), 16) % DIM] += 1.0
    return out


class FakeEmbeddingServer:
    def __init__(self) -> None:
        self.failures: deque[tuple[int, str | None]] = deque()
        self.inputs: list[list[str]] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
                with fake._lock:
                    failure = fake.failures.popleft() if fake.failures else None
                    if failure is None:
                        fake.inputs.append(list(body["inputs"]))
                status, retry_after = failure or (200, None)
                answer: Any = (
                    [vector(t) for t in body["inputs"]] if failure is None else {"error": "scripted"}
                )
                out = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fail(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        with self._lock:
            self.failures.extend([(status, retry_after)] * times)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
