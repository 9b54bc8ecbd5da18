"""A local farm's own services: embedded Postgres and Redis for the URLs that are not set, published
in JOBYARD_HOME/services.json for the farm's other processes, and the admin key of a home's first
start. Used by `jobyard up` and `jobyard release`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis
import structlog

from core.launch.embedded import EmbeddedPostgres, EmbeddedRedis, remove_services_file, write_services_file
from core.platform.crypto import DATA_KEY_FILE, ensure_data_key_file, resolve_data_key, resolve_old_data_keys
from core.platform.settings import Settings

log = structlog.get_logger(__name__)

ADMIN_KEY_FILE = "admin.key"


@dataclass
class LocalServices:
    """Embedded servers for whichever of DATABASE_URL and REDIS_URL is unset."""

    home: Path
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    _published: bool = field(default=False, repr=False)

    @classmethod
    def for_settings(cls, settings: Settings) -> LocalServices:
        home = settings.home_path
        return cls(
            home=home,
            postgres=EmbeddedPostgres(home) if not settings.database_url else None,
            redis=EmbeddedRedis(home) if not settings.redis_url else None,
        )

    @property
    def embeds_any(self) -> bool:
        return self.postgres is not None or self.redis is not None

    def start(self, settings: Settings) -> Settings:
        """Start the embedded servers and publish every URL; returns ``settings`` with them."""
        self.home.mkdir(parents=True, exist_ok=True)
        if self.postgres:
            settings = settings.replace(database_url=self.postgres.start())
            log.info("embedded_postgres_started", data=str(self.home / "postgres"))
        if self.redis:
            settings = settings.replace(redis_url=self.redis.start())
            log.info("embedded_redis_started", socket=str(self.redis.socket_path))
        write_services_file(
            self.home, {"database_url": settings.database_url or "", "redis_url": settings.redis_url or ""}
        )
        self._published = True
        return settings

    def unpublish(self) -> None:
        """No new process finds the services from here on."""
        if self._published:
            remove_services_file(self.home)
            self._published = False

    def stop(self) -> None:
        self.unpublish()
        if self.redis:
            self.redis.stop()
        if self.postgres:
            self.postgres.stop()


def wait_for_clients_to_leave(settings: Settings, timeout_s: float) -> int:
    """Wait until no other client is connected to the database or Redis, at most ``timeout_s``.

    Returns how many were still connected at the end. Lets the farm's other processes, stopped at
    the same moment, finish their last writes before the servers go away.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        left = _clients(settings)
        if left == 0 or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def _clients(settings: Settings) -> int:
    count = 0
    try:
        if settings.database_url:
            with psycopg.connect(settings.database_url, connect_timeout=2) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
                ).fetchone()
                count += int(row[0]) if row else 0
        if settings.redis_url:
            client = redis.Redis.from_url(settings.redis_url, socket_timeout=2)
            try:
                count += max(len(client.client_list()) - 1, 0)  # less this very connection
            finally:
                client.close()
    except (psycopg.Error, redis.RedisError, OSError):
        return 0  # a server already gone has no clients to wait for
    return count


def ensure_admin_key(settings: Settings, home: Path) -> str | None:
    """On a home's first start, create a key with every scope; returns its secret that one time."""
    path = home / ADMIN_KEY_FILE
    if path.exists():
        return None
    from core.access.keys import SCOPES, create_key
    from core.platform.db import transaction

    with transaction(settings) as conn:
        _, secret = create_key(conn, "admin", SCOPES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret


def ensure_local_data_key(settings: Settings, home: Path) -> Settings:
    """A local farm's data key: JOBYARD_DATA_KEY, else the home's own, made on its first start (0600).

    Only a local farm (`jobyard up`, `jobyard release` holding services or run by honcho) makes one;
    a production deployment sets JOBYARD_DATA_KEY from its secret store.
    """
    if not settings.data_key:
        home.mkdir(parents=True, exist_ok=True)
        if ensure_data_key_file(home):
            log.warning(
                "data_key_generated",
                path=str(home / DATA_KEY_FILE),
                detail="phone numbers are encrypted with this key: back it up; without it they cannot be read",
            )
    # The file's further lines are older keys of the ring (read before data_key is filled in).
    return settings.replace(
        data_key=resolve_data_key(settings), data_keys_old=resolve_old_data_keys(settings)
    )


def admin_key_line(admin_key: str | None, home: Path) -> str:
    if admin_key:
        return f"admin key:  {admin_key}   (shown once; saved to {home / ADMIN_KEY_FILE})"
    return f"admin key:  in {home / ADMIN_KEY_FILE}"
