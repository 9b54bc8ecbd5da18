"""Sealed fields, without services: each ciphertext is bound to its job type and field, only the
fields a type declares are sealed, opened and masked, client input is never taken as ciphertext,
values of the older format and of older keys keep opening, and the key ring is read from the
settings or from `jobyard up`'s home file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.engine.job_types import (
    JobType,
    open_payload,
    payload_context,
    register_job_type,
    same_payload,
    shown_payload,
    validate_payload,
)
from core.engine.retry import error_record
from core.errors import DataKeyError, DataKeyMismatch, SealedValueError
from core.platform.crypto import (
    DATA_KEY_FILE,
    DataCipher,
    KeyRing,
    generate_data_key,
    key_label,
    key_ring,
    looks_sealed,
    mask_phones_in,
    use_data_key,
)
from core.platform.redact import Redactor, provider_secrets
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


@given(clear=st.text(max_size=64), context=st.text(min_size=1, max_size=40), other=st.text(max_size=40))
def test_a_value_opens_only_in_the_context_it_was_sealed_for(clear: str, context: str, other: str) -> None:
    cipher = DataCipher(KEY)
    sealed = cipher.seal(clear, context)
    assert looks_sealed(sealed) and cipher.open(sealed, context) == clear
    if other != context:
        with pytest.raises(SealedValueError) as caught:
            cipher.open(sealed, other)
        assert caught.value.key_held and caught.value.key_id == cipher.key_id


def test_values_of_the_older_format_still_open_in_any_field() -> None:
    legacy = seal_v1(KEY, NUMBER)
    assert legacy.startswith("jy1:")
    cipher = DataCipher(KEY)
    assert cipher.open(legacy, "payload:whatsapp_message:to") == NUMBER
    assert cipher.open(legacy, "opt_outs.address") == NUMBER
    # Relabelled as the new format, the same bytes do not open: the versions cannot be confused.
    with pytest.raises(SealedValueError):
        cipher.open("jy2:" + legacy[4:], "opt_outs.address")


def test_the_ring_opens_values_of_older_keys_and_seals_with_the_current_one(ring: KeyRing) -> None:
    old = DataCipher(OLD_KEY)
    under_old = old.seal(NUMBER, "opt_outs.address")
    assert ring.open(under_old, "opt_outs.address") == NUMBER
    assert ring.open(seal_v1(OLD_KEY, NUMBER), "opt_outs.address") == NUMBER
    fresh = ring.seal(NUMBER, "opt_outs.address")
    assert ring.is_current(fresh) and not ring.is_current(under_old)
    assert ring.key_id == DataCipher(KEY).key_id and ring.key_ids == {ring.key_id, old.key_id}
    assert ring.lookup_hash(NUMBER) == DataCipher(KEY).lookup_hash(NUMBER)
    assert set(ring.lookup_hashes(NUMBER)) == {ring.lookup_hash(NUMBER), old.lookup_hash(NUMBER)}

    stranger = DataCipher(generate_data_key())
    with pytest.raises(
        SealedValueError, match=f"key-{stranger.key_id}, which this process does not hold"
    ) as c:
        ring.open(stranger.seal(NUMBER, "opt_outs.address"), "opt_outs.address")
    assert not c.value.key_held and c.value.key_id == stranger.key_id
    for damaged in ("jy2:", "jy2:abc", "jy2:abc:%%%", "jy2:abc:QUJD", "jy9:abc:QUJD", "jy1:x"):
        with pytest.raises(SealedValueError):
            ring.open(damaged, "opt_outs.address")


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


def test_the_ring_comes_from_settings_or_the_home_file(tmp_path: Path) -> None:
    current, older = generate_data_key(), generate_data_key()
    (tmp_path / DATA_KEY_FILE).write_text(f"{current}\n# retired on 2026-11-24\n{older}\n")
    from_home = key_ring(Settings(home=tmp_path))
    assert from_home.key_id == DataCipher(current).key_id
    assert from_home.key_ids == {DataCipher(current).key_id, DataCipher(older).key_id}
    # JOBYARD_DATA_KEY wins over the home file, whose lines are then not read at all.
    from_env = key_ring(Settings(home=tmp_path, data_key=KEY, data_keys_old=(OLD_KEY,)))
    assert from_env.key_ids == {DataCipher(KEY).key_id, DataCipher(OLD_KEY).key_id}
    with pytest.raises(DataKeyError, match=r"JOBYARD_DATA_KEYS_OLD \(key 1\) must be 32 bytes"):
        key_ring(Settings(data_key=KEY, data_keys_old=("c2hvcnQ=",)))
    assert Settings.from_env({"JOBYARD_DATA_KEYS_OLD": f"{older}, {OLD_KEY}"}).data_keys_old == (
        older,
        OLD_KEY,
    )
    assert older not in repr(Settings(data_keys_old=(older,)))
    assert older not in Redactor(provider_secrets(Settings(data_keys_old=(older,)))).text(f"key {older}")


def test_a_key_label_is_never_masked_as_a_phone_number() -> None:
    assert mask_phones_in("sealed under key-12345678.") == "sealed under key-12345678."
    assert key_label("12345678") == "key-12345678"
