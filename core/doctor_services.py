"""`jobyard doctor`'s checks of the services: Postgres (pgvector, migrations), Redis (eviction policy,
persistence) and the data key against what the database holds. URLs are shown without passwords."""

from __future__ import annotations

import urllib.parse
from typing import Any

import psycopg
import redis

from core.crypto import SEALED_PREFIX, DataCipher, DataKeyError, resolve_data_key
from core.doctor import Check
from core.settings import Settings

#: pgvector's iterative index scans (a filtered search keeps reading the HNSW index) came in 0.8.
PGVECTOR_MIN = (0, 8)
#: A doctor waits this long for a server before calling it unreachable.
CONNECT_TIMEOUT_S = 3


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
    from core.readiness import schema_problem

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
        cipher = DataCipher(encoded)
    except DataKeyError as exc:
        return Check("data key", "fail", str(exc), "`jobyard data-key generate` makes a valid one")
    source = "JOBYARD_DATA_KEY" if settings.data_key else str(settings.home_path / "data.key")
    sealed_with = _sealed_key_id(settings)
    if sealed_with and sealed_with != cipher.key_id:
        return Check(
            "data key",
            "fail",
            f"the database's phone numbers were sealed with data key {sealed_with}; this one is "
            f"{cipher.key_id} ({source})",
            "give every process the key that sealed them (from your secret store or its backup)",
        )
    return Check("data key", "ok", f"key {cipher.key_id} from {source}")


def _sealed_key_id(settings: Settings) -> str | None:
    """The id of the key that sealed a stored number, if the database answers and holds one."""
    if not settings.database_url:
        return None
    query = (
        "SELECT v FROM (SELECT to_sealed AS v FROM outbound_messages LIMIT 1) o "
        "UNION ALL SELECT v FROM (SELECT address_sealed AS v FROM opt_outs LIMIT 1) a LIMIT 1"
    )
    try:
        with psycopg.connect(
            settings.database_url.replace("postgresql+psycopg://", "postgresql://"),
            connect_timeout=CONNECT_TIMEOUT_S,
        ) as conn:
            value = _value(conn, query)
    except psycopg.Error:
        return None  # the postgres and migrations checks say why
    if isinstance(value, str) and value.startswith(SEALED_PREFIX):
        return value[len(SEALED_PREFIX) :].split(":", 1)[0]
    return None
