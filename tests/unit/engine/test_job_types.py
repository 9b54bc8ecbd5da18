"""Job types without services (core/engine/job_types.py): payload validation (defaults, every bad
field listed, cross-field checks) and sealed fields, each ciphertext bound to its job type and
field, only the declared fields sealed, opened and masked, client input never taken as ciphertext."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest

from core.catalog import load_job_types
from core.engine.job_types import (
    JobType,
    get_job_type,
    open_payload,
    payload_context,
    register_job_type,
    same_payload,
    shown_payload,
    validate_payload,
)
from core.engine.retry import error_record
from core.errors import DataKeyMismatch
from core.platform.crypto import (
    DataCipher,
    KeyRing,
    generate_data_key,
    use_data_key,
)
from core.platform.settings import Settings
from tests.legacy_sealing import seal_v1

KEY, OLD_KEY = generate_data_key(), generate_data_key()

NUMBER = "+447700900123"


class NotePayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    to: str
    note: str = ""


#: A deployment's own type with a sealed field that has no pattern of its own.
NOTE = register_job_type(JobType(name="test_unit_note", payload=NotePayload, sealed_fields=("to",)))

OTHER = register_job_type(JobType(name="test_unit_other", payload=NotePayload, sealed_fields=("to",)))


@pytest.fixture(autouse=True)
def ring() -> Iterator[KeyRing]:
    yield use_data_key(Settings(data_key=KEY, data_keys_old=(OLD_KEY,)))


def test_only_declared_fields_are_sealed_opened_and_masked(ring: KeyRing) -> None:
    stored = NOTE.seal({"to": NUMBER, "note": "jy1:x"})
    assert ring.is_current(stored["to"]) and stored["note"] == "jy1:x"
    assert open_payload(NOTE, stored) == {"to": NUMBER, "note": "jy1:x"}
    assert shown_payload(NOTE.name, stored) == {"to": "+44*******123", "note": "jy1:x"}
    # A ciphertext in a field that is not sealed is data: never opened, never masked.
    loose = {"to": stored["to"], "note": stored["to"]}
    assert open_payload(NOTE, loose)["note"] == stored["to"]
    assert shown_payload(NOTE.name, loose)["note"] == stored["to"]
    # A type that seals nothing shows and opens its payload as it is.
    assert shown_payload("no_such_type", {"to": stored["to"]}) == {"to": stored["to"]}


def test_a_ciphertext_of_another_type_or_field_fails_its_job_with_a_clear_code(ring: KeyRing) -> None:
    foreign = OTHER.seal({"to": NUMBER})["to"]
    with pytest.raises(DataKeyMismatch, match=r"payload\.to of this test_unit_note job does not open") as c:
        open_payload(NOTE, {"to": foreign})
    record = error_record(c.value)
    assert record["code"] == "data_key_mismatch" and record["retryable"] is False
    assert f"key-{ring.key_id}" in record["message"]

    stranger = DataCipher(generate_data_key())
    with pytest.raises(DataKeyMismatch) as c:
        open_payload(NOTE, {"to": stranger.seal(NUMBER, payload_context(NOTE.name, "to"))})
    assert f"key-{stranger.key_id}" in c.value.message and "JOBYARD_DATA_KEYS_OLD" in c.value.message
    # A field a redrive's patch sets again need not open.
    assert open_payload(NOTE, {"to": foreign}, keep={"to"}) == {"to": foreign}


def test_client_input_is_never_taken_as_ciphertext(ring: KeyRing) -> None:
    real = NOTE.seal({"to": NUMBER})["to"]
    for value in (real, seal_v1(KEY, NUMBER), "jy1:x", "jy2:whatever", "jy7:future"):
        payload, errors = validate_payload(NOTE, {"to": value})
        assert payload is None
        assert [(e.field, e.message.split(" (")[0]) for e in errors] == [
            ("payload.to", "looks like a sealed value")
        ]
    # Anywhere else it is just text.
    payload, errors = validate_payload(NOTE, {"to": NUMBER, "note": real})
    assert errors == [] and payload == {"to": NUMBER, "note": real}


def test_a_stored_ciphertext_is_carried_forward_and_payloads_compare_in_clear(ring: KeyRing) -> None:
    stored = NOTE.seal({"to": NUMBER, "note": "n"})
    assert NOTE.seal(stored) == stored  # a schedule's firing copies its stored payload
    again = NOTE.seal({"to": NUMBER, "note": "n"})
    assert again["to"] != stored["to"] and same_payload(NOTE, stored, again)
    assert not same_payload(NOTE, stored, NOTE.seal({"to": "+447700900124", "note": "n"}))
    assert not same_payload(NOTE, stored, {**again, "note": "m"})
    assert not same_payload(NOTE, stored, {"to": "jy2:broken:AAAA", "note": "n"})


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
