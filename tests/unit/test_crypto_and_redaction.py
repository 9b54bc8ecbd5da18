"""Sealing phone numbers, keyed hashes, masks, and the log redactor, without services."""

from __future__ import annotations

import base64

import pytest

from control_api.limits import json_depth_exceeds
from core.errors import DataKeyError
from core.platform.crypto import DataCipher, generate_data_key, mask_phone, mask_phones_in
from core.platform.redact import Redactor, provider_secrets
from core.platform.settings import Settings


def test_a_sealed_number_opens_only_with_its_key_and_hashes_stay_stable() -> None:
    key = generate_data_key()
    cipher = DataCipher(key)
    sealed = cipher.seal("+447700900123", "payload:whatsapp_message:to")
    assert sealed.startswith(f"jy2:{cipher.key_id}:") and "447700900123" not in sealed
    assert cipher.seal("+447700900123", "payload:whatsapp_message:to") != sealed  # a fresh nonce each time
    assert cipher.open(sealed, "payload:whatsapp_message:to") == "+447700900123"
    assert cipher.lookup_hash("+447700900123") == DataCipher(key).lookup_hash("+447700900123")
    assert cipher.lookup_hash("+447700900123") != cipher.lookup_hash("+447700900124")
    other = DataCipher(generate_data_key())
    assert other.lookup_hash("+447700900123") != cipher.lookup_hash("+447700900123")
    with pytest.raises(DataKeyError, match="is sealed under key-"):
        other.open(sealed, "payload:whatsapp_message:to")
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(DataKeyError):
        cipher.open(tampered, "payload:whatsapp_message:to")


def test_bad_data_keys_are_refused_with_a_reason() -> None:
    with pytest.raises(DataKeyError, match="32 bytes"):
        DataCipher(base64.b64encode(b"short").decode())
    with pytest.raises(DataKeyError, match="base64"):
        DataCipher("not base64 at all!")


def test_masks() -> None:
    assert mask_phone("+447700900789") == "+44*******789"
    assert mask_phone("+14155550100") == "+14******100"
    assert mask_phones_in("call +447700900789 or 14155550100.") == "call +44*******789 or +14******100."
    # Not numbers: ids, decimals, timestamps and uuids stay as they are.
    for text in ("6f0c1234-1234-1234-1234-123456789012", "t=1767225600.123", "2026-11-22T10:00:00.123456Z"):
        assert mask_phones_in(text) == text


def test_the_redactor_removes_keys_tokens_bodies_and_numbers() -> None:
    settings = Settings(whatsapp_token="EAAGtokentoken", openai_api_key="sk-abcdefghijklmnopqrstu")
    redact = Redactor(provider_secrets(settings))
    event = {
        "event": "sending to +447700900789 with jy_abcdefghijklmnopqrstuvwxyz01234 and EAAGtokentoken",
        "headers": {"Authorization": "Bearer jy_abc"},
        "payload": {"to": "+447700900789", "text": "hello Bob", "template": {"components": [{"x": 1}]}},
        "exception": "Traceback ...\nValueError: key sk-abcdefghijklmnopqrstu for Bearer xyz.abc",
        "attempt": 2,
    }
    out = redact(None, "info", event)
    assert out["event"] == "sending to +44*******789 with jy_abcdefg...[redacted] and [redacted]"
    assert out["headers"] == {"Authorization": "[redacted]"}
    assert out["payload"] == {
        "to": "+44*******789",
        "text": "[redacted]",
        "template": {"components": "[redacted]"},
    }
    assert "sk-abcdefghijklmnopqrstu" not in out["exception"] and "xyz.abc" not in out["exception"]
    assert out["attempt"] == 2


def test_json_depth_scan() -> None:
    assert not json_depth_exceeds(b'{"a": [1, {"b": "[[[[[[[["}]}', 3)
    assert json_depth_exceeds(b'{"a": [1, {"b": [[]]}]}', 3)
    assert not json_depth_exceeds(b'{"a": "\\"[[[[\\""}', 1)
    # An unterminated string with escaped quotes stays linear (and is left to the JSON decoder).
    assert not json_depth_exceeds(b'[[[[["' + b'\\"' * 200_000 + b"\\", 10)
