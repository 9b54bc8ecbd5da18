"""/v1/scrapes: what `scrape` jobs read from pages, and their screenshots: the key's tenant's (every
tenant's for an admin key); another tenant's scrape answers 404 as one that never existed."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from litestar.params import FromPath

from control_api.auth import requires
from core.access.keys import ApiKey
from core.errors import ScrapeNotFound, ScreenshotNotFound
from core.platform.db import transaction
from core.scrape.pages import Scrape, get_scrape, get_screenshot


class ScrapesController(Controller):
    path = "/v1/scrapes"
    tags = ["scrapes"]

    @get("/{scrape_id:uuid}", guards=[requires("jobs:read")], sync_to_thread=True, summary="A stored scrape")
    def read(
        self, request: Request[ApiKey, Any, Any], state: State, scrape_id: FromPath[uuid.UUID]
    ) -> Scrape:
        with transaction(state.settings) as conn:
            found = get_scrape(conn, scrape_id, request.user.reach)
        if found is None:
            raise ScrapeNotFound(f"no scrape {scrape_id}")
        return found

    @get(
        "/{scrape_id:uuid}/screenshot",
        guards=[requires("jobs:read")],
        sync_to_thread=True,
        media_type="image/png",
        summary="A scrape's screenshot (PNG)",
    )
    def screenshot(
        self, request: Request[ApiKey, Any, Any], state: State, scrape_id: FromPath[uuid.UUID]
    ) -> Response[bytes]:
        with transaction(state.settings) as conn:
            shot = get_screenshot(conn, scrape_id, request.user.reach)
        if shot is None:
            raise ScreenshotNotFound(f"scrape {scrape_id} has no screenshot")
        # A stored screenshot never changes; it is private because it needs a key.
        return Response(shot, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})
