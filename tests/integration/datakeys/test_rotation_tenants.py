"""A data key rotation and tenants: opt-outs of one number by several tenants stay one row per tenant
(only a tenant's own twice-recorded row is merged), and the sealed secrets of tenants' own WhatsApp
numbers and own LLM providers are re-sealed, each still bound to its field and tenant; customers'
WhatsApp conversations are re-hashed and re-sealed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from core.chats.tenant_llm import get_chain, set_chain
from core.chats.tenant_llm import sealing_context as llm_context
from core.datakeys.reseal import pending_counts
from core.datakeys.rotation import rotate
from core.errors import SealedValueError
from core.events.endpoints import create_endpoint, rotate_secret, secrets_in_force
from core.messaging import conversations
from core.messaging.numbers import SEALED, sealing_context, set_number, tenant_number
from core.messaging.optouts import OPT_OUT_CONTEXT, is_opted_out
from core.platform.crypto import DataCipher, data_cipher, generate_data_key, use_data_key
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import (
    opt_outs,
    tenant_llm,
    tenant_whatsapp,
    webhook_endpoints,
    whatsapp_conversations,
)
from core.providers.llm import ProviderConfig
from tests.services import TEST_DATA_KEY

NUMBER = "+447700900555"


def _opt_out(cipher: DataCipher, tenant: str) -> dict[str, str]:
    return {
        "tenant": tenant,
        "channel": "whatsapp",
        "address_hash": cipher.lookup_hash(NUMBER),
        "address_sealed": cipher.seal(NUMBER, OPT_OUT_CONTEXT),
        "address_key_id": cipher.key_id,
        "source": "webhook",
    }


def test_a_rotation_moves_each_tenants_opt_outs_and_number_secrets(settings: Settings) -> None:
    old, new_key = DataCipher(TEST_DATA_KEY), generate_data_key()
    new = DataCipher(new_key)
    # Under the old key: shop-a's number, and the same recipient opted out of three tenants' messages;
    # shop-a's recorded again under the new key (a STOP that reached a process holding only it).
    with transaction(settings) as conn:
        for tenant, pid in (("shop-a", "300000000000001"), ("shop-b", "300000000000002")):
            set_number(
                conn,
                tenant,
                phone_number_id=pid,
                token=f"{tenant}-token-123456",
                app_secret=f"{tenant}-secret-123456",
                verify_token=None if tenant == "shop-b" else f"{tenant}-verify-123",
                by=None,
                farm_phone_number_id=None,
            )
        conn.execute(sa.insert(opt_outs), [_opt_out(old, t) for t in ("default", "shop-a", "shop-b")])
        conn.execute(sa.insert(opt_outs), [_opt_out(new, "shop-a")])

    rotated = settings.replace(data_key=new_key, data_keys_old=(TEST_DATA_KEY,))
    ring = use_data_key(rotated)
    report = rotate(rotated, ring, actor="cli:test", reason="yearly")
    assert report.remaining == 0 and report.merged_opt_outs == 1
    assert report.moved["tenant_whatsapp"] == 2

    use_data_key(rotated.replace(data_keys_old=()))  # the old key is gone
    with transaction(rotated) as conn:
        assert sum(pending_counts(conn, data_cipher()).values()) == 0
        rows = conn.execute(sa.select(opt_outs).order_by(opt_outs.c.tenant)).all()
        assert [r.tenant for r in rows] == ["default", "shop-a", "shop-b"]
        assert {r.address_key_id for r in rows} == {new.key_id}
        for tenant in ("shop-a", "shop-b"):
            assert is_opted_out(conn, NUMBER, tenants=(tenant,))
        assert not is_opted_out(conn, NUMBER, tenants=("shop-c",))

        numbers = conn.execute(sa.select(tenant_whatsapp).order_by(tenant_whatsapp.c.tenant)).all()
        assert {r.key_id for r in numbers} == {new.key_id}
        for row in numbers:
            for column in SEALED:
                sealed = row._mapping[column]
                assert sealed is None or sealed.startswith(f"jy2:{new.key_id}:")
        a = tenant_number(conn, "shop-a")
        b = tenant_number(conn, "shop-b")
    assert a is not None and (a.token, a.app_secret, a.verify_token) == (
        "shop-a-token-123456",
        "shop-a-secret-123456",
        "shop-a-verify-123",
    )
    assert b is not None and (b.token, b.verify_token) == ("shop-b-token-123456", None)
    # Still bound to its tenant: shop-a's sealed token does not open as shop-b's.
    with pytest.raises(SealedValueError, match="does not open"):
        data_cipher().open(numbers[0].token_sealed, sealing_context("token_sealed", "shop-b"))


def test_a_rotation_reseals_tenants_llm_api_keys_and_keeps_their_chains(settings: Settings) -> None:
    with transaction(settings) as conn:
        set_chain(
            conn,
            "shop-a",
            [
                ProviderConfig(name="main", base_url="https://llm.example/v1", api_key="sk-shop-a-main-1234"),
                ProviderConfig(name="local", base_url="https://llm2.example/v1"),  # no key
            ],
            by=None,
        )
        before = conn.execute(sa.select(tenant_llm)).one()
        assert pending_counts(conn, data_cipher())["tenant_llm"] == 0

    new_key = generate_data_key()
    rotated = settings.replace(data_key=new_key, data_keys_old=(TEST_DATA_KEY,))
    ring = use_data_key(rotated)
    with transaction(rotated) as conn:
        assert pending_counts(conn, ring)["tenant_llm"] == 1
    report = rotate(rotated, ring, actor="cli:test", reason="yearly")
    assert report.remaining == 0 and report.moved["tenant_llm"] == 1

    use_data_key(rotated.replace(data_keys_old=()))  # the old key is gone
    with transaction(rotated) as conn:
        assert pending_counts(conn, data_cipher())["tenant_llm"] == 0
        row = conn.execute(sa.select(tenant_llm)).one()
        shown = get_chain(conn, "shop-a")
    assert row.key_id == data_cipher().key_id and row.updated_at == before.updated_at
    main, local = row.providers
    assert main["api_key_sealed"].startswith(f"jy2:{data_cipher().key_id}:")
    assert local["api_key_sealed"] is None
    assert data_cipher().open(main["api_key_sealed"], llm_context("shop-a", "main")) == "sk-shop-a-main-1234"
    assert shown is not None and [p.api_key_last4 for p in shown.providers] == ["1234", None]
    # Bound to its tenant and provider: not another tenant's, nor another provider's.
    for context in (llm_context("shop-b", "main"), llm_context("shop-a", "local")):
        with pytest.raises(SealedValueError, match="does not open"):
            data_cipher().open(main["api_key_sealed"], context)


def test_a_rotation_moves_customers_conversations(settings: Settings) -> None:
    """A conversation made under the old key is re-hashed and re-sealed: after the old key is gone,
    the customer's next message finds the same conversation (and chat), not a new one."""
    at = datetime.now(UTC)
    with transaction(settings) as conn:
        made = conversations.touch(conn, "shop-a", "300000000000001", NUMBER, at)
    new_key = generate_data_key()
    rotated = settings.replace(data_key=new_key, data_keys_old=(TEST_DATA_KEY,))
    ring = use_data_key(rotated)
    with transaction(rotated) as conn:
        assert pending_counts(conn, ring)["whatsapp_conversations"] == 1
    report = rotate(rotated, ring, actor="cli:test", reason="yearly")
    assert report.remaining == 0 and report.moved["whatsapp_conversations"] == 1

    use_data_key(rotated.replace(data_keys_old=()))  # the old key is gone
    with transaction(rotated) as conn:
        again = conversations.touch(conn, "shop-a", "300000000000001", NUMBER, at + timedelta(minutes=1))
        found = conversations.by_chat(conn, "shop-a", made.chat_id)
        rows = conn.execute(sa.select(whatsapp_conversations)).all()
    assert made.created and not again.created and again.chat_id == made.chat_id
    assert found is not None and found[1] == NUMBER and len(rows) == 1
    assert rows[0].customer_sealed.startswith(f"jy2:{data_cipher().key_id}:")


