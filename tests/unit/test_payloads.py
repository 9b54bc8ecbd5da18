from __future__ import annotations

import msgspec
import pytest

from core.catalog import load_job_types
from core.engine.job_types import JobType, get_job_type, validate_payload
from core.platform.settings import Settings


@pytest.fixture(scope="module")
def unread() -> JobType:
    load_job_types(Settings())
    return get_job_type("unread_count")


def test_defaults_are_filled_in(unread: JobType) -> None:
    payload, errors = validate_payload(unread, {"chat_id": "c", "user_id": "u"})
    assert errors == []
    assert payload == {"chat_id": "c", "user_id": "u", "op": "increment", "by": 1}


def test_every_bad_field_is_listed(unread: JobType) -> None:
    payload, errors = validate_payload(unread, {"chat_id": "", "op": "nope", "by": "2", "extra": 1})
    assert payload is None
    assert {e.field: e.message for e in errors} == {
        "payload.chat_id": "Expected `str` of length >= 1",
        "payload.user_id": "is required",
        "payload.op": "Invalid enum value 'nope'",
        "payload.by": "Expected `int`, got `str`",
        "payload.extra": "is not a known field",
    }


def test_a_non_object_payload_is_rejected(unread: JobType) -> None:
    _, errors = validate_payload(unread, ["chat_id"])
    assert [e.field for e in errors] == ["payload"]


def test_cross_field_checks_in_post_init_are_reported() -> None:
    class Window(msgspec.Struct):
        start: int
        end: int

        def __post_init__(self) -> None:
            if self.end < self.start:
                raise ValueError("end is before start")

    jt = JobType(name="window", payload=Window)
    _, errors = validate_payload(jt, {"start": 5, "end": 1})
    assert [(e.field, e.message) for e in errors] == [("payload", "end is before start")]
