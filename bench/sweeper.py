"""What does one sweeper pass cost with a million jobs queued? Before issue 15 and now, side by side.

    python -m bench.sweeper [--queued 1000000] [--passes 10] [--consumers 4] [--held 100]
    python -m bench --only sweeper          (the same, inside the harness's report)

Against embedded Postgres and Redis: ``--queued`` queued jobs published an hour ago (so the sweeper
checks them), with their messages really in Redis, in Dramatiq's layout, as the API publishes them;
one per sweeper batch never reached Redis (each pass must publish one again). ``--consumers`` broker
ids, registered as live workers, each hold ``--held`` fetched messages in their ack sets.

Then passes of the sweeper as it was before issue 15 (kept here as the peer, ``sweeper_before_15``:
row locks held across a read of the whole queue list and a SCAN for ack sets) and of the current
``core.engine.dispatch.republish_lost`` alternate, each on the next batch of candidates. For each pass: its
wall time and its Redis time, two ways: the time the sweeper's Redis client spent in calls (round
trips and reading the replies, as the sweeper feels it) and the server's own time in the commands
the pass ran (INFO commandstats; a script's inner commands are inside its own time, not added).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import redis
import sqlalchemy as sa
from dramatiq.brokers.redis import RedisBroker

from core.engine.broker import JobyardRedisBroker, Publication, publish, publish_commands
from core.engine.dispatch import republish_lost
from core.engine.jobs import JobStatus, utcnow
from core.engine.lanes import waiting_ids
from core.engine.recovery import live_broker_ids, register_worker
from core.launch.embedded import EmbeddedPostgres, EmbeddedRedis
from core.platform.db import get_engine, transaction
from core.platform.migrate import upgrade
from core.platform.settings import Settings
from core.platform.tables import jobs

#: The issue's goal for one pass at a million queued jobs.
GOAL_REDIS_MS = 50.0
QUEUE = "unread_count"
#: Commands the current sweeper's script runs inside Redis: their time is already in the script's.
SCRIPT_INNER = frozenset({"zrange", "smembers", "hexists", "hlen", "llen"})
#: The bench's own commands, not the sweeper's.
OWN = frozenset({"info", "config"})

QUEUED_SQL = """
INSERT INTO jobs (id, type, queue, status, payload, run_at, max_retries, created_at, updated_at,
                  message_id, published_at)
SELECT u, 'unread_count', 'unread_count', 'queued', '{}'::jsonb, t, 3, t, t, u::text,
       t + g * interval '1 microsecond'
FROM (SELECT g, gen_random_uuid() AS u, now() - interval '1 hour' AS t
      FROM generate_series(1, :n) AS g) AS fresh
