"""Personal data at rest: phone numbers sealed with AES-GCM, found again by a keyed hash.

A data key (32 random bytes in base64) never leaves the process. From it two keys are derived with
HKDF, one to encrypt and one to hash, so a leaked lookup hash says nothing about the encryption key.
A sealed value is a string, so it fits wherever the number stood (a JSON payload, a text column):
``jy2:<key id>:<base64(nonce | ciphertext | tag)>``. The key id names the data key that sealed it,
and the AES-GCM associated data binds the value to what it is (its *context*: a job type's field,
an opt-out's address...), so a ciphertext copied into another field or job type does not open.
Values sealed before that binding existed (``jy1:``, associated data = the key id alone) still open.

A process holds a key ring: the current key (JOBYARD_DATA_KEY), which seals and hashes, and older
keys (JOBYARD_DATA_KEYS_OLD), which still open what they sealed and match what they hashed, so
`jobyard data-key rotate` can move every value to the current key while the farm runs.

The ring is installed once per process at start (``use_data_key``), like the settings; code that
stores or reads a number asks ``data_cipher()``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import threading
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import DataKeyError, SealedValueError
from core.platform.settings import Settings, get_settings

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: What ``seal`` writes: key id and context bound by the associated data.
SEALED_PREFIX = "jy2:"
#: Written before issue 15 (associated data = the key id alone); opened, never written.
LEGACY_PREFIX = "jy1:"
#: Any version of the sealed form, present or future: no phone number (nor any value a client may
#: send in a sealed field) starts like this.
_LOOKS_SEALED = re.compile(r"jy[0-9]+:")
#: Where `jobyard up` keeps the key ring it generated on a home's first start (mode 0600): the
#: current key on the first line, older keys still needed on the lines after it.
DATA_KEY_FILE = "data.key"
_NONCE_BYTES = 12
#: Anything that looks like a phone number inside free text (log lines, error messages): E.164, or
#: its digits alone as WhatsApp ids are written. Not digits inside a word, an id or a decimal.
PHONE_IN_TEXT = re.compile(r"(?<![\w+.-])\+?[1-9]\d{6,14}(?![\w-]|\.\d)")


def generate_data_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _derive(key: bytes, purpose: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869) of ``key``, no salt, 32 bytes: one block of the expand step.

    The same bytes as cryptography's ``HKDF(SHA256(), 32, None, info).derive(key)`` (a unit test
    compares them), from the standard library: every process derives its keys at start, and
    cryptography's OpenSSL bindings cost some 8 MiB of RSS in a process that never seals or opens a
    value (docs/performance.md#memory). AES-GCM itself is loaded on the first seal or open.
    """
    info = b"jobyard " + purpose
    prk = hmac.new(bytes(hashlib.sha256().digest_size), key, hashlib.sha256).digest()  # extract
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()  # expand: T(1), 32 bytes


def _decode_key(encoded: str, name: str) -> bytes:
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise DataKeyError(f"{name} is not base64") from None
    if len(key) != 32:
        raise DataKeyError(f"{name} must be 32 bytes (base64 of 32 random bytes); it is {len(key)}")
    return key


def key_label(key_id: str) -> str:
    """How a key id is written in messages, logs and audit entries: ``key-1a2b3c4d``. The prefix
    keeps an id that happens to be all digits from being masked like a phone number."""
    return f"key-{key_id}"


def looks_sealed(value: object) -> bool:
    """Whether ``value`` has the sealed form (any version), whether or not it would open."""
    return isinstance(value, str) and _LOOKS_SEALED.match(value) is not None


def key_id_of(sealed: str) -> str | None:
    """The key id a sealed value names, or None if it has none."""
    parts = sealed.split(":", 2)
    return parts[1] if len(parts) == 3 and looks_sealed(sealed) else None


def _associated_data(key_id: str, context: str) -> bytes:
    return f"{SEALED_PREFIX}{key_id}:{context}".encode()


