"""The Dramatiq Redis broker, built from settings at process start, and how jobs are published on it."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import dramatiq
import redis
import redis.asyncio
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

from core.settings import Settings, get_settings


class RedisNotConfigured(RuntimeError):
    """REDIS_URL is not set and no embedded Redis was started."""


def redis_client(settings: Settings | None = None, *, socket_timeout: float | None = None) -> redis.Redis:
    """A Redis client for the configured URL.

    Dramatiq's consumers block on Redis, so its client gets ``socket_timeout=None``: redis-py 8
    defaults to 5 s, which cuts those calls short.
    """
    settings = settings or get_settings()
    if not settings.redis_url:
        raise RedisNotConfigured("REDIS_URL is not set (run `jobyard up` to get embedded services)")
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=5,
        health_check_interval=30,
    )


def async_redis_client(
    settings: Settings, *, socket_timeout: float, connections: int = 64
) -> redis.asyncio.Redis:
    """An asyncio Redis client for the API's own per-request calls (the rate limiter).

    At most ``connections`` at once; a request past that waits for one (up to ``socket_timeout``)
    instead of failing, as redis-py's default pool does beyond 100.
    """
    if not settings.redis_url:
        raise RedisNotConfigured("REDIS_URL is not set (run `jobyard up` to get embedded services)")
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=connections,
        timeout=socket_timeout,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
    )
    return redis.asyncio.Redis(connection_pool=pool)


class JobyardRedisBroker(RedisBroker):
    """RedisBroker whose idle consumers poll at most every ``idle_poll_ms``.

    Dramatiq backs an idle consumer off to ``worker_timeout`` (1000 ms, not settable from its CLI),
    which puts up to a second between an enqueue and the job starting.
    """

    def __init__(self, *, idle_poll_ms: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.idle_poll_ms = idle_poll_ms

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        return super().consume(queue_name, prefetch, min(timeout, self.idle_poll_ms))


def build_broker(settings: Settings | None = None, middleware: Sequence[Middleware] = ()) -> RedisBroker:
    """A broker for this process; call once at process start (never at import)."""
    settings = settings or get_settings()
    return JobyardRedisBroker(
        client=redis_client(settings),
        namespace=settings.redis_namespace,
        middleware=list(middleware),
        idle_poll_ms=settings.worker_idle_poll_ms,
    )


@dataclass(frozen=True, slots=True)
class Publication:
    """One message to put on a queue: the job it carries and the Redis id recorded on the job row."""

    job_id: uuid.UUID
    type: str
    queue: str
    message_id: str
    request_id: str | None = None


def new_message_id() -> str:
    return str(uuid.uuid4())


def message_for(pub: Publication) -> dramatiq.Message[Any]:
    options: dict[str, Any] = {"redis_message_id": pub.message_id, "job_id": str(pub.job_id)}
    if pub.request_id:
        options["request_id"] = pub.request_id
    return dramatiq.Message(
        queue_name=pub.queue,
        actor_name=pub.type,
        args=(str(pub.job_id),),
        kwargs={},
        options=options,
        message_id=pub.message_id,
    )


def publish(broker: RedisBroker, publications: Iterable[Publication]) -> int:
    """Put each job's message on its queue under the Redis id already committed on the job row.

    ``RedisBroker.enqueue`` would pick a fresh Redis id and make one round trip per message; this
    writes Dramatiq's queue layout directly (the message in ``<ns>:<queue>.msgs``, its id pushed on
    ``<ns>:<queue>``, as its dispatch script does) in one pipeline, under ids the sweeper can look up.
    """
    pipe = broker.client.pipeline(transaction=False)
    messages = []
    for pub in publications:
        message = message_for(pub)
        broker.emit_before("enqueue", message, None)
        pipe.hset(f"{broker.namespace}:{pub.queue}.msgs", pub.message_id, message.encode())
        pipe.rpush(f"{broker.namespace}:{pub.queue}", pub.message_id)
        messages.append(message)
    if not messages:
        return 0
    pipe.execute()
    for message in messages:
        broker.emit_after("enqueue", message, None)
    return len(messages)


#: Where a published message is: waiting in its queue, fetched by a consumer (and not acked yet),
#: or gone from Redis.
WAITING, MISSING = "waiting", "missing"


def locate_messages(broker: RedisBroker, pubs: Sequence[Publication]) -> list[str]:
    """For each publication: WAITING, MISSING, or the Dramatiq broker id of the consumer holding it."""
    if not pubs:
        return []
    ns = broker.namespace
    pipe = broker.client.pipeline(transaction=False)
    for pub in pubs:
        pipe.hexists(f"{ns}:{pub.queue}.msgs", pub.message_id)
    present = [bool(found) for found in pipe.execute()]
    where = [WAITING if ok else MISSING for ok in present]
    queues = {pub.queue for pub, ok in zip(pubs, present, strict=True) if ok}
    waiting: set[bytes] = set()
    for queue in queues:
        waiting.update(cast(list[bytes], broker.client.lrange(f"{ns}:{queue}", 0, -1)))
    fetched = [i for i, pub in enumerate(pubs) if present[i] and pub.message_id.encode() not in waiting]
    if not fetched:
        return where
    # Fetched messages sit in their consumer's ack set: namespace:__acks__.<broker id>.<queue>.
    holders: dict[int, str] = {}
    for queue in {pubs[i].queue for i in fetched}:
        for key in broker.client.scan_iter(match=f"{ns}:__acks__.*.{queue}", count=1000):
            broker_id = key.decode()[len(f"{ns}:__acks__.") : -len(f".{queue}")]
            members = broker.client.smembers(key)
            for i in fetched:
                if pubs[i].queue == queue and pubs[i].message_id.encode() in members:
                    holders[i] = broker_id
    for i in fetched:
        where[i] = holders.get(i, MISSING)
    return where
