"""Migration 0015 puts the chats, unread counters, collections and scrapes that existed before tenants
in `default`, where the keys of before read them as they did; afterwards two tenants may share a
chat id. Its downgrade refuses while they do, and works once they no longer do."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from control_api.app import create_app
from core.platform.db import get_engine, transaction
from core.platform.migrate import upgrade
from core.platform.settings import Settings
from tests import services as test_services
from tests.integration.conftest import database_at, downgrade, make_key

SCRAPE_ID = uuid.uuid4()
BEFORE = [
    "INSERT INTO chats (id) VALUES ('c1')",
    "INSERT INTO chat_messages (id, chat_id, role, content) VALUES (gen_random_uuid(), 'c1', 'user', 'hi')",
    "INSERT INTO unread_counters (user_id, chat_id, unread) VALUES ('u1', 'c1', 4)",
    "INSERT INTO embedding_collections (name, model, dim) VALUES ('kb', 'm', 3)",
    "INSERT INTO embedding_documents (collection, id, text, text_sha256, model, dim, embedding) "
    "VALUES ('kb', 'd1', 'doc', 'sha', 'm', 3, '[1,0,0]')",
    "INSERT INTO scrapes (id, url, final_url, title, text, fields, links, blocked_requests, content_sha256) "
    f"VALUES ('{SCRAPE_ID}', 'https://a.example/', 'https://a.example/', 'A', 'a', '{{}}', '[]', '[]', 'x')",
]


@pytest.fixture
def at_0014(services: test_services.TestServices, settings: Settings) -> Iterator[Settings]:
    with database_at(services, settings, "0014") as migrated:
        yield migrated


def _columns(settings: Settings, table: str) -> list[str]:
    with get_engine(settings).connect() as conn:
        return [c["name"] for c in sa.inspect(conn).get_columns(table)]


def test_existing_domain_rows_go_to_default_and_the_downgrade_waits_for_no_clash(at_0014: Settings) -> None:
    with transaction(at_0014) as conn:
        for statement in BEFORE:
            conn.execute(sa.text(statement))
    upgrade(at_0014)

    tables = ("chats", "chat_messages", "unread_counters", "embedding_collections", "embedding_documents")
    with transaction(at_0014) as conn:
        tenants = {
            t: conn.execute(sa.text(f"SELECT DISTINCT tenant FROM {t}")).scalars().all() for t in tables
        }
        tenants["scrapes"] = conn.execute(sa.text("SELECT DISTINCT tenant FROM scrapes")).scalars().all()
    assert tenants == {t: ["default"] for t in (*tables, "scrapes")}
    # A key of the default tenant without admin reads them as before.
    reader = make_key(at_0014, "jobs:read", "jobs:write", name="shop backend")
    with TestClient(create_app(at_0014, configure_logs=False)) as api:
        api.headers["Authorization"] = f"Bearer {reader}"
        assert [m["content"] for m in api.get("/v1/chats/c1/messages").json()["items"]] == ["hi"]
        assert api.get("/v1/unread", params={"user_id": "u1"}).json()["total"] == 4
        assert api.get("/v1/collections/kb").json()["documents"] == 1
        assert api.get(f"/v1/scrapes/{SCRAPE_ID}").json()["title"] == "A"

    # Another tenant's chat c1 and collection kb are rows of their own now...
    with transaction(at_0014) as conn:
        conn.execute(sa.text("INSERT INTO chats (id, tenant) VALUES ('c1', 'shop-a')"))
        conn.execute(
            sa.text(
                "INSERT INTO embedding_collections (name, model, dim, tenant) VALUES ('kb', 'm', 3, 'shop-a')"
            )
        )
    # ...which the global keys of before cannot hold: the downgrade says so and changes nothing.
    with pytest.raises(RuntimeError, match=r"two tenants share chats \(id\) = \('c1',\)"):
        downgrade(at_0014, "0014")
    assert "tenant" in _columns(at_0014, "chats")

    with transaction(at_0014) as conn:
        conn.execute(sa.text("DELETE FROM chats WHERE tenant = 'shop-a'"))
        conn.execute(sa.text("DELETE FROM embedding_collections WHERE tenant = 'shop-a'"))
    downgrade(at_0014, "0014")
    for table in (*tables, "scrapes"):
        assert "tenant" not in _columns(at_0014, table), table
    with transaction(at_0014) as conn:
        kept: dict[str, Any] = {
            t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in (*tables, "scrapes")
        }
    assert kept == dict.fromkeys((*tables, "scrapes"), 1)
    # The global key is back: a second chat c1 is refused.
    with pytest.raises(sa.exc.IntegrityError), transaction(at_0014) as conn:
        conn.execute(sa.text("INSERT INTO chats (id) VALUES ('c1')"))
