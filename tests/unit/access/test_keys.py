"""API keys without services (core/access/keys.py): the key cache's bounds, and (a property test) only
the exact shape of a generated key passes the format check."""

from __future__ import annotations

import secrets
import time
import uuid

from hypothesis import example, given
from hypothesis import strategies as st

from core.access.keys import KEY_PREFIX, ApiKey, KeyCache, well_formed
from core.engine.jobs import utcnow
from tests.properties import PROPERTY


def _secret() -> str:
    return "jy_" + secrets.token_urlsafe(24)


def test_the_key_cache_remembers_bad_keys_long_and_stays_bounded() -> None:
    cache = KeyCache(0.05, 60.0, max_live=3, max_bad=100)
    flood = [_secret() for _ in range(1000)]
    for secret in flood:
        assert well_formed(secret)
        cache.put(secret, None)
    assert len(cache) == 100  # the oldest bad keys went first
    assert cache.get(flood[-1]) == (True, None)  # a recent bad key costs no lookup
    assert cache.get(flood[0]) == (False, None)  # one pushed out is looked up again, once
    time.sleep(0.06)
    assert cache.get(flood[-1]) == (True, None)  # bad keys outlive the live keys' short trust


def test_the_key_cache_knows_live_keys_after_their_entry_expired() -> None:
    cache = KeyCache(0.01, 60.0)
    key = ApiKey(
        id=uuid.uuid4(),
        name="k",
        prefix="jy_abcdefg",
        scopes=["jobs:read"],
        created_at=utcnow(),
        expires_at=None,
        revoked_at=None,
        last_used_at=None,
    )
    secret = _secret()
    cache.put(secret, key)
    assert cache.get(secret) == (True, key)
    time.sleep(0.02)
    assert cache.get(secret) == (False, None) and cache.known(secret)  # looked up again, at once
    cache.put(secret, None)  # revoked meanwhile
    assert cache.get(secret) == (True, None) and not cache.known(secret)


@PROPERTY
@given(text=st.text(max_size=60))
@example(text="jy_" + "A" * 32)
@example(text="jy_" + "A" * 32 + "\n")
@example(text="jy_" + "A" * 31 + "é")
def test_only_the_exact_shape_of_a_generated_key_passes_the_format_check(text: str) -> None:
    shaped = (
        text.startswith(KEY_PREFIX)
        and len(text) == 35
        and all(c.isascii() and (c.isalnum() or c in "-_") for c in text[3:])
    )
    assert well_formed(text) == shaped
