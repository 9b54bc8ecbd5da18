"""Webhook signatures (core/messaging/webhook.py), checked against the exact body."""

from __future__ import annotations

from core.messaging.webhook import signature, verify_signature


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
