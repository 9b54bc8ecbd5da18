"""Logging a browser page in to the dashboard, as a person does: open a page, get sent to the login
form, paste the key, land back on the page."""

from __future__ import annotations

from playwright.sync_api import Browser, Page


def log_in(page: Page, base: str, key: str, landing: str = "/dashboard") -> Page:
    page.goto(f"{base}{landing}")
    page.fill("#api_key", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{landing}")
    return page


def new_logged_in_page(browser: Browser, base: str, key: str, landing: str = "/dashboard") -> Page:
    """A page in a context of its own (its own cookies: one login each), logged in at ``landing``."""
    return log_in(browser.new_context(viewport={"width": 1500, "height": 900}).new_page(), base, key, landing)
