"""Enqueue on the API's event loop, with psycopg's and redis-py's asyncio clients.

A flush run in a worker thread pays a thread hand-off there and back, and, under load, waits for
the GIL behind the thread that parses requests each time one of its round trips returns. On the
event loop it pays neither. This path takes jobs without idempotency keys (one autocommitted
insert, nothing to read back); a group with a key goes through ``core.engine.jobs.enqueue`` in a thread.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis
import structlog
from psycopg_pool import AsyncConnectionPool

from core.engine.broker import async_redis_client, publish_commands
from core.engine.jobs import (
    INSERT_MANY_PSYCOPG,
    Enqueued,
    NewJob,
    encode_rows,
    new_job,
    new_rows,
    publication,
    utcnow,
)
from core.platform.db import session_options
from core.platform.settings import Settings

log = structlog.get_logger(__name__)


class AsyncEnqueuer:
    """One per API process: opened in the app's lifespan, closed at its end."""

    def __init__(self, settings: Settings, connections: int) -> None:
        if not settings.database_url or not settings.redis_url:
            raise RuntimeError("DATABASE_URL and REDIS_URL are needed to enqueue")
        self.namespace = settings.redis_namespace
        self.pool = AsyncConnectionPool(
            settings.database_url,
            min_size=1,
            max_size=connections,
            # As core/platform/db.py's engine: a Postgres that does not answer fails the request (503) in
            # seconds rather than holding it.
            timeout=10,
            kwargs={
                "autocommit": True,
                "application_name": "jobyard",
                "connect_timeout": 10,
                # The API's statement and lock timeouts, as on every other session it opens.
                "options": session_options(settings),
            },
            open=False,
        )
        self.redis = async_redis_client(settings, socket_timeout=5, connections=connections)

    async def open(self) -> None:
        await self.pool.open()

    async def close(self) -> None:
        await self.pool.close()
        await self.redis.aclose(close_connection_pool=True)  # a pool passed in is not closed otherwise

    @staticmethod
    def takes(jobs: Sequence[NewJob]) -> bool:
        return not any(j.idempotency_key for j in jobs)

    async def enqueue(self, jobs: Sequence[NewJob]) -> list[Enqueued]:
        """Commit the jobs (one statement, all or none), then publish the ones due now."""
        now = utcnow()
        rows, _ = new_rows(jobs, now)
        async with self.pool.connection() as conn:
            cursor = await conn.execute(INSERT_MANY_PSYCOPG, {"rows": encode_rows(rows), "now": now})
            inserted = len(await cursor.fetchall())
        if inserted != len(rows):  # only an idempotency key can skip a row, and none was given
            raise RuntimeError(f"{len(rows) - inserted} of {len(rows)} new jobs were not inserted")
        results = [
            Enqueued(new_job(r, now), True, r.message_id, j.traceparent)
            for r, j in zip(rows, jobs, strict=True)
        ]
        pubs = [publication(e) for e in results if e.message_id is not None]
        if pubs:
            try:
                pipe = self.redis.pipeline(transaction=True)  # as core.engine.broker.publish
                for command in publish_commands(self.namespace, pubs):
                    pipe.execute_command(*command)
                await pipe.execute()
            except (redis.RedisError, OSError) as exc:
                # The rows are committed: the sweeper will find the missing messages and publish them.
                log.warning("publish_failed_will_sweep", jobs=len(pubs), error=str(exc))
        return results
