"""A fake OpenAI-compatible chat-completions server: answers, or fails on demand, and records calls."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.provider import Respond


class FakeOpenAI:
    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[dict[str, Any]] = []
        self.times: list[float] = []
        self._script: deque[Respond] = deque()
        self.default: Respond = Respond(200)
        #: Seconds every answer takes, as a real model's do.
        self.latency_s = 0.0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                with fake._lock:
                    fake.requests.append(body)
                    fake.times.append(time.time())
                    behavior = fake._script.popleft() if fake._script else fake.default
                    n = len(fake.requests)
                if fake.latency_s:
                    time.sleep(fake.latency_s)
                if self.path != "/v1/chat/completions":
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
                                "message": {"role": "assistant", "content": f"{fake.name} says: re {last}"},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
                    }
                else:
                    answer = {
                        "error": {"message": f"scripted {behavior.status}", "type": "test", "code": None}
                    }
                data = json.dumps(answer).encode()
                self.send_response(behavior.status)
                if behavior.retry_after is not None:
                    self.send_header("Retry-After", str(behavior.retry_after))
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def script(self, *behaviors: Respond) -> None:
        with self._lock:
            self._script.extend(behaviors)

    def calls(self) -> int:
        with self._lock:
            return len(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
