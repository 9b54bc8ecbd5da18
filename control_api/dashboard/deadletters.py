"""Dashboard dead letters: filter, select, dry-run, then redrive or discard after a confirmation page
that shows how many jobs match and, for a payload patch, the diff it makes to each previewed job.

Redrive and discard are core.engine.redrive's, the same functions the API and `jobyard dlq` call, with the
same audit record (the actor is the API key's name).
"""

from __future__ import annotations

import difflib
import json
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode

import msgspec
from litestar import Request, get, post
from litestar.datastructures import State
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from control_api.dashboard.pages import run
from control_api.dashboard.render import page, pretty
from control_api.dashboard.session import PageRefused, session_reach
from core.access.sessions import Session
from core.engine import deadletters
from core.engine.deadletters import DeadFilter, Outcome, Selection, patched
from core.engine.job_types import job_types
from core.engine.jobs import Job
from core.engine.redrive import discard, redrive
from core.errors import BadCursor, InvalidPayloads
from core.platform.db import snapshot
from core.platform.settings import Settings

PAGE_SIZE = 50
_FILTER_FIELDS = ("type", "error_code", "q", "since", "until")


class FormError(ValueError):
    """Something in the form to correct; shown on the page, nothing changed."""


class QueryForm(msgspec.Struct, kw_only=True):
    """A page's filter as typed into it, every field text; FIELDS names them in the page's links."""

    FIELDS: ClassVar[tuple[str, ...]] = ()

    def query(self) -> str:
        """The filter as a link's query string (the empty fields left out)."""
        return urlencode({k: v for k in self.FIELDS if (v := getattr(self, k))})


class FilterForm(QueryForm, kw_only=True):
    """The filter as typed into the page: times are `datetime-local` values (UTC) or RFC 3339."""

    FIELDS = _FILTER_FIELDS
    type: str = ""
    error_code: str = ""
    q: str = ""
    since: str = ""
    until: str = ""

    def to_filter(self) -> DeadFilter:
        return DeadFilter(
            type=self.type or None,
            error_code=self.error_code or None,
            q=self.q or None,
            since=form_time("since", self.since),
            until=form_time("until", self.until),
        )


