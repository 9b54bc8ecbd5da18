"""Liveness and readiness: no key needed."""

from __future__ import annotations

from typing import Any

import redis
import sqlalchemy as sa
import sqlalchemy.exc
from litestar import Response, get
from litestar.datastructures import State

from control_api.auth import PUBLIC
from control_api.errors import error_response
from core.platform.db import get_engine


@get("/healthz", sync_to_thread=False, tags=["health"], **PUBLIC)
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@get("/readyz", sync_to_thread=True, tags=["health"], **PUBLIC)
def readyz(state: State) -> Response[Any]:
    """Postgres and Redis both answer; 503 naming the one that does not."""
    checks = {"postgres": "ok", "redis": "ok"}
    try:
        with get_engine(state.settings).connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sqlalchemy.exc.SQLAlchemyError:
        checks["postgres"] = "down"
    try:
        state.health_redis.ping()
    except (redis.RedisError, OSError):
        checks["redis"] = "down"
    if "down" in checks.values():
        down = ", ".join(k for k, v in checks.items() if v == "down")
        return error_response(503, "dependency_down", f"not ready: {down} unavailable", checks)
    return Response({"status": "ready", **checks})
