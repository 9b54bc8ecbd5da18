"""Values sealed the way Jobyard sealed them before issue 15 (``jy1:``, associated data = the key id
alone), written independently of core/platform/crypto.py so the tests pin the old format: databases hold such
values, and they must keep opening until a rotation moves them."""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"jobyard " + purpose).derive(key)


def seal_v1(encoded_key: str, clear: str) -> str:
    key = base64.b64decode(encoded_key)
    key_id = hashlib.sha256(_derive(key, b"id")).hexdigest()[:8]
    nonce = os.urandom(12)
    sealed = AESGCM(_derive(key, b"seal")).encrypt(nonce, clear.encode(), key_id.encode())
    return f"jy1:{key_id}:{base64.b64encode(nonce + sealed).decode()}"
