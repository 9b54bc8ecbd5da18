"""Deliveries are signed as the Standard Webhooks specification says: its reference library verifies
them, with the new secret or, during a rotation's grace, the old one."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from core.events.signing import SECRET_PREFIX, headers, new_secret

# The library parses what it verified: a delivery's body is always JSON.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
bodies = json_values.map(lambda v: json.dumps(v, ensure_ascii=False).encode())
msg_ids = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="."),
    min_size=1,
    max_size=40,
)


@given(body=bodies, msg_id=msg_ids)
def test_the_reference_library_verifies_every_signed_delivery(body: bytes, msg_id: str) -> None:
    secret = new_secret()
    signed = headers([secret], msg_id, int(time.time()), body)
    Webhook(secret).verify(body, signed)


@given(body=bodies)
def test_during_a_rotation_either_secret_verifies_and_a_third_does_not(body: bytes) -> None:
    new, old = new_secret(), new_secret()
    signed = headers([new, old], "msg_1", int(time.time()), body)
    Webhook(new).verify(body, signed)
    Webhook(old).verify(body, signed)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, signed)


def test_a_changed_body_or_an_old_timestamp_is_refused() -> None:
    secret = new_secret()
    signed = headers([secret], "msg_1", int(time.time()), b'{"type": "job.succeeded"}')
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"type": "job.dead"}', signed)
    stale = headers([secret], "msg_1", int(time.time()) - 3600, b"{}")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b"{}", stale)


def test_secrets_are_fresh_and_shaped_as_the_specification_says() -> None:
    made = {new_secret() for _ in range(100)}
    assert len(made) == 100
    assert all(s.startswith(SECRET_PREFIX) and len(s) == len(SECRET_PREFIX) + 32 for s in made)
