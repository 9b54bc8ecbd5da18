"""Sealing, without services (core/platform/crypto.py): a sealed value opens only with its key and in
the context it was sealed for, values of the older format and of older keys keep opening, the key
ring is read from the settings or from `jobyard up`'s home file, keyed hashes stay stable, bad data
keys are refused with a reason, and phone numbers are masked."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import DataKeyError, SealedValueError
from core.platform.crypto import (
    DATA_KEY_FILE,
    DataCipher,
    KeyRing,
    _derive,
    generate_data_key,
    key_label,
    key_ring,
    looks_sealed,
    mask_phone,
    mask_phones_in,
    use_data_key,
)
from core.platform.redact import Redactor, provider_secrets
from core.platform.settings import Settings
from tests.legacy_sealing import seal_v1


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


@given(key=st.binary(min_size=32, max_size=32), purpose=st.binary(max_size=40))
def test_the_derived_keys_are_cryptographys_hkdf(key: bytes, purpose: bytes) -> None:
    """The standard-library HKDF the ring derives with at start gives the bytes of cryptography's."""
    # Imported here: the module under test no longer imports these at all.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    reference = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"jobyard " + purpose)
    assert _derive(key, purpose) == reference.derive(key)


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


KEY, OLD_KEY = generate_data_key(), generate_data_key()

NUMBER = "+447700900123"


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
