"""Security headers (control_api/headers.py): HSTS over https only."""

from __future__ import annotations

import asyncio
from typing import Any

from control_api.headers import HSTS, add_security_headers


def _headers_for(scheme: str) -> dict[bytes, bytes]:
    message: dict[str, Any] = {
        "type": "http.response.start",
        "headers": [(b"content-type", b"application/json")],
    }
    asyncio.run(add_security_headers(message, {"type": "http", "scheme": scheme, "path": "/v1/jobs"}))  # type: ignore[arg-type]
    return dict(message["headers"])


def test_hsts_is_sent_over_https_only() -> None:
    assert _headers_for("https")[b"strict-transport-security"] == HSTS
    assert b"strict-transport-security" not in _headers_for("http")