def test_a_rotation_moves_webhook_secrets_which_still_sign_as_before(settings: Settings) -> None:
    """An endpoint's secret (and, in a rotation's grace, its previous one) sealed under the old key is
    re-sealed: after the old key is gone, deliveries are signed with the same secrets."""
    with transaction(settings) as conn:
        endpoint, first = create_endpoint(
            conn,
            settings,
            tenant="shop-a",
            url="https://93.184.215.14/hooks",
            events=["job.succeeded"],
            types=None,
            description=None,
            created_by=None,
        )
        _, second = rotate_secret(conn, endpoint.id, "shop-a", grace_s=3600)
    rotated = settings.replace(data_key=generate_data_key(), data_keys_old=(TEST_DATA_KEY,))
    ring = use_data_key(rotated)
    with transaction(rotated) as conn:
        assert pending_counts(conn, ring)["webhook_endpoints"] == 1
    report = rotate(rotated, ring, actor="cli:test", reason="yearly")
    assert report.remaining == 0 and report.moved["webhook_endpoints"] == 1

    use_data_key(rotated.replace(data_keys_old=()))  # the old key is gone
    with transaction(rotated) as conn:
        row = conn.execute(sa.select(webhook_endpoints)).one()
    assert row.key_id == data_cipher().key_id
    in_force = secrets_in_force(
        row.id, row.secret_sealed, row.previous_secret_sealed, row.previous_until, datetime.now(UTC)
    )
    assert in_force == [second, first]
