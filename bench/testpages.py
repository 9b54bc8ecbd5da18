"""The scrape scenario's pages: N distinct local pages (a title, 20 paragraphs, 29 links and an
image) from a threaded HTTP server on 127.0.0.1, in the harness's own process, so serving them is
in neither side's CPU."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
]


def page_html(n: int) -> bytes:
    paragraphs = "".join(
        f"<p>{' '.join(WORDS[(n + i + j) % len(WORDS)] for j in range(40))}</p>" for i in range(20)
    )
    links = "".join(f'<a href="/page/{(n + k) % 1000}">page {(n + k) % 1000}</a> ' for k in range(1, 30))
    return (
        f"<html><head><title>Page {n}</title></head><body><h1>Page {n}</h1>"
        f'<img src="/img/{n}.png" width=200 height=100>{paragraphs}<nav>{links}</nav></body></html>'
    ).encode()


def serve_pages() -> ThreadingHTTPServer:
    """Serves /page/N (and a 404 for anything else, the image included) until ``shutdown()``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path.startswith("/page/"):
                body, kind = page_html(int(self.path.rsplit("/", 1)[1])), "text/html; charset=utf-8"
                status = 200
            else:
                body, kind, status = b"", "text/plain", 404
            try:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except ConnectionError:  # a browser closed with its page
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def host(h: int) -> str:
    """The h-th host name of the pages. A `.localhost` name: Chromium resolves it to loopback by
    itself (the peer has no proxy), and the farm's allow list pins it to 127.0.0.1."""
    return f"site{h}.localhost"


def page_urls(port: int, pages: int, hosts: int) -> list[str]:
    return [f"http://{host(n % hosts)}:{port}/page/{n}" for n in range(pages)]
