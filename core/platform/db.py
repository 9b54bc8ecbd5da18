"""Engine factory: SQLAlchemy 2 Core over psycopg 3, one pool per process and URL.

Every session starts with Postgres's ``statement_timeout`` and ``lock_timeout`` (sent as startup
options, so they cost no round trip): JOBYARD_DB_STATEMENT_TIMEOUT and JOBYARD_DB_LOCK_TIMEOUT for the
API, the scheduler and the CLI, whose statements are short and must never hang; a worker process
installs its own at start (``use_session_timeouts``): JOBYARD_WORKER_STATEMENT_TIMEOUT, no separate
lock timeout (a statement's lock waits count towards its statement timeout), since handlers may run
heavy SQL of their own and wait for a row another job of the same chat holds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.errors import DatabaseNotConfigured
from core.platform.settings import Settings, get_settings

_engines: dict[tuple[str, int, str], Engine] = {}
_lock = threading.Lock()
#: (statement, lock) timeouts in seconds installed for this process; None: the settings' own.
_timeouts: tuple[float, float] | None = None


def sqlalchemy_url(url: str) -> str:
    """Point a plain postgres:// URL at the psycopg 3 driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def use_session_timeouts(statement_s: float, lock_s: float) -> None:
    """Give every session this process opens from now on these timeouts (0: none); at process start."""
    global _timeouts
    with _lock:
        _timeouts = (statement_s, lock_s)


def session_options(settings: Settings) -> str:
    """The libpq ``options`` that set this process's timeouts, for any connection it opens."""
    statement_s, lock_s = _timeouts or (settings.db_statement_timeout_s, settings.db_lock_timeout_s)
    return f"-c statement_timeout={round(statement_s * 1000)} -c lock_timeout={round(lock_s * 1000)}"


def get_engine(settings: Settings | None = None) -> Engine:
    """The process's engine for the configured database, created on first use."""
    settings = settings or get_settings()
    if not settings.database_url:
        raise DatabaseNotConfigured("DATABASE_URL is not set (run `jobyard up` to get embedded services)")
    options = session_options(settings)
    key = (settings.database_url, settings.db_pool_size, options)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = sa.create_engine(
                sqlalchemy_url(settings.database_url),
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_pool_size,
                # No pre-ping: it costs a round trip on every checkout, on the hot path of every
                # enqueue and claim. After a Postgres restart, the first statement on a stale
                # connection fails instead (the API answers 503, a worker's job is published again
                # by the sweeper) and SQLAlchemy then replaces every connection of the pool.
                pool_pre_ping=False,
                # Short-lived statements only; a stuck query must not hold a thread forever.
                connect_args={"connect_timeout": 10, "application_name": "jobyard", "options": options},
            )
            _engines[key] = engine
        return engine


@contextmanager
def transaction(settings: Settings | None = None) -> Iterator[Connection]:
    """A connection in a transaction that commits on success and rolls back on error."""
    with get_engine(settings).begin() as conn:
        yield conn


@contextmanager
def autocommit(settings: Settings | None = None) -> Iterator[Connection]:
    """A connection on which each statement commits on its own: one round trip for a write that is
    one statement, where a transaction costs a second one for its COMMIT."""
    with get_engine(settings).connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


def dispose_engines() -> None:
    """Close every pool; called after fork and in tests."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@contextmanager
def snapshot(settings: Settings | None = None) -> Iterator[Connection]:
    """A read-only transaction that sees one snapshot across all its statements (REPEATABLE READ).

    For reads made of several queries that must agree with each other, such as running totals plus
    the rows not yet added to them.
    """
    with get_engine(settings).connect() as conn:
        conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with conn.begin():
            yield conn