class ActionForm(FilterForm, kw_only=True):
    action: Literal["redrive", "discard"]
    #: "selected": the checked ids; "matching": every dead letter the filter matches.
    target: Literal["selected", "matching"] = "selected"
    ids: list[uuid.UUID] = msgspec.field(default_factory=list)
    reason: str = ""
    payload_patch: str = ""
    #: The tenant the page that sent the form showed ('' for every tenant); absent on a form that
    #: does not say. The action refuses to go on if the session's choice has changed since.
    tenant: str | None = None

    def check_tenant(self, reach: str | None) -> None:
        check_form_tenant(self.tenant, reach, "the dead letters")

    def selection(self, reach: str | None) -> Selection:
        """The jobs the form names, among those of the tenant the session reaches (None: all)."""
        if self.target == "matching":
            return Selection(filter=self.to_filter(), tenant=reach)
        if not self.ids:
            raise FormError("Select at least one job, or choose every job matching the filter.")
        return Selection(ids=tuple(self.ids), tenant=reach)

    def checked_reason(self) -> str:
        return form_reason(self.reason)

    def patch(self) -> dict[str, Any] | None:
        if self.action != "redrive" or not self.payload_patch.strip():
            return None
        try:
            value = json.loads(self.payload_patch)
        except json.JSONDecodeError as exc:
            raise FormError(f"The payload patch is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise FormError('The payload patch must be a JSON object, e.g. {"chat_id": "c2"}.')
        return value


def check_form_tenant(sent: str | None, reach: str | None, back: str) -> None:
    """Refuse a form made while the header showed another tenant than it does now (the choice
    changed in another tab): it would act on other jobs than the page showed. ``sent``: the tenant
    the form names ('' for every tenant; None: a form that does not say)."""
    if sent is not None and sent != (reach or ""):
        raise PageRefused(
            409,
            "Tenant changed",
            f"This form was made for {sent or 'every tenant'}, and the dashboard now shows "
            f"{reach or 'every tenant'}. Nothing changed; go back to {back} and try again.",
        )


def form_reason(text: str) -> str:
    """The reason an action's form gives, which the audit log keeps; FormError if there is none."""
    if not text.strip():
        raise FormError("A reason is required; it goes in the audit log.")
    if len(text) > 2000:
        raise FormError("The reason is too long (2,000 characters at most).")
    return text.strip()


def form_time(name: str, text: str) -> datetime | None:
    if not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise FormError(f"{name}: not a time ({text!r}); use the date picker or RFC 3339.") from None
    # The page labels the pickers UTC; a value with a zone keeps its own.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def form_dict(form: Any) -> dict[str, Any]:
    data: dict[str, Any] = {k: form.get(k) for k in form if k != "ids"}
    data["ids"] = [i for i in form.getall("ids") if i] if "ids" in form else []
    return data


def _list(settings: Settings, form: FilterForm, cursor: str | None, reach: str | None) -> dict[str, Any]:
    f = form.to_filter()
    try:
        with snapshot(settings) as conn:
            items, next_cursor = deadletters.list_dead(conn, f, PAGE_SIZE, cursor, reach)
            matched = deadletters.count(conn, Selection(filter=f, tenant=reach))
            groups = deadletters.groups(conn, reach)
    except BadCursor:
        raise FormError("That page link is not valid any more; start from the first page.") from None
    types = sorted(set(job_types()) | {t for t, _, _ in groups})
    return {"items": items, "next_cursor": next_cursor, "matched": matched, "groups": groups, "types": types}


@get("/dead-letters", name="dashboard_dead_letters")
async def dead_letters(
    request: Request[Any, Any, Any],
    state: State,
    type: FromQuery[str] = "",
    error_code: FromQuery[str] = "",
    q: FromQuery[str] = "",
    since: FromQuery[str] = "",
    until: FromQuery[str] = "",
    cursor: FromQuery[str | None] = None,
) -> Template:
    form = FilterForm(type=type, error_code=error_code, q=q, since=since, until=until)
    try:
        data = await run(_list, state.settings, form, cursor, session_reach(request))
    except FormError as exc:
        data = {"items": [], "next_cursor": None, "matched": 0, "groups": [], "types": [], "error": str(exc)}
    return page(request, "deadletters.html", filter=form, **data)


def payload_diff(before: Any, after: Any) -> list[tuple[str, str]]:
    """The patch's effect on one payload, line by line: (kind, text), kind one of add, del, same."""
    lines = difflib.unified_diff(pretty(before).splitlines(), pretty(after).splitlines(), lineterm="", n=1000)
    out = []
    for line in list(lines)[2:]:  # past the ---/+++ header
        if line.startswith("@@"):
            continue
        kind = {"+": "add", "-": "del"}.get(line[:1], "same")
        out.append((kind, line))
    return out


def _preview(settings: Settings, form: ActionForm, reach: str | None) -> dict[str, Any]:
    selection, reason, patch = form.selection(reach), form.checked_reason(), form.patch()
    with snapshot(settings) as conn:
        if form.action == "redrive":
            outcome: Outcome = deadletters.dry_run_redrive(conn, selection, patch)
        else:
            outcome = deadletters.dry_run_discard(conn, selection)
    diffs: list[tuple[Job, list[tuple[str, str]]]] = []
    if patch is not None:
        diffs = [
            (job, payload_diff(job.payload, patched(job.type, job.payload, patch)[0]))
            for job in outcome.preview
        ]
    return {"outcome": outcome, "diffs": diffs, "reason": reason, "patch": patch}


async def _action_form(request: Request[Any, Any, Any]) -> ActionForm:
    try:
        return msgspec.convert(form_dict(await request.form()), ActionForm, strict=False)
    except msgspec.ValidationError as exc:
        raise PageRefused(422, "Bad form", f"The form is not valid: {exc}") from None


def _preview_page(request: Request[Any, Any, Any], form: ActionForm, status: int, **context: Any) -> Template:
    return page(request, "preview.html", status, form=form, **context)


@post("/dead-letters/preview", name="dashboard_dead_letters_preview")
async def preview(request: Request[Any, Any, Any], state: State) -> Template:
    """The dry run: how many jobs the action would take, the first of them, the patch's diff."""
    form = await _action_form(request)
    reach = session_reach(request)
    form.check_tenant(reach)
    try:
        data = await run(_preview, state.settings, form, reach)
    except FormError as exc:
        return _preview_page(request, form, 422, error=str(exc))
    except InvalidPayloads as exc:
        return _preview_page(request, form, 422, error=str(exc), invalid=exc.errors)
    return _preview_page(request, form, 200, **data)


def _apply(settings: Settings, broker: Any, form: ActionForm, session: Session, reach: str | None) -> Outcome:
    """The action among ``reach``'s dead letters (the session's tenant, or the one chosen in the
    header; None: every tenant's), which the audit entry records as its tenant."""
    selection, reason = form.selection(reach), form.checked_reason()
    actor, by = session.key_name, session.key_id
    if form.action == "redrive":
        return redrive(settings, broker, selection, reason, actor, payload_patch=form.patch(), by=by)
    return discard(settings, selection, reason, actor, by=by)


@post("/dead-letters/apply", name="dashboard_dead_letters_apply")
async def apply(request: Request[Any, Any, Any], state: State) -> Template | Redirect:
    """The confirmed action; lands on its audit entry."""
    form = await _action_form(request)
    reach = session_reach(request)
    form.check_tenant(reach)
    session = request.state.dashboard_session
    try:
        outcome = await run(_apply, state.settings, state.broker, form, session, reach)
    except FormError as exc:
        return _preview_page(request, form, 422, error=str(exc))
    except InvalidPayloads as exc:
        return _preview_page(request, form, 422, error=str(exc), invalid=exc.errors)
    return Redirect(f"/dashboard/actions/{outcome.audit_id}", status_code=303)
