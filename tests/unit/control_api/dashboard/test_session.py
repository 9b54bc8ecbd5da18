"""Dashboard login (control_api/dashboard/session.py): after login, only a dashboard path."""

from __future__ import annotations

from control_api.dashboard.session import safe_next


def test_after_login_only_a_dashboard_path() -> None:
    assert safe_next("/dashboard/dead-letters?type=x") == "/dashboard/dead-letters?type=x"
    for bad in (None, "", "https://evil.example/dashboard", "//evil.example", "/v1/jobs", "/dashboard/login"):
        assert safe_next(bad) == "/dashboard"
