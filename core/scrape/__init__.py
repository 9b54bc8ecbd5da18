"""Scraping: the `scrape` job type (a page through Chromium, stored with its screenshot) and per-domain slots."""