class DataCipher:
    """Seals and opens phone numbers, and hashes them for lookups, with one data key."""

    def __init__(self, encoded_key: str, name: str = "JOBYARD_DATA_KEY") -> None:
        key = _decode_key(encoded_key, name)
        self._seal_key = _derive(key, b"seal")
        self._hash_key = _derive(key, b"lookup")
        #: Public fingerprint of the key, stored in every sealed value and beside every hash.
        self.key_id = hashlib.sha256(_derive(key, b"id")).hexdigest()[:8]

    @cached_property
    def _aead(self) -> AESGCM:
        # Here, not at the top: cryptography's OpenSSL bindings load with the first value sealed or
        # opened, in the processes that handle personal data (see _derive).
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM(self._seal_key)

    def seal(self, clear: str, context: str) -> str:
        """``clear`` sealed fresh (a new nonce) and bound to ``context``, e.g. ``payload:whatsapp_message:to``."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, clear.encode(), _associated_data(self.key_id, context))
        return f"{SEALED_PREFIX}{self.key_id}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, context: str) -> str:
        """The clear value; SealedValueError if it is not this key's, damaged, or bound elsewhere."""
        from cryptography.exceptions import InvalidTag  # with AES-GCM (see _aead)

        version, key_id, raw = _parse(sealed)
        if key_id != self.key_id:
            raise SealedValueError(
                f"is sealed under {key_label(key_id)}, not {key_label(self.key_id)}", key_id, key_held=False
            )
        data = self.key_id.encode() if version == LEGACY_PREFIX else _associated_data(key_id, context)
        try:
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], data).decode()
        except (InvalidTag, UnicodeDecodeError):
            raise SealedValueError(
                f"does not open with {key_label(key_id)}: the value is damaged, or it was sealed for "
                f"another field or job type than {context}",
                key_id,
                key_held=True,
            ) from None

    def lookup_hash(self, clear: str) -> str:
        """HMAC-SHA256 of the number: equal numbers match, and without the key nothing can be guessed."""
        return hmac.new(self._hash_key, clear.encode(), hashlib.sha256).hexdigest()


def _parse(sealed: str) -> tuple[str, str, bytes]:
    version = sealed[:4]
    if version not in (SEALED_PREFIX, LEGACY_PREFIX):
        raise SealedValueError(
            f"is not a sealed value this version knows ({sealed[:4]!r})", None, key_held=False
        )
    try:
        key_id, blob = sealed[4:].split(":", 1)
        raw = base64.b64decode(blob, validate=True)
    except (ValueError, binascii.Error):
        raise SealedValueError("is a damaged sealed value", key_id_of(sealed), key_held=False) from None
    if len(raw) <= _NONCE_BYTES:
        raise SealedValueError("is a damaged sealed value", key_id, key_held=False)
    return version, key_id, raw


class KeyRing:
    """The process's data keys: the current one seals and hashes; each key opens and matches what it
    sealed and hashed, so values under a retired key keep working until a rotation moves them."""

    def __init__(self, current: DataCipher, older: Iterable[DataCipher] = ()) -> None:
        self.current = current
        self._by_id = {c.key_id: c for c in (*older, current)}

    @property
    def key_id(self) -> str:
        """The current key's id: what new values and hashes are written under."""
        return self.current.key_id

    @property
    def key_ids(self) -> frozenset[str]:
        """Every key id this process holds."""
        return frozenset(self._by_id)

    def seal(self, clear: str, context: str) -> str:
        return self.current.seal(clear, context)

    def open(self, sealed: str, context: str) -> str:
        """Open with whichever key of the ring sealed it; SealedValueError names the key id when not held."""
        _, key_id, _ = _parse(sealed)
        cipher = self._by_id.get(key_id)
        if cipher is None:
            raise SealedValueError(
                f"is sealed under {key_label(key_id)}, which this process does not hold (it holds "
                f"{', '.join(key_label(k) for k in sorted(self._by_id))})",
                key_id,
                key_held=False,
            )
        return cipher.open(sealed, context)

    def is_current(self, sealed: object) -> bool:
        """Whether a stored value is already in the current format under the current key."""
        return isinstance(sealed, str) and sealed.startswith(f"{SEALED_PREFIX}{self.key_id}:")

    def lookup_hash(self, clear: str) -> str:
        """The hash written for a new row: under the current key."""
        return self.current.lookup_hash(clear)

    def lookup_hashes(self, clear: str) -> list[str]:
        """The number's hash under every key of the ring: a lookup matches rows written under any."""
        return [c.lookup_hash(clear) for c in self._by_id.values()]


