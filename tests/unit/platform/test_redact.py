"""The log and error redactor (core/platform/redact.py): keys, tokens, bodies and numbers removed from
log lines, and errors shown to readers without secrets or SQL values but with their code."""

from __future__ import annotations

import json
import uuid

import sqlalchemy.exc

from core.engine.retry import error_record
from core.platform.redact import REDACTED, Redactor, learn_secrets, provider_secrets, redacted_error
from core.platform.settings import Settings
from tests.services import TEST_DATA_KEY


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


def test_errors_shown_to_readers_lose_secrets_and_sql_values_but_keep_their_code() -> None:
    settings = Settings(
        database_url="postgresql://jobyard:pg-Pa55word@db.internal:5432/jobyard",
        redis_url="redis://:redis-Pa55word@redis.internal:6379/0",
        whatsapp_token="EAAG-whatsapp-token-value",
        data_key=TEST_DATA_KEY,
    )
    redactor = Redactor(provider_secrets(settings))
    orig = Exception(
        'duplicate key value violates unique constraint "jobs_business_key"\n'
        "DETAIL:  Key (business_key)=(customer-4711-secret) already exists."
    )
    statement = "INSERT INTO jobs (business_key, payload) VALUES (%(business_key)s, %(payload)s)"
    params = {"business_key": "customer-4711-secret", "payload": '{"card": "4111111111111111"}'}
    errors = [
        sqlalchemy.exc.IntegrityError(statement, params, orig),
        sqlalchemy.exc.DataError(
            "SELECT %(x)s::int",
            {"x": "abc"},
            Exception(
                "invalid input syntax for type integer: \"hunter2-value\"\nLINE 1: SELECT 'hunter2-value'::int\n               ^"
            ),
        ),
        RuntimeError("could not reach postgresql://jobyard:pg-Pa55word@db.internal:5432/jobyard"),
        RuntimeError("redis said no with password redis-Pa55word and token EAAG-whatsapp-token-value"),
        RuntimeError("https://user:url-secret-99@example.com/hook answered 500"),
    ]
    for exc in errors:
        try:
            raise exc
        except Exception as raised:
            stored = error_record(raised)
        shown = redacted_error(stored, redactor)
        text = json.dumps(shown)
        for leak in ("customer-4711-secret", "4111111111111111", "hunter2-value", "pg-Pa55word",
                     "redis-Pa55word", "EAAG-whatsapp-token-value", "url-secret-99"):  # fmt: skip
            assert leak not in text, (leak, text)
        assert shown["code"] == stored["code"] and shown["retryable"] == stored["retryable"]
        assert REDACTED in text
    # The shape of the message stays: what failed, just not with what.
    shown = redacted_error(error_record(errors[0]), redactor)
    assert "duplicate key value violates unique constraint" in shown["message"]


def test_secrets_learnt_after_start_are_redacted_by_every_redactor() -> None:
    redactor = Redactor(provider_secrets(Settings()))  # built before the secret is known
    token = "tenant-token-" + uuid.uuid4().hex
    assert token in redactor.text(f"sending with {token}")
    learn_secrets(token, None, "short")  # None and too-short values are ignored, not matched everywhere
    assert redactor.text(f"sending with {token}") == f"sending with {REDACTED}"
    assert Redactor().text(f"x{token}y") == f"x{REDACTED}y"
    assert redactor.text("a short word") == "a short word"
    # The API's fields for them are dropped by name, whatever they hold.
    event = {"access_token": "x", "app_secret": "y", "verify_token": "z", "phone_number_id": "1065"}
    assert redactor(None, "info", event) == {
        "access_token": REDACTED,
        "app_secret": REDACTED,
        "verify_token": REDACTED,
        "phone_number_id": "1065",
    }


def test_a_plain_line_passes_as_it_is_and_any_other_is_redacted_in_full() -> None:
    """The processor's quick look (all texts of a flat or batch line at once) lets nothing through
    that the full walk would change: numbers next to the separator it joins texts with, numbers in
    other digits, keys deep in a batch's list, sensitive names at any depth."""
    redactor = Redactor(["EAAG-whatsapp-token"])
    job = str(uuid.uuid4())
    plain = {
        "event": "jobs_succeeded",
        "count": 2,
        "jobs": [{"job_id": job, "request_id": None, "attempt": 1}],
    }
    assert redactor(None, "info", plain) is plain
    tricky = [
        "+447700900123",
        "call 447700900123.",
        "x\x00447700900123",
        "447700900123\x00",
        "1" + "".join(chr(0x660 + int(d)) for d in "44770090012"),  # Arabic-Indic digits after the 1
        "jy_abcdefghijk",
        "BeArEr abc.def",
        "sk-abcdefghijklmnopqrstuv",
        "redis://:pw@host",
        "with EAAG-whatsapp-token in it",
    ]
    for text in tricky:
        for event in (
            {"event": "e", "job_id": job, "detail": text},
            {"event": "e", "jobs": [{"job_id": job}, {"job_id": job, "request_id": text}]},
            {"event": "e", "jobs": [{"job_id": job, "payload": {"note": text}}]},
        ):
            out = redactor(None, "info", event)
            assert out == redactor.value(event) and out != event, (text, out)
    for name in ("text", "Token", "api_key"):
        event = {"event": "e", "jobs": [{"job_id": job, name: "x"}]}
        assert redactor(None, "info", event) == {"event": "e", "jobs": [{"job_id": job, name: REDACTED}]}
    # Digits that make no phone number stay, however many.
    assert redactor.text(f"{job} 2026-12-05T03:17:55.443535Z v1.2345678 id-44770090012") == (
        f"{job} 2026-12-05T03:17:55.443535Z v1.2345678 id-44770090012"
    )
