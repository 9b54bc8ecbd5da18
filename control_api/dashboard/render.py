"""Templates of the dashboard: Jinja2 through Litestar, autoescaped (payloads and error messages come
from outside), a few filters, and asset URLs that change when the asset does."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from litestar import Request
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template import TemplateConfig

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
STATIC_PATH = "/dashboard/static"


def pretty(value: Any) -> str:
    """JSON as people read it: indented, keys sorted."""
    return json.dumps(msgspec.to_builtins(value), indent=2, sort_keys=True, ensure_ascii=False)


def when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds(value: float | None) -> str:
    """A duration for humans: 850 ms, 12.5 s, 3 min 20 s, 2 h 5 min."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60)} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60)} min"


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "—"
    return seconds((end - start).total_seconds())


def _static_url(versions: dict[str, str]) -> Any:
    def url(name: str) -> str:
        # The content hash busts browser caches when a release changes the file.
        return f"{STATIC_PATH}/{name}?v={versions[name]}"

    return url


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    versions = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in STATIC.iterdir() if p.is_file()
    }

    def configure(engine: JinjaTemplateEngine) -> None:
        env = engine.engine
        env.filters.update(pretty=pretty, when=when, seconds=seconds)
        env.globals.update(static_url=_static_url(versions), duration=duration)
        # Templates are part of the package; nothing in them may depend on the input.
        env.trim_blocks = env.lstrip_blocks = True

    return TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine, engine_callback=configure)


def page(request: Request[Any, Any, Any], name: str, status_code: int = 200, **context: Any) -> Template:
    """Render ``name`` with what every page needs: the session, its CSRF token, the refresh pace, the
    tenant its pages reach (None: every tenant) and, for a session reaching every tenant, the tenants
    its header's selector lists (None on a page answering a POST: the header names the reach only)."""
    session = getattr(request.state, "dashboard_session", None)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Template(
        template_name=name,
        status_code=status_code,
        context={
            "session": session,
            "csrf_token": session.csrf_token if session else "",
            # False for a view-only (`ops:read`) login: templates show no action (the POST is refused too).
            "can_act": bool(session and session.can_act),
            "refresh_s": request.app.state.settings.dashboard_refresh_s,
            "path": request.url.path,
            "reach": getattr(request.state, "dashboard_reach", None),
            "tenants": getattr(request.state, "dashboard_tenants", None),
            # Where the tenant selector comes back to: this page, or the overview after a POST's page.
            "here": here if request.method == "GET" else "/dashboard",
            **context,
        },
    )