"""


# -- the peer: the sweeper before issue 15, unchanged but for its name -------------------------


def _locate_before_15(broker: RedisBroker, pubs: Sequence[Publication]) -> list[str]:
    if not pubs:
        return []
    ns = broker.namespace
    pipe = broker.client.pipeline(transaction=False)
    for pub in pubs:
        pipe.hexists(f"{ns}:{pub.queue}.msgs", pub.message_id)
    present = [bool(found) for found in pipe.execute()]
    where = ["waiting" if ok else "missing" for ok in present]
    queues = {pub.queue for pub, ok in zip(pubs, present, strict=True) if ok}
    waiting: set[bytes] = set()
    for queue in queues:
        # Its LRANGE of the queue's list, over the lanes the list became (core/engine/lanes.py).
        waiting.update(waiting_ids(broker.client, ns, queue))
    fetched = [i for i, pub in enumerate(pubs) if present[i] and pub.message_id.encode() not in waiting]
    if not fetched:
        return where
    holders: dict[int, str] = {}
    for queue in {pubs[i].queue for i in fetched}:
        for key in broker.client.scan_iter(match=f"{ns}:__acks__.*.{queue}", count=1000):
            broker_id = key.decode()[len(f"{ns}:__acks__.") : -len(f".{queue}")]
            members = broker.client.smembers(key)
            for i in fetched:
                if pubs[i].queue == queue and pubs[i].message_id.encode() in members:
                    holders[i] = broker_id
    for i in fetched:
        where[i] = holders.get(i, "missing")
    return where


_PUBLISHED = (jobs.c.id, jobs.c.type, jobs.c.queue, jobs.c.message_id, jobs.c.request_id)


def sweeper_before_15(settings: Settings, broker: RedisBroker) -> int:
    """``republish_lost`` as it was at ad6eba8: FOR UPDATE rows held across the Redis look-ups."""
    stale_before = utcnow() - timedelta(seconds=settings.republish_after_s)
    republished: Sequence[sa.Row[Any]] = []
    with transaction(settings) as conn:
        candidates = conn.execute(
            sa.select(*_PUBLISHED)
            .where(jobs.c.status == JobStatus.QUEUED, jobs.c.published_at < stale_before)
            .order_by(jobs.c.published_at)
            .limit(settings.scheduler_batch)
            .with_for_update(skip_locked=True)
        ).all()
        pubs = [Publication(r.id, r.type, r.queue, r.message_id, r.request_id) for r in candidates]
        locations = _locate_before_15(broker, pubs)
        live = (
            live_broker_ids(conn, settings)
            if any(w not in ("waiting", "missing") for w in locations)
            else set()
        )
        fine = [
            p.job_id for p, where in zip(pubs, locations, strict=True) if where == "waiting" or where in live
        ]
        now = utcnow()
        if fine:
            conn.execute(sa.update(jobs).where(jobs.c.id.in_(fine)).values(published_at=now))
        lost = [p.job_id for p in pubs if p.job_id not in set(fine)]
        if lost:
            republished = conn.execute(
                sa.update(jobs)
                .where(jobs.c.id.in_(lost))
                .values(
                    message_id=sa.cast(sa.func.gen_random_uuid(), sa.Text),
                    published_at=now,
                    updated_at=now,
                )
                .returning(*_PUBLISHED)
            ).all()
    return publish(
        broker, [Publication(r.id, r.type, r.queue, r.message_id, r.request_id) for r in republished]
    )


# -- measuring -----------------------------------------------------------------------------------


class Stopwatch:
    """Time spent inside a Redis client's socket calls (sending commands, reading replies)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def connection_class(self, base: type[Any]) -> type[Any]:
        watch = self

        class Timed(base):  # type: ignore[misc, valid-type]
            def send_packed_command(self, *args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return super().send_packed_command(*args, **kwargs)
                finally:
                    watch.seconds += time.perf_counter() - started

            def read_response(self, *args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return super().read_response(*args, **kwargs)
                finally:
                    watch.seconds += time.perf_counter() - started

        return Timed


def _command_usec(client: redis.Redis) -> dict[str, int]:
    stats = cast(dict[str, dict[str, Any]], client.info("commandstats"))
    return {name.removeprefix("cmdstat_"): int(v["usec"]) for name, v in stats.items()}


def _server_ms(before: dict[str, int], after: dict[str, int]) -> tuple[float, dict[str, float]]:
    delta = {k: (after.get(k, 0) - before.get(k, 0)) / 1000 for k in after}
    ran = {k: v for k, v in delta.items() if v > 0 and k not in OWN}
    scripted = "evalsha" in ran or "eval" in ran
    counted = {k: v for k, v in ran.items() if not (scripted and k in SCRIPT_INNER)}
    return sum(counted.values()), ran


def _fill(settings: Settings, client: redis.Redis, queued: int, consumers: int, held: int) -> None:
    chunk_size, batch = 20_000, settings.scheduler_batch
    started = time.perf_counter()
    with transaction(settings) as conn:
        conn.execute(sa.text(QUEUED_SQL), {"n": queued})
    with get_engine(settings).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE jobs"))
    print(f"{queued:,} queued rows in Postgres in {time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    ns = settings.redis_namespace
    with get_engine(settings).connect() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=chunk_size).execute(
            sa.select(jobs.c.id, jobs.c.message_id).order_by(jobs.c.published_at)
        )
        for n, chunk in enumerate(rows.partitions()):
            # One per batch never reached Redis: each pass has to publish one again.
            pubs = [
                Publication(i, QUEUE, QUEUE, m)
                for k, (i, m) in enumerate(chunk, n * chunk_size)
                if k % batch != batch // 2
            ]
            pipe = client.pipeline(transaction=False)
            for command in publish_commands(ns, pubs):
                pipe.execute_command(*command)
            pipe.execute()
            if n % 10 == 0:
                print(f"  {n * chunk_size:,} messages in Redis", flush=True)
    print(f"messages in Redis in {time.perf_counter() - started:.1f} s", flush=True)
    for c in range(consumers):
        holder = JobyardRedisBroker(client=client, namespace=ns, middleware=[], idle_poll_ms=1000)
        holder.broker_id = f"bench-consumer-{c}-{uuid.uuid4().hex[:6]}"
        holder.fetch(QUEUE, held)  # as a consumer's fetch: from its lane into its ack set
        register_worker(settings, f"bench-worker-{c}", [QUEUE], holder.broker_id)


def _timed_broker(settings: Settings, watch: Stopwatch) -> RedisBroker:
    client = redis.Redis.from_url(settings.redis_url or "", socket_timeout=60)
    pool = client.connection_pool
    pool.connection_class = watch.connection_class(pool.connection_class)
    return JobyardRedisBroker(
        client=client, namespace=settings.redis_namespace, middleware=[], idle_poll_ms=1000
    )


def _summary(samples: list[dict[str, float]]) -> dict[str, float]:
    return {
        key: round(statistics.median(s[key] for s in samples), 2)
        for key in ("wall_ms", "redis_client_ms", "redis_server_ms", "republished")
    } | {"redis_client_ms_max": round(max(s["redis_client_ms"] for s in samples), 2)}


def measure(
    settings: Settings, queued: int, passes: int, consumers: int, held: int, batch: int
) -> dict[str, Any]:
    """Fill, then alternate passes of the peer and the current sweeper; medians per sweeper."""
    settings = settings.replace(scheduler_batch=batch, republish_after_s=60.0)
    admin = redis.Redis.from_url(settings.redis_url or "", socket_timeout=120)
    try:
        _fill(settings, admin, queued, consumers, held)
        sweepers: dict[str, Callable[[Settings, RedisBroker], int]] = {
            "before_15": sweeper_before_15,
            "now": republish_lost,
        }
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in sweepers}
        breakdown: dict[str, dict[str, float]] = {}
        for _ in range(passes):
            for name, sweep in sweepers.items():
                watch = Stopwatch()
                broker = _timed_broker(settings, watch)
                broker.client.ping()  # connect outside the measured pass
                watch.seconds = 0.0
                before = _command_usec(admin)
                started = time.perf_counter()
                republished = sweep(settings, broker)
                wall = time.perf_counter() - started
                server_ms, breakdown[name] = _server_ms(before, _command_usec(admin))
                broker.client.close()
                samples[name].append(
                    {
                        "wall_ms": wall * 1000,
                        "redis_client_ms": watch.seconds * 1000,
                        "redis_server_ms": server_ms,
                        "republished": republished,
                    }
                )
        result: dict[str, Any] = {
            "queued": queued,
            "batch": batch,
            "passes": passes,
            "consumers": consumers,
            "held_per_consumer": held,
            **{name: _summary(s) for name, s in samples.items()},
            "server_ms_by_command_last_pass": breakdown,
        }
        result["ratio_redis_client"] = round(
            result["before_15"]["redis_client_ms"] / max(result["now"]["redis_client_ms"], 1e-6), 1
        )
        result["goal_met"] = (
            max(result["now"]["redis_client_ms"], result["now"]["redis_server_ms"]) < GOAL_REDIS_MS
        )
        return result
    finally:
        admin.close()


def report(result: dict[str, Any]) -> str:
    lines = [
        f"sweeper pass, {result['queued']:,} jobs queued, batch {result['batch']}, "
        f"{result['consumers']} consumers holding {result['held_per_consumer']} each; "
        f"median of {result['passes']} passes each, alternating",
        f"{'':28}{'wall ms':>10}{'Redis ms (client)':>20}{'Redis ms (server)':>20}{'republished':>13}",
    ]
    for name, label in (("before_15", "before issue 15 (peer)"), ("now", "now")):
        r = result[name]
        lines.append(
            f"{label:28}{r['wall_ms']:>10.1f}{r['redis_client_ms']:>20.2f}{r['redis_server_ms']:>20.2f}"
            f"{r['republished']:>13.0f}"
        )
    lines.append(
        f"Redis time (client), before / now: {result['ratio_redis_client']}x; "
        f"goal < {GOAL_REDIS_MS:.0f} ms per pass: {'met' if result['goal_met'] else 'NOT met'}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queued", type=int, default=1_000_000)
    parser.add_argument("--passes", type=int, default=10)
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument("--held", type=int, default=100)
    parser.add_argument("--batch", type=int, default=Settings().scheduler_batch)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="jobyard-bench-"))
    postgres, redis_server = EmbeddedPostgres(home), EmbeddedRedis(home)
    settings = Settings(
        database_url=postgres.start(), redis_url=redis_server.start(), redis_namespace="bench"
    )
    try:
        upgrade(settings)
        result = measure(settings, args.queued, args.passes, args.consumers, args.held, args.batch)
        print(report(result))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        redis_server.stop()
        postgres.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
