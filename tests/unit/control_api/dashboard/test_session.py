"""Dashboard login (control_api/dashboard/session.py): after login, only a dashboard path; the
header's tenant selector takes only a tenant's name."""

from __future__ import annotations

import pytest

from control_api.dashboard.session import chosen_tenant, safe_next


def test_after_login_only_a_dashboard_path() -> None:
    assert safe_next("/dashboard/dead-letters?type=x") == "/dashboard/dead-letters?type=x"
    for bad in (None, "", "https://evil.example/dashboard", "//evil.example", "/v1/jobs", "/dashboard/login"):
        assert safe_next(bad) == "/dashboard"


def test_the_tenant_chosen_is_a_tenants_name_or_every_tenant() -> None:
    assert chosen_tenant("shop-a") == "shop-a" and chosen_tenant("a" * 63) == "a" * 63
    assert chosen_tenant("") is None and chosen_tenant(None) is None
    for bad in ("Shop-A", "shop_a", "-a", "a-", "a" * 64, "shop a", "shop-a\n", "%73hop", "shöp", "a\x00"):
        with pytest.raises(ValueError):
            chosen_tenant(bad)
