"""Numbers and STOP words (core/messaging/optouts.py)."""

from __future__ import annotations

import pytest

from core.messaging.optouts import e164, is_e164, is_stop_request


def test_e164_numbers() -> None:
    assert is_e164("+14155550100") and is_e164("+919876543210")
    for bad in ("14155550100", "+04155550100", "+1 415 555 0100", "+1234", "+1234567890123456", ""):
        assert not is_e164(bad), bad
    assert e164("14155550100") == "+14155550100"  # a WhatsApp id (the webhook's "from")
    with pytest.raises(ValueError, match=r"E\.164"):
        e164("not a number")


def test_stop_words_are_whole_messages_in_any_case() -> None:
    for text in ("STOP", "stop", " Stop ", "STOP ALL", "stop  all", "Unsubscribe", "stop!"):
        assert is_stop_request(text), text
    for text in ("please don't stop", "stopping by later", "", "STOP sending me offers?"):
        assert not is_stop_request(text), text
