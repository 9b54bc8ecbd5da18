"""How deep a JSON body nests (control_api/limits.py): examples, and property tests (hypothesis) that
the streaming scanner agrees with the real nesting of any JSON, takes any bytes and stays linear."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from control_api.limits import json_depth_exceeds
from tests.properties import JSON_LEAVES, JSON_VALUES, PROPERTY


def test_json_depth_scan() -> None:
    assert not json_depth_exceeds(b'{"a": [1, {"b": "[[[[[[[["}]}', 3)
    assert json_depth_exceeds(b'{"a": [1, {"b": [[]]}]}', 3)
    assert not json_depth_exceeds(b'{"a": "\\"[[[[\\""}', 1)
    # An unterminated string with escaped quotes stays linear (and is left to the JSON decoder).
    assert not json_depth_exceeds(b'[[[[["' + b'\\"' * 200_000 + b"\\", 10)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


def nested(levels: int, leaf: Any) -> Any:
    for i in range(levels):
        leaf = [leaf] if i % 2 else {"k[{": leaf}
    return leaf


@PROPERTY
@given(
    value=JSON_VALUES | st.builds(nested, st.integers(0, 40), JSON_LEAVES),
    limit=st.integers(0, 40),
    ensure_ascii=st.booleans(),
    indent=st.sampled_from([None, 0, 2]),
)
def test_the_depth_scanner_agrees_with_the_real_nesting_of_any_json(
    value: Any, limit: int, ensure_ascii: bool, indent: int | None
) -> None:
    body = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent).encode()
    assert json_depth_exceeds(body, limit) == (depth(value) > limit)


#: The scan as a plain loop over its tokens (a whole string, escapes included, or one bracket), one
#: at a time: what the scanner must answer for any bytes, malformed ones too.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.?)*(?:"|\Z)|[\[\]{}]', re.DOTALL)


def exceeds_token_by_token(body: bytes, limit: int) -> bool:
    depth = 0
    for match in _TOKEN.finditer(body):
        token = match.group()
        depth += 1 if token in (b"[", b"{") else -1 if token in (b"]", b"}") else 0
        if depth > limit:
            return True
    return False


@PROPERTY
@given(
    body=st.binary(max_size=300) | st.lists(st.sampled_from(list(b'[]{}"\\ a\n')), max_size=60).map(bytes),
    limit=st.integers(0, 8),
)
def test_the_depth_scanner_agrees_with_a_token_by_token_scan_of_any_bytes(body: bytes, limit: int) -> None:
    assert json_depth_exceeds(body, limit) == exceeds_token_by_token(body, limit)


@PROPERTY
@given(body=st.binary(max_size=300), limit=st.integers(0, 8))
def test_the_depth_scanner_takes_any_bytes(body: bytes, limit: int) -> None:
    result = json_depth_exceeds(body, limit)  # never raises, on malformed input too
    brackets = body.count(b"[") + body.count(b"{")
    if brackets <= limit:
        assert result is False


def test_the_depth_scanner_is_linear_on_hostile_strings() -> None:
    # An unterminated string of escapes, a million brackets inside a string: each scanned once.
    for body in (b'"' + b"\\" * 1_000_001, b'["' + b"[" * 1_000_000 + b'"]', b"[" * 100_000):
        json_depth_exceeds(body, 32)
    assert json_depth_exceeds(b"[" * 33, 32) and not json_depth_exceeds(b'["' + b"[" * 100 + b'"]', 32)
