"""`jobyard doctor`'s checks of the services: Postgres (pgvector, migrations), Redis (eviction policy,
persistence) and the data key against what the database holds. URLs are shown without passwords.

Every check of `jobyard doctor` answers a `Check`, defined here, below core/launch/doctor.py which runs
them all."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
import redis

from core.errors import DataKeyError
from core.platform.crypto import key_label, key_ring, resolve_data_key
from core.platform.settings import Settings

Status = Literal["ok", "warn", "fail"]
#: pgvector's iterative index scans (a filtered search keeps reading the HNSW index) came in 0.8.
PGVECTOR_MIN = (0, 8)
#: A doctor waits this long for a server before calling it unreachable.
CONNECT_TIMEOUT_S = 3


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    #: What to do about a warning or a failure.
    fix: str | None = None


def where(url: str) -> str:
    """host:port/database (or the socket), never the password."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "unix":
            return parts.path
        return f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"
    info = psycopg.conninfo.conninfo_to_dict(url.replace("postgresql+psycopg://", "postgresql://"))
    host = info.get("host") or "localhost"
    port = f":{info['port']}" if info.get("port") else ""
    return f"{host}{port}/{info.get('dbname', '')}"


def _first_line(exc: Exception) -> str:
    return (str(exc).strip() or repr(exc)).splitlines()[0]


def _no_url(name: str, settings: Settings) -> Check:
    return Check(
        name,
        "fail",
        f"{'DATABASE_URL' if name == 'postgres' else 'REDIS_URL'} is not set and no `jobyard up` runs "
        f"in {settings.home_path}",
        "start the farm (`make up`), or set DATABASE_URL and REDIS_URL",
    )


def postgres(settings: Settings) -> list[Check]:
    url = settings.database_url
    if not url:
        return [_no_url("postgres", settings)]
    try:
        with psycopg.connect(
            url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=CONNECT_TIMEOUT_S
        ) as conn:
            server = _value(conn, "SHOW server_version")
            installed = _value(conn, "SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            available = _value(
                conn, "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
            )
    except psycopg.Error as exc:
        return [
            Check(
                "postgres",
                "fail",
                f"{where(url)} does not answer: {_first_line(exc)}",
                "check DATABASE_URL, and that the server runs and takes connections from here",
            )
        ]
    checks = [Check("postgres", "ok", f"{where(url)}: PostgreSQL {server}")]
    checks.append(_pgvector(installed, available))
    checks.append(_migrations(url))
    return checks


