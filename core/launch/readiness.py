"""Waiting at start for what a farm process needs: Postgres at this code's schema, and Redis.

Processes of one farm start together and in no particular order (a Procfile runner, compose, a
Kubernetes rollout beside its migration Job), so `jobyard api|worker|scheduler` wait for the release
step instead of crashing on a missing table. With no URLs set they also wait for the embedded
services of `jobyard release` (or `jobyard up`) to appear in JOBYARD_HOME/services.json.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import redis

from core.errors import ServicesNotReady
from core.launch.embedded import SERVICES_FILE, with_running_services
from core.platform.settings import Settings

#: Between two looks; the wait is for another process, which takes seconds.
POLL_S = 0.5


def _connect(database_url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3)


def wait_for_postgres(database_url: str, timeout_s: float) -> None:
    """Until Postgres accepts a connection (a server started beside this process may still be booting)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with _connect(database_url):
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() >= deadline:
                raise ServicesNotReady(
                    f"Postgres did not answer within {timeout_s:g} s: {_first_line(exc)}"
                ) from None
        time.sleep(POLL_S)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip() or repr(exc)).splitlines()[0]


def schema_problem(database_url: str) -> str | None:
    """Why the database cannot serve this code yet, or None when it can."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from core.platform.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    with _connect(database_url) as conn:
        exists = conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()
        row = (
            conn.execute("SELECT version_num FROM alembic_version").fetchone()
            if exists and exists[0]
            else None
        )
    current = str(row[0]) if row else None
    if current == head:
        return None
    if current is not None:
        try:
            script.get_revision(current)
        except CommandError:
            return None  # a newer release migrated past this code: it can still run (rolling deploys)
    return f"the database is at revision {current or 'none'}, this code needs {head} (run `jobyard migrate`)"


def problem(settings: Settings) -> str | None:
    """What stops a farm process from starting now, or None."""
    if not settings.database_url or not settings.redis_url:
        missing = " and ".join(
            name for name, url in (("DATABASE_URL", settings.database_url), ("REDIS_URL", settings.redis_url))
            if not url
        )  # fmt: skip
        return (
            f"{missing} not set and no embedded services in {settings.home_path / SERVICES_FILE} "
            "(start them with `jobyard release` or `jobyard up`)"
        )
    try:
        found = schema_problem(settings.database_url)
    except psycopg.Error as exc:
        return f"Postgres does not answer: {_first_line(exc)}"
    if found:
        return found
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=3, socket_connect_timeout=3)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return f"Redis does not answer: {exc}"
    finally:
        client.close()
    return None


def wait_for_services(
    settings: Settings, timeout_s: float, announce: Callable[[str], None] = lambda _: None
) -> Settings:
    """``settings`` with the embedded services' URLs filled in, once Postgres (migrated) and Redis
    answer; raises ServicesNotReady after ``timeout_s``. ``announce`` hears each new reason to wait."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        resolved = with_running_services(settings)
        found = problem(resolved)
        if found is None:
            return resolved
        if time.monotonic() >= deadline:
            raise ServicesNotReady(f"gave up after {timeout_s:g} s: {found}")
        if found != last:
            announce(found)
            last = found
        time.sleep(POLL_S)
