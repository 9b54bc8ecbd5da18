"""Personal data at rest: phone numbers sealed with AES-GCM, found again by a keyed hash.

The data key (JOBYARD_DATA_KEY, 32 random bytes in base64) never leaves the process. From it two
keys are derived with HKDF, one to encrypt and one to hash, so a leaked lookup hash says nothing
about the encryption key. A sealed value is a string, so it fits wherever the number stood (a JSON
payload, a text column): ``jy1:<key id>:<base64(nonce | ciphertext | tag)>``. The key id names the
data key that sealed it, so a rotation can tell old values from new ones.

The key ring is installed once per process at start (``use_data_key``), like the settings; code that
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
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.settings import Settings, get_settings

#: Marks a sealed value; a phone number can never start like this, so sealing is idempotent.
SEALED_PREFIX = "jy1:"
#: Where `jobyard up` keeps the key it generated on a home's first start (mode 0600).
DATA_KEY_FILE = "data.key"
_NONCE_BYTES = 12
#: Anything that looks like a phone number inside free text (log lines, error messages): E.164, or
#: its digits alone as WhatsApp ids are written. Not digits inside a word, an id or a decimal.
PHONE_IN_TEXT = re.compile(r"(?<![\w+.-])\+?[1-9]\d{6,14}(?![\w-]|\.\d)")


class DataKeyError(RuntimeError):
    """The data key is missing or malformed, or a sealed value cannot be opened with it."""


def generate_data_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"jobyard " + purpose).derive(key)


def _decode_key(encoded: str) -> bytes:
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise DataKeyError("JOBYARD_DATA_KEY is not base64") from None
    if len(key) != 32:
        raise DataKeyError(f"JOBYARD_DATA_KEY must be 32 bytes (base64 of 32 random bytes); it is {len(key)}")
    return key


class DataCipher:
    """Seals and opens phone numbers, and hashes them for lookups, with one data key."""

    def __init__(self, encoded_key: str) -> None:
        key = _decode_key(encoded_key)
        self._aead = AESGCM(_derive(key, b"seal"))
        self._hash_key = _derive(key, b"lookup")
        #: Public fingerprint of the key, stored in every sealed value.
        self.key_id = hashlib.sha256(_derive(key, b"id")).hexdigest()[:8]

    def seal(self, clear: str) -> str:
        if is_sealed(clear):
            return clear
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, clear.encode(), self.key_id.encode())
        return f"{SEALED_PREFIX}{self.key_id}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str) -> str:
        if not is_sealed(sealed):
            return sealed
        try:
            key_id, blob = sealed[len(SEALED_PREFIX) :].split(":", 1)
            raw = base64.b64decode(blob, validate=True)
        except (ValueError, binascii.Error):
            raise DataKeyError("a sealed value is damaged") from None
        if key_id != self.key_id:
            raise DataKeyError(
                f"a value was sealed with data key {key_id}, not the current one ({self.key_id})"
            )
        try:
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], key_id.encode()).decode()
        except InvalidTag:
            raise DataKeyError("a sealed value does not open with the data key") from None

    def lookup_hash(self, clear: str) -> str:
        """HMAC-SHA256 of the number: equal numbers match, and without the key nothing can be guessed."""
        return hmac.new(self._hash_key, clear.encode(), hashlib.sha256).hexdigest()


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def mask_phone(number: str) -> str:
    """``+447700900789`` -> ``+44*******789``: enough to tell numbers apart, not to dial one."""
    if is_sealed(number):
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


# -- the process's key --------------------------------------------------------------------------

_active: DataCipher | None = None
_lock = threading.Lock()


def resolve_data_key(settings: Settings) -> str | None:
    """JOBYARD_DATA_KEY, else the key `jobyard up` saved in JOBYARD_HOME; None when neither is there."""
    if settings.data_key:
        return settings.data_key
    try:
        return (settings.home_path / DATA_KEY_FILE).read_text().strip() or None
    except OSError:
        return None


def use_data_key(settings: Settings) -> DataCipher:
    """Install the process's data key from settings; every process calls this at start."""
    global _active
    encoded = resolve_data_key(settings)
    if not encoded:
        raise DataKeyError(
            "JOBYARD_DATA_KEY is not set: phone numbers are encrypted at rest with it. Generate one "
            "with `jobyard data-key generate`, keep it in your secret store, and give the same key to "
            "every API, worker and scheduler process (`jobyard up` makes one in JOBYARD_HOME by itself)."
        )
    cipher = DataCipher(encoded)
    with _lock:
        _active = cipher
    return cipher


def data_cipher() -> DataCipher:
    """The process's cipher; built from the environment's settings if no start-up installed one."""
    cipher = _active
    return cipher if cipher is not None else use_data_key(get_settings())


def masked(value: str) -> str:
    """A number, sealed or clear, as the API and the logs show it."""
    try:
        return mask_phone(data_cipher().open(value))
    except DataKeyError:  # sealed with a key this process does not have
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