def _value(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    return row[0] if row else None


def _pgvector(installed: str | None, available: str | None) -> Check:
    if installed:
        version = tuple(int(p) for p in installed.split(".")[:2] if p.isdigit())
        if version >= PGVECTOR_MIN:
            return Check("pgvector", "ok", f"vector {installed}")
        return Check(
            "pgvector",
            "fail",
            f"vector {installed} is older than 0.8: filtered searches can come back short",
            "upgrade pgvector on the server, then ALTER EXTENSION vector UPDATE",
        )
    if available:
        return Check(
            "pgvector",
            "fail",
            f"vector {available} is on the server but not created in this database",
            "run `jobyard migrate` as a superuser (it creates it), or CREATE EXTENSION vector once",
        )
    return Check(
        "pgvector",
        "fail",
        "the server has no pgvector",
        "install it on the server (Debian: postgresql-NN-pgvector), 0.8 or later",
    )


def _migrations(url: str) -> Check:
    from core.launch.readiness import schema_problem

    try:
        problem = schema_problem(url)
    except psycopg.Error as exc:
        return Check("migrations", "fail", _first_line(exc), "run `jobyard migrate`")
    if problem:
        return Check("migrations", "fail", problem, "run `jobyard migrate` (or `jobyard release`)")
    return Check("migrations", "ok", "the database is at this code's revision")


def redis_checks(settings: Settings) -> list[Check]:
    url = settings.redis_url
    if not url:
        return [_no_url("redis", settings)]
    client = redis.Redis.from_url(
        url, socket_timeout=CONNECT_TIMEOUT_S, socket_connect_timeout=CONNECT_TIMEOUT_S
    )
    try:
        server = client.info("server")
        memory = client.info("memory")
        persistence = client.info("persistence")
    except (redis.RedisError, OSError) as exc:
        return [
            Check(
                "redis",
                "fail",
                f"{where(url)} does not answer: {_first_line(exc)}",
                "check REDIS_URL, and that the server runs and takes connections from here",
            )
        ]
    finally:
        client.close()
    checks = [Check("redis", "ok", f"{where(url)}: Redis {server.get('redis_version', '?')}")]
    policy = memory.get("maxmemory_policy", "?")
    if policy == "noeviction":
        checks.append(Check("redis eviction", "ok", "maxmemory-policy noeviction"))
    else:
        checks.append(
            Check(
                "redis eviction",
                "fail",
                f"maxmemory-policy is {policy}: a full Redis would silently drop queued messages "
                "(the sweeper finds them only after JOBYARD_REPUBLISH_AFTER)",
                "set maxmemory-policy noeviction (redis.conf, or `CONFIG SET maxmemory-policy "
                "noeviction` then CONFIG REWRITE); a full Redis then refuses publishes, which the "
                "sweeper retries",
            )
        )
    if persistence.get("aof_enabled") in (1, "1"):
        checks.append(Check("redis persistence", "ok", "appendonly yes"))
    else:
        checks.append(
            Check(
                "redis persistence",
                "warn",
                "appendonly no: after a restart the scheduler re-publishes every queued job "
                "(nothing is lost, Postgres holds the truth; fine for a local farm)",
                "in production: appendonly yes, appendfsync everysec",
            )
        )
    return checks


def data_key(settings: Settings) -> Check:
    encoded = resolve_data_key(settings)
    if not encoded:
        return Check(
            "data key",
            "fail",
            f"JOBYARD_DATA_KEY is not set and {settings.home_path / 'data.key'} does not exist: API, "
            "worker and scheduler refuse to start",
            "`jobyard data-key generate`, keep it in your secret store, give it to every process "
            "(`jobyard up` makes one in JOBYARD_HOME by itself)",
        )
    try:
        ring = key_ring(settings)
    except DataKeyError as exc:
        return Check("data key", "fail", str(exc), "`jobyard data-key generate` makes a valid one")
    source = "JOBYARD_DATA_KEY" if settings.data_key else str(settings.home_path / "data.key")
    held = f"{key_label(ring.key_id)} from {source}" + (
        f", and {len(ring.key_ids) - 1} older" if len(ring.key_ids) > 1 else ""
    )
    in_use = _stored_key_ids(settings)
    missing = sorted(in_use - ring.key_ids)
    if missing:
        return Check(
            "data key",
            "fail",
            f"stored phone numbers and opt-outs are under {', '.join(key_label(k) for k in missing)}, "
            f"which this farm does not hold (it holds {held}): workers refuse to send",
            "give every process that key: as JOBYARD_DATA_KEY, or in JOBYARD_DATA_KEYS_OLD while "
            "`jobyard data-key rotate` moves its values",
        )
    if in_use - {ring.key_id}:
        return Check(
            "data key",
            "warn",
            f"{held}; some stored values are still under an older key",
            "run `jobyard data-key rotate`, then `jobyard data-key status`",
        )
    return Check("data key", "ok", held)


#: The key ids written beside every keyed hash and sealed number (one index probe per distinct id).
_KEY_IDS_IN_USE = """
    WITH RECURSIVE o(k) AS (
        (SELECT address_key_id FROM opt_outs ORDER BY address_key_id LIMIT 1)
        UNION ALL
        SELECT (SELECT address_key_id FROM opt_outs WHERE address_key_id > o.k
                ORDER BY address_key_id LIMIT 1) FROM o WHERE o.k IS NOT NULL
    )
    SELECT k FROM o WHERE k IS NOT NULL
    UNION SELECT to_key_id FROM (SELECT DISTINCT to_key_id FROM
        (SELECT to_key_id FROM outbound_messages LIMIT 10000) sample) r
    WHERE to_key_id IS NOT NULL
"""


def _stored_key_ids(settings: Settings) -> frozenset[str]:
    """The data keys the database's opt-outs and a sample of outbound numbers are under (empty if the
    database does not answer: the postgres and migrations checks say why)."""
    if not settings.database_url:
        return frozenset()
    try:
        with psycopg.connect(
            settings.database_url.replace("postgresql+psycopg://", "postgresql://"),
            connect_timeout=CONNECT_TIMEOUT_S,
        ) as conn:
            return frozenset(row[0] for row in conn.execute(_KEY_IDS_IN_USE))
    except psycopg.Error:
        return frozenset()
