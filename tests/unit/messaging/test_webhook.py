"""Webhook signatures (core/messaging/webhook.py), checked against the exact body; customers' messages
read from a verified body."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from core.messaging.numbers import WhatsAppNumber
from core.messaging.webhook import inbound, signature, verify_signature


def test_signatures_are_checked_against_the_exact_body() -> None:
    body = b'{"object":"whatsapp_business_account"}'
    good = signature("s3cret", body)
    assert good.startswith("sha256=") and len(good) == 7 + 64
    assert verify_signature("s3cret", body, good)
    assert not verify_signature("s3cret", body + b" ", good)
    assert not verify_signature("other", body, good)
    assert not verify_signature("s3cret", body, None)
    assert not verify_signature("s3cret", body, good.removeprefix("sha256="))
    assert not verify_signature("s3cret", body, "sha1=" + good[7:])


def _message(**fields: Any) -> dict[str, Any]:
    return {"from": "447700900123", "id": "wamid.1", "type": "text", "text": {"body": "hi"}, **fields}


def test_customers_messages_are_read_from_a_body_as_far_as_they_make_sense() -> None:
    number = WhatsAppNumber(tenant="shop-a", phone_number_id="300000000000001")
    now = datetime.now(UTC)
    an_hour_ago = int((now - timedelta(hours=1)).timestamp())
    messages = [
        _message(timestamp=str(an_hour_ago)),
        _message(id="wamid.2", text={"body": "Stop"}, timestamp="1"),  # implausibly old: now
        _message(id="wamid.3", type="image", image={"id": "m1"}, timestamp=str(int(now.timestamp()) + 86400)),
        _message(id="wamid.4", text={"body": "y" * 5000}),
        _message(id="wamid.5", **{"from": "not a number"}),
        _message(id="wamid with spaces"),
        _message(id=None),
        _message(id="wamid.8", type=7),
        "not a message",
    ]
    found = inbound([(number, {"messages": messages})])
    assert [m.message_id for m in found] == ["wamid.1", "wamid.2", "wamid.3", "wamid.4"]
    first, stop, image, long = found
    assert (first.customer, first.kind, first.text, first.stop) == ("+447700900123", "text", "hi", False)
    assert first.at == datetime.fromtimestamp(an_hour_ago, UTC) and first.number is number
    assert stop.stop and stop.at >= now
    assert (image.kind, image.text) == ("image", None) and image.at <= datetime.now(UTC)
    assert long.text == "y" * 4096
