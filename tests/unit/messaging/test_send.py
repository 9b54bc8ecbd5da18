"""The `whatsapp_message` job type (core/messaging/send.py): its payload and the request body."""

from __future__ import annotations

import uuid

import msgspec

from core.catalog import load_job_types
from core.engine.job_types import get_job_type, validate_payload
from core.messaging.send import WhatsAppMessagePayload, request_body
from core.platform.settings import Settings


def test_the_payload_takes_exactly_one_of_template_and_text() -> None:
    load_job_types(Settings())
    job_type = get_job_type("whatsapp_message")
    ok, errors = validate_payload(job_type, {"to": "+14155550100", "text": "hi", "timezone": "Asia/Kolkata"})
    assert errors == [] and ok is not None and ok["respect_quiet_hours"] is True
    _, errors = validate_payload(job_type, {"to": "+14155550100"})
    assert [(e.field, e.message) for e in errors] == [
        ("payload", "give exactly one of payload.template and payload.text")
    ]
    _, errors = validate_payload(
        job_type, {"to": "+14155550100", "text": "hi", "template": {"name": "t", "language": "en"}}
    )
    assert [e.field for e in errors] == ["payload"]
    _, errors = validate_payload(job_type, {"to": "0044 20 7946 0000", "text": "hi"})
    assert [e.field for e in errors] == ["payload.to"]
    _, errors = validate_payload(job_type, {"to": "+14155550100", "text": "hi", "timezone": "Mars/Olympus"})
    assert "unknown time zone 'Mars/Olympus'" in errors[0].message


def test_the_request_body_is_the_cloud_apis() -> None:
    outbound_id = uuid.uuid4()
    template = msgspec.convert(
        {
            "to": "+14155550100",
            "template": {"name": "order_shipped", "language": "en_US", "components": [{"type": "body"}]},
        },
        WhatsAppMessagePayload,
    )
    assert request_body(template, outbound_id) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+14155550100",
        "biz_opaque_callback_data": str(outbound_id),
        "type": "template",
        "template": {
            "name": "order_shipped",
            "language": {"code": "en_US"},
            "components": [{"type": "body"}],
        },
    }
    text = msgspec.convert({"to": "+14155550100", "text": "hello"}, WhatsAppMessagePayload)
    body = request_body(text, outbound_id)
    assert (body["type"], body["text"]) == ("text", {"body": "hello"})