def mask_phone(number: str) -> str:
    """``+447700900789`` -> ``+44*******789``: enough to tell numbers apart, not to dial one."""
    if looks_sealed(number):
        return "+***"
    digits = number.lstrip("+")
    if len(digits) < 7:
        return "***"
    return "+" + digits[:2] + "*" * (len(digits) - 5) + digits[-3:]


def mask_phones_in(text: str) -> str:
    return PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)), text)


def mask_phones_deep(value: Any) -> Any:
    """``value`` (JSON-like) with every number inside its strings masked: for records kept as they
    were written (errors, audit entries), where a number would sit in clear."""
    if isinstance(value, str):
        return mask_phones_in(value)
    if isinstance(value, dict):
        return {k: mask_phones_deep(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_phones_deep(v) for v in value]
    return value


# -- the process's keys -------------------------------------------------------------------------

_active: KeyRing | None = None
_lock = threading.Lock()


def _home_keys(settings: Settings) -> list[str]:
    try:
        text = (settings.home_path / DATA_KEY_FILE).read_text()
    except OSError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def resolve_data_key(settings: Settings) -> str | None:
    """JOBYARD_DATA_KEY, else the current key `jobyard up` saved in JOBYARD_HOME; None when neither is there."""
    if settings.data_key:
        return settings.data_key
    found = _home_keys(settings)
    return found[0] if found else None


def resolve_old_data_keys(settings: Settings) -> tuple[str, ...]:
    """JOBYARD_DATA_KEYS_OLD, and the home file's further lines when the current key comes from it."""
    from_home = () if settings.data_key else tuple(_home_keys(settings)[1:])
    return (*settings.data_keys_old, *from_home)


def key_ring(settings: Settings) -> KeyRing:
    """The key ring the settings describe; DataKeyError says what is missing or malformed."""
    encoded = resolve_data_key(settings)
    if not encoded:
        raise DataKeyError(
            "JOBYARD_DATA_KEY is not set: phone numbers are encrypted at rest with it. Generate one "
            "with `jobyard data-key generate`, keep it in your secret store, and give the same key to "
            "every API, worker and scheduler process (`jobyard up` makes one in JOBYARD_HOME by itself)."
        )
    older = [
        DataCipher(k, f"JOBYARD_DATA_KEYS_OLD (key {i + 1})")
        for i, k in enumerate(resolve_old_data_keys(settings))
    ]
    return KeyRing(DataCipher(encoded), older)


def use_data_key(settings: Settings) -> KeyRing:
    """Install the process's key ring from settings; every process calls this at start."""
    global _active
    ring = key_ring(settings)
    with _lock:
        _active = ring
    return ring


def data_cipher() -> KeyRing:
    """The process's key ring; built from the environment's settings if no start-up installed one."""
    ring = _active
    return ring if ring is not None else use_data_key(get_settings())


def masked(value: str, context: str) -> str:
    """A number, sealed or clear, as the API and the logs show it."""
    if not looks_sealed(value):
        return mask_phone(value)
    try:
        return mask_phone(data_cipher().open(value, context))
    except SealedValueError:  # sealed with a key this process does not have, or not for this field
        return mask_phone(value)


def ensure_data_key_file(home: Path) -> bool:
    """Create JOBYARD_HOME/data.key on a home's first start; returns whether it was created."""
    path = home / DATA_KEY_FILE
    if path.exists():
        return False
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(generate_data_key() + "\n")
    return True
