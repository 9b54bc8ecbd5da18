"""The pure pieces of WhatsApp messaging: quiet hours, numbers, STOP words, webhook signatures, the
Graph error mapping, postponement in the retry policy, and the payload."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest

from core.engine.job_types import get_job_type, load_job_modules, validate_payload
from core.engine.retry import decide, error_record
from core.errors import PermanentError, Postponed, RateLimitedError, RetryableError, SettingsError
from core.messaging.optouts import e164, is_e164, is_stop_request
from core.messaging.quiet_hours import QuietHours, next_allowed, parse_quiet_hours
from core.messaging.send import WhatsAppMessagePayload, request_body
from core.messaging.webhook import signature, verify_signature
from core.platform.settings import Settings
from core.providers.whatsapp import GraphError, classify

KOLKATA = ZoneInfo("Asia/Kolkata")
NIGHT = QuietHours(time(21), time(9))


def _at(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone).astimezone(UTC)  # type: ignore[misc]


# -- quiet hours -----------------------------------------------------------------------------------


def test_a_window_across_midnight_holds_the_evening_and_the_early_morning() -> None:
    assert [
        NIGHT.contains(time(h, m)) for h, m in [(20, 59), (21, 0), (23, 59), (0, 0), (8, 59), (9, 0)]
    ] == [
        False,
        True,
        True,
        True,
        True,
        False,
    ]


def test_a_same_day_window_and_an_empty_one() -> None:
    lunch = QuietHours(time(12), time(14))
    assert [lunch.contains(time(h)) for h in (11, 12, 13, 14)] == [False, True, True, False]
    assert not QuietHours(time(9), time(9)).contains(time(9))


def test_quiet_hours_are_parsed_or_switched_off() -> None:
    assert parse_quiet_hours("21:00-09:00") == NIGHT
    assert parse_quiet_hours(" 7:30 - 8:05 ") == QuietHours(time(7, 30), time(8, 5))
    assert parse_quiet_hours("off") is None
    for bad in ("21-09", "25:00-09:00", "21:00", "evening"):
        with pytest.raises(SettingsError, match="JOBYARD_QUIET_HOURS"):
            parse_quiet_hours(bad)


def test_late_evening_waits_for_the_next_morning_in_the_recipients_zone() -> None:
    # 23:00 in Kolkata (17:30 UTC) -> 09:00 the next day in Kolkata (03:30 UTC).
    until = next_allowed(_at(KOLKATA, 2026, 3, 10, 23, 0), KOLKATA, NIGHT)
    assert until == _at(KOLKATA, 2026, 3, 11, 9, 0)
    assert until.utcoffset() == timedelta(0)


def test_early_morning_waits_until_nine_the_same_day() -> None:
    assert next_allowed(_at(KOLKATA, 2026, 3, 11, 8, 59, 58), KOLKATA, NIGHT) == _at(
        KOLKATA, 2026, 3, 11, 9, 0
    )


def test_outside_quiet_hours_or_with_them_off_a_message_goes_now() -> None:
    for hour in (9, 12, 20):
        assert next_allowed(_at(KOLKATA, 2026, 3, 11, hour, 0), KOLKATA, NIGHT) is None
    assert next_allowed(_at(KOLKATA, 2026, 3, 11, 23, 0), KOLKATA, None) is None


def test_the_same_instant_is_quiet_in_one_zone_and_not_in_another() -> None:
    instant = datetime(2026, 3, 11, 22, 0, tzinfo=UTC)  # 22:00 London, 03:30 Kolkata, 18:00 New York
    assert next_allowed(instant, ZoneInfo("Europe/London"), NIGHT) is not None
    assert next_allowed(instant, KOLKATA, NIGHT) == _at(KOLKATA, 2026, 3, 12, 9, 0)
    assert next_allowed(instant, ZoneInfo("America/New_York"), NIGHT) is None


def test_the_morning_after_a_dst_change_is_nine_local_time() -> None:
    london = ZoneInfo("Europe/London")  # clocks go forward on 2026-03-29 at 01:00 UTC
    until = next_allowed(_at(london, 2026, 3, 28, 22, 0), london, NIGHT)
    assert until == datetime(2026, 3, 29, 8, 0, tzinfo=UTC)  # 09:00 BST


# -- numbers and STOP ------------------------------------------------------------------------------


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


# -- webhook signatures ----------------------------------------------------------------------------


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


# -- the Graph error mapping -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "kind", "our_code"),
    [
        (429, 130429, RateLimitedError, "rate_limited"),
        (400, 130429, RateLimitedError, "rate_limited"),
        (400, 131056, RateLimitedError, "rate_limited"),
        (400, 4, RateLimitedError, "rate_limited"),
        (400, 80007, RateLimitedError, "rate_limited"),
        (400, 131048, RateLimitedError, "rate_limited"),
        (400, 131026, PermanentError, "message_undeliverable"),
        (400, 131030, PermanentError, "recipient_invalid"),
        (400, 131047, PermanentError, "outside_service_window"),
        (400, 131051, PermanentError, "request_invalid"),
        (400, 100, PermanentError, "request_invalid"),
        (404, 132001, PermanentError, "template_invalid"),
        (401, 190, PermanentError, "provider_auth_failed"),
        (403, 200, PermanentError, "provider_auth_failed"),
        (400, 131031, PermanentError, "account_restricted"),
        (500, 131000, RetryableError, "provider_unavailable"),
        (503, 131016, RetryableError, "provider_unavailable"),
        (500, 999999, RetryableError, "provider_unavailable"),
        (429, 999999, RateLimitedError, "rate_limited"),
        (400, 999999, PermanentError, "provider_rejected"),
    ],
)
def test_graph_errors_map_onto_the_error_tree(status: int, code: int, kind: type, our_code: str) -> None:
    body = {"error": {"message": "(#x) boom", "type": "OAuthException", "code": code, "fbtrace_id": "Abc"}}
    exc = classify(GraphError.from_response(status, body))
    assert type(exc) is kind
    assert exc.code == our_code
    assert f"Graph error {code}" in exc.message and "fbtrace_id Abc" in exc.message


def test_rate_limit_waits_follow_the_code_or_retry_after() -> None:
    pair = classify(GraphError.from_response(400, {"error": {"code": 131056, "message": "pair"}}))
    assert isinstance(pair, RateLimitedError) and pair.retry_after == 6.0
    told = classify(GraphError.from_response(429, {"error": {"code": 130429}}), retry_after="12")
    assert isinstance(told, RateLimitedError) and told.retry_after == 12.0


def test_a_body_that_is_not_a_graph_error_falls_back_to_the_http_status() -> None:
    assert classify(GraphError.from_response(502, "<html>bad gateway</html>")).code == "provider_unavailable"
    assert classify(GraphError.from_response(400, None)).code == "provider_rejected"


# -- postponement ----------------------------------------------------------------------------------


def test_a_postponement_waits_until_then_without_spending_the_budget() -> None:
    load_job_modules(Settings())
    job_type = get_job_type("whatsapp_message")
    now = datetime(2026, 3, 10, 17, 30, tzinfo=UTC)
    until = now + timedelta(hours=10)
    error = error_record(Postponed(until, "quiet hours"))
    assert (error["code"], error["retryable"], error["postponed_until"]) == (
        "postponed",
        True,
        until.isoformat(),
    )
    # Even with the budget used up, a postponement is a free wait.
    d = decide(job_type, attempt=9, retry_base=0, max_retries=0, error=error, rate_limit_waits=99, now=now)
    assert (d.status, d.run_at, d.free, d.outcome) == ("retrying", until, True, "postponed")
    # A postponement to a moment already past cannot spin: it waits at least the minimum backoff.
    past = error_record(Postponed(now - timedelta(seconds=1)))
    d = decide(job_type, attempt=1, retry_base=0, max_retries=5, error=past, rate_limit_waits=0, now=now)
    assert d.run_at == now + timedelta(seconds=job_type.min_backoff_s)


# -- the payload -----------------------------------------------------------------------------------


def test_the_payload_takes_exactly_one_of_template_and_text() -> None:
    load_job_modules(Settings())
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
