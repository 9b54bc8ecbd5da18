"""The Retry-After header, read: no HTTP client needed (core/providers/http.py, page.py and llm.py use it,
and the last two are imported by processes that may never make an HTTP call)."""

from __future__ import annotations

import email.utils
import time


def parse_retry_after(value: str | None, default: float = 1.0) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return default
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(when.timestamp() - time.time(), 0.0)
