"""A small website for the scrape tests: a shop's product page (/p/42), a page rendered by JavaScript, a redirect chain, a page that
never finishes loading, a page whose script never stops, redirects and subresources that lead to
127.0.0.1, error statuses and a slow page; ``down`` makes every page 503. It records every request it gets."""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from tests.fakes.base import FakeHTTPServer, reply

#: A 1x1 red PNG.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


@dataclass(frozen=True)
class Hit:
    path: str
    host: str
    user_agent: str


def _pages(port: int) -> dict[str, str]:
    internal = f"http://127.0.0.1:{port}"
    return {
        "/js": """<html><head><title>Rendered later</title></head><body>
<div id="app">Loading</div><img src="/pixel.png">
<script>setTimeout(() => {
  document.getElementById("app").innerHTML =
    '<h1 class="headline">Rendered by JavaScript</h1>' +
    '<span class="price">12.50</span><span class="price">9.99</span>' +
    '<a href="/next?page=2">next</a> <a href="https://example.org/about">about</a>';
}, 500);</script></body></html>""",
        "/landing": "<html><head><title>Landing</title></head><body><p>You made it.</p></body></html>",
        "/shot": """<html><head><title>Picture</title></head>
<body style="background:#1e90ff"><h1>Screenshot me</h1><img src="/pixel.png" width=50 height=50></body></html>""",
        "/loop": "<html><head><title>Loop</title></head><body>x<script>while (true) {}</script></body></html>",
        "/plain": "<html><head><title>Plain</title></head><body><p>Nothing special.</p></body></html>",
        "/slow": "<html><head><title>Slow</title></head><body><p>Slowly served.</p></body></html>",
        "/p/42": """<html><head><title>Blue teapot</title></head><body><h1>Blue teapot</h1>
<p class="description">A stoneware teapot in cobalt blue that holds six cups of tea.</p>
<span class="price">34.00</span></body></html>""",
        "/subresources": f"""<html><head><title>Public page</title>
<script src="{internal}/internal.js"></script></head>
<body><p>Public content</p><iframe src="{internal}/internal"></iframe>
<script>fetch("{internal}/internal?from=fetch").catch(() => {{}});</script></body></html>""",
    }


class FakeSite(FakeHTTPServer):
    protocol_version = "HTTP/1.1"

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self._release = threading.Event()
        self._in_flight = 0
        #: Most /slow requests served at the same time.
        self.max_slow_in_flight = 0
        #: While set, every page answers 503: the site is down.
        self.down = False
        super().__init__()
        self.pages = _pages(self.port)

    def get(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0]
        with self._lock:
            self.hits.append(
                Hit(path, request.headers.get("Host", ""), request.headers.get("User-Agent", ""))
            )
        self._serve(request, path)

    def _serve(self, h: BaseHTTPRequestHandler, path: str) -> None:
        if self.down:
            reply(h, 503, b"down for maintenance", "text/plain")
            return
        redirects = {
            "/redirect/3": (302, "/redirect/2"),
            "/redirect/2": (301, "/redirect/1"),
            "/redirect/1": (307, "/landing"),
            "/to-loopback": (302, f"http://127.0.0.1:{self.port}/secret"),
            "/to-localhost": (302, f"http://localhost:{self.port}/secret"),
        }
        if path in redirects:
            status, location = redirects[path]
            h.send_response(status)
            h.send_header("Location", location)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if path == "/hang":  # headers and half a page, then nothing until the test ends
            h.send_response(200)
            h.send_header("Content-Type", "text/html")
            h.end_headers()
            h.wfile.write(b"<html><head><title>Hang</title></head><body>never finished")
            h.wfile.flush()
            self._release.wait(120)
            return
        if path.startswith("/status/"):
            reply(h, int(path.rsplit("/", 1)[1]), b"", "text/html")
            return
        if path == "/pixel.png":
            reply(h, 200, PIXEL, "image/png")
            return
        if path == "/slow":
            with self._lock:
                self._in_flight += 1
                self.max_slow_in_flight = max(self.max_slow_in_flight, self._in_flight)
            time.sleep(0.4)
            with self._lock:
                self._in_flight -= 1
        page = self.pages.get(path)
        if page is None:
            reply(h, 404, b"not here", "text/plain")
        else:
            reply(h, 200, page.encode(), "text/html; charset=utf-8")

    def paths(self) -> list[str]:
        with self._lock:
            return [hit.path for hit in self.hits]

    def close(self) -> None:
        self._release.set()
        super().close()
