"""Migration 0020 adds `tenant_llm`, empty: every tenant keeps asking the farm's providers. Its
downgrade drops the table (tenants' own chains go, the farm's remains), and upgrading again works."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from core.chats.tenant_llm import get_chain, set_chain
from core.platform.db import get_engine, transaction
from core.platform.migrate import upgrade
from core.platform.settings import Settings
from core.providers.llm import ProviderConfig
from tests import services as test_services
from tests.integration.conftest import database_at, downgrade


@pytest.fixture
def at_0019(services: test_services.TestServices, settings: Settings) -> Iterator[Settings]:
    with database_at(services, settings, "0019") as migrated:
        yield migrated


def _tables(settings: Settings) -> list[str]:
    with get_engine(settings).connect() as conn:
        return sa.inspect(conn).get_table_names()


def test_the_tenant_llm_table_comes_and_goes(at_0019: Settings) -> None:
    assert "tenant_llm" not in _tables(at_0019)
    upgrade(at_0019)
    with transaction(at_0019) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM tenant_llm")).scalar_one() == 0
        set_chain(conn, "shop-a", [ProviderConfig(name="p", api_key="sk-migration-key-123456")], by=None)
    downgrade(at_0019, "0019")
    assert "tenant_llm" not in _tables(at_0019)
    upgrade(at_0019)
    with transaction(at_0019) as conn:
        assert get_chain(conn, "shop-a") is None
