"""Cursors of paginated lists (core/platform/pagination.py): round trip, and garbage refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from core.platform.pagination import BadCursor, decode_cursor, encode_cursor


def test_cursor_round_trip_and_garbage() -> None:
    stamp, ident = datetime(2026, 11, 22, 10, 0, tzinfo=UTC) + timedelta(microseconds=5), uuid.uuid4()
    assert decode_cursor(encode_cursor(stamp, ident)) == (stamp, ident)
    for bad in ("", "!!!", "bm90IGEgY3Vyc29y", encode_cursor(stamp, ident)[:-4]):
        with pytest.raises(BadCursor):
            decode_cursor(bad)
