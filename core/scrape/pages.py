"""The `scrape` job type: a page loaded in Chromium, its text, links, named selectors and an optional
screenshot stored in `scrapes`.

The handler runs in the job's transaction, so the scrape row commits with the job's success, exactly
once. The page is loaded before the first statement: the connection is held but no transaction is
open on the server while the browser works. A scrape is its job's tenant's, and the API shows it (and
its screenshot) only to keys that reach that tenant.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.engine.declare import JobContext, job_type
from core.engine.jobs import utcnow
from core.platform.netguard import normalize_host
from core.platform.tables import scrapes
from core.platform.tenants import reached
from core.providers.page import PageRequest, PageResult
from core.scrape.browser import BROWSER
from core.scrape.domain_slots import DomainSlots

#: One queue for scrape jobs, so a deployment can give them workers of their own; only processes
#: that consume it launch a browser.
SCRAPE_QUEUE = "scrape"
#: Longest page timeout a payload may ask for.
MAX_TIMEOUT_S = 120.0
#: A slot's lease beyond the page's timeout: covers the context's close and the result's commit.
SLOT_LEASE_GRACE_S = 30.0

Url = Annotated[str, msgspec.Meta(min_length=1, max_length=4096, pattern=r"(?i)^https?://[^\s/?#]+[^\s]*$")]
Css = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
FieldName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class ScrapePayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: Url
    #: Named CSS selectors; each yields the texts of its matches (up to 100).
    selectors: Annotated[dict[FieldName, Css], msgspec.Meta(max_length=50)] | None = None
    #: A CSS selector to wait for after the load, for content a script renders later.
    wait_for: Css | None = None
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=MAX_TIMEOUT_S)] = 30.0
    screenshot: bool = False
    max_text_chars: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 100_000

    def __post_init__(self) -> None:
        problem = url_problem(self.url)
        if problem:
            raise ValueError(f"payload.url: {problem}")


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be scraped, or None. Only its form: where it leads is the guard's business."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return "only http and https URLs can be scraped"
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        return f"bad port: {exc}"
    if not parts.hostname:
        return "the URL has no host"
    return None


@job_type(
    "scrape",
    payload=ScrapePayload,
    queue=SCRAPE_QUEUE,
    # Chromium, launched at boot only in the processes that consume the scrape queue.
    resources=(BROWSER,),
    max_retries=3,
    min_backoff_s=5.0,
    max_backoff_s=600.0,
    # Pages keep their own timeout (payload.timeout_s); this is only Dramatiq's backstop.
    timeout_s=MAX_TIMEOUT_S + 60.0,
    # A busy host (the per-domain limit) makes a job wait, free, many times in a big crawl.
    max_rate_limit_waits=200,
    description="Load a page in Chromium and store its text, links, named selectors and a screenshot.",
)
def scrape_page(ctx: JobContext, payload: ScrapePayload) -> dict[str, Any]:
    token = f"{ctx.claim.job_id}:{ctx.claim.attempt}"
    load = BROWSER.pool(ctx.settings).load
    return scrape(ctx.conn, ctx.tenant, ctx.claim.job_id, token, payload, load, BROWSER.slots(ctx.settings))


PageLoader = Callable[[PageRequest], PageResult]


def scrape(
    conn: Connection,
    tenant: str,
    job_id: uuid.UUID,
    token: str,
    payload: ScrapePayload,
    load: PageLoader,
    slots: DomainSlots | None,
) -> dict[str, Any]:
    """Load the page (holding one of its host's slots) and store it, as ``tenant``'s, in the caller's
    transaction."""
    request = PageRequest(
        url=payload.url,
        selectors=payload.selectors or {},
        wait_for=payload.wait_for,
        timeout_s=payload.timeout_s,
        screenshot=payload.screenshot,
    )
    host = normalize_host(urlsplit(payload.url).hostname or "")
    lease_s = payload.timeout_s + SLOT_LEASE_GRACE_S
    with slots.hold(host, token, lease_s) if slots is not None else nullcontext():
        page = load(request)
    scrape_id = uuid.uuid4()
    text = page.text[: payload.max_text_chars]
    conn.execute(
        sa.insert(scrapes).values(
            id=scrape_id,
            tenant=tenant,
            job_id=job_id,
            url=payload.url,
            final_url=page.final_url,
            status_code=page.status_code,
            title=page.title,
            text=text,
            fields=page.fields,
            links=page.links,
            blocked_requests=page.blocked_requests,
            content_sha256=page.content_sha256,
            screenshot=page.screenshot,
            created_at=utcnow(),
        )
    )
    result: dict[str, Any] = {
        "scrape_id": str(scrape_id),
        "status_code": page.status_code,
        "final_url": page.final_url,
        "title": page.title,
        "text": text,
        "fields": page.fields,
        "links": page.links,
        "content_sha256": page.content_sha256,
        "blocked_requests": page.blocked_requests,
    }
    if page.screenshot is not None:
        result["screenshot_url"] = screenshot_path(scrape_id)
    return result


def screenshot_path(scrape_id: uuid.UUID) -> str:
    return f"/v1/scrapes/{scrape_id}/screenshot"


class Scrape(msgspec.Struct, kw_only=True):
    """A stored scrape as the API shows it (the screenshot is served on its own path)."""

    id: uuid.UUID
    job_id: uuid.UUID | None
    url: str
    final_url: str
    status_code: int | None
    title: str
    text: str
    fields: dict[str, list[str]]
    links: list[str]
    blocked_requests: list[str]
    content_sha256: str
    screenshot_url: str | None
    created_at: datetime
    #: Whose scrape it is: its job's tenant.
    tenant: str


def get_scrape(conn: Connection, scrape_id: uuid.UUID, tenant: str | None = None) -> Scrape | None:
    """The scrape, if it is ``tenant``'s (anyone's for None): another tenant's is not found."""
    c = scrapes.c
    columns = [col for col in scrapes.c if col.name != "screenshot"]
    row = conn.execute(
        sa.select(*columns, c.screenshot.isnot(None).label("has_screenshot")).where(
            c.id == scrape_id, reached(scrapes, tenant)
        )
    ).first()
    if row is None:
        return None
    m = dict(row._mapping)
    has_screenshot = m.pop("has_screenshot")
    return Scrape(**m, screenshot_url=screenshot_path(scrape_id) if has_screenshot else None)


def get_screenshot(conn: Connection, scrape_id: uuid.UUID, tenant: str | None = None) -> bytes | None:
    """The scrape's PNG screenshot; None when there is no such scrape of ``tenant`` (of anyone for
    None) or it has none."""
    shot = conn.execute(
        sa.select(scrapes.c.screenshot).where(scrapes.c.id == scrape_id, reached(scrapes, tenant))
    ).scalar()
    return bytes(shot) if shot is not None else None
