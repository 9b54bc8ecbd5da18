"""The Dramatiq Redis broker, built from settings at process start, and how jobs are published on it."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import dramatiq
import msgspec
import redis
import redis.asyncio
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

from core.engine.consumer import BATCH_SUFFIX, WAKE_TOKENS, JobyardConsumer, wake_key
from core.errors import RedisNotConfigured
from core.platform.settings import Settings, get_settings

#: Longest wait for a Redis reply, for every client but the consumers' (whose reads block on
#: purpose): a Redis that hangs fails the call in seconds instead of holding a thread or a request.
REDIS_SOCKET_TIMEOUT_S = 5.0
#: TCP keepalive on every connection, the consumers' too: a Redis host that vanished without closing
#: its sockets (a dead node, a dropped NAT entry) is noticed in about a minute (30 s + 3 x 10 s).
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_PROBES = 30, 10, 3


def _keepalive(url: str) -> dict[str, Any]:
    if url.startswith("unix://"):
        return {}  # a local socket has no peer to lose (and redis-py takes no keepalive options for it)
    options = {socket.TCP_KEEPIDLE: KEEPALIVE_IDLE_S, socket.TCP_KEEPINTVL: KEEPALIVE_INTERVAL_S}
    options[socket.TCP_KEEPCNT] = KEEPALIVE_PROBES
    return {"socket_keepalive": True, "socket_keepalive_options": options}


def redis_client(
    settings: Settings | None = None, *, socket_timeout: float | None = REDIS_SOCKET_TIMEOUT_S
) -> redis.Redis:
    """A Redis client for the configured URL.

    ``socket_timeout=None`` is for Dramatiq's consumers only, which block on Redis (build_broker);
    a client that blocks for a known time (BLPOP with a timeout) needs one longer than that.
    """
    settings = settings or get_settings()
    if not settings.redis_url:
        raise RedisNotConfigured("REDIS_URL is not set (run `jobyard up` to get embedded services)")
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=5,
        health_check_interval=30,
        **_keepalive(settings.redis_url),
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
        **_keepalive(settings.redis_url),
    )
    return redis.asyncio.Redis(connection_pool=pool)


class JobyardRedisBroker(RedisBroker):
    """RedisBroker whose consumers wake at once when a job is published (see core/engine/consumer.py).

    An idle consumer blocks on its queue's wake list for at most ``idle_poll_ms`` before it looks
    at the queue again, which bounds the wait for a message pushed without a wake token.
    """

    def __init__(self, *, idle_poll_ms: int, batch_max: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.idle_poll_ms = idle_poll_ms
        self.batch_max = batch_max

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        # Only a queue whose actors have batch handlers is batched (never a delay queue, `<q>.DQ`,
        # whose messages wait for their eta one by one).
        batched = any(
            a.queue_name == queue_name and a.actor_name.endswith(BATCH_SUFFIX) for a in self.actors.values()
        )
        if batched:
            # A full batch being worked on and the next one ready.
            prefetch = max(prefetch, self.batch_max * 2)
        batch_max = self.batch_max if batched else 1
        return JobyardConsumer(self, queue_name, prefetch, min(timeout, self.idle_poll_ms), batch_max)


def build_broker(
    settings: Settings | None = None, middleware: Sequence[Middleware] = (), *, consumer: bool = False
) -> RedisBroker:
    """A broker for this process; call once at process start (never at import).

    Only a worker's broker is a ``consumer``: its client blocks on Redis without a socket timeout.
    Anyone else's (the API's, the scheduler's, the CLI's) publishes and reads with one.
    """
    settings = settings or get_settings()
    return JobyardRedisBroker(
        client=redis_client(settings, socket_timeout=None if consumer else REDIS_SOCKET_TIMEOUT_S),
        namespace=settings.redis_namespace,
        middleware=list(middleware),
        idle_poll_ms=settings.worker_idle_poll_ms,
        batch_max=settings.worker_batch_max,
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


class _WireMessage(msgspec.Struct):
    """Dramatiq's message as its JSON encoder writes it (Message.asdict), encoded by msgspec."""

    queue_name: str
    actor_name: str
    args: tuple[str]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    message_id: str
    message_timestamp: int


_encode_message = msgspec.json.Encoder().encode


def _encoded(pub: Publication, timestamp: int) -> bytes:
    options: dict[str, Any] = {"redis_message_id": pub.message_id, "job_id": str(pub.job_id)}
    if pub.request_id:
        options["request_id"] = pub.request_id
    wire = _WireMessage(pub.queue, pub.type, (str(pub.job_id),), {}, options, pub.message_id, timestamp)
    return _encode_message(wire)


def publish_commands(
    namespace: str, pubs: Sequence[Publication], encoded: Sequence[bytes] | None = None
) -> list[tuple[Any, ...]]:
    """The Redis commands that publish ``pubs`` (messages encoded here unless given): per queue one
    HSET of the messages and one RPUSH of their ids, whatever their number (per-command overhead in
    redis-py, not Redis, is what a large publish spends its time on), then the wake tokens."""
    timestamp = int(time.time() * 1000)
    per_queue: dict[str, tuple[list[str | bytes], list[str]]] = {}
    for i, pub in enumerate(pubs):
        data = encoded[i] if encoded is not None else _encoded(pub, timestamp)
        fields, ids = per_queue.setdefault(pub.queue, ([], []))
        fields += (pub.message_id, data)
        ids.append(pub.message_id)
    commands: list[tuple[Any, ...]] = []
    for queue, (fields, ids) in per_queue.items():
        wake = wake_key(namespace, queue)
        commands += [
            ("HSET", f"{namespace}:{queue}.msgs", *fields),
            ("RPUSH", f"{namespace}:{queue}", *ids),
            ("RPUSH", wake, *(b"1" for _ in range(min(len(ids), WAKE_TOKENS)))),
            ("LTRIM", wake, -WAKE_TOKENS, -1),
        ]
    return commands


def publish(broker: RedisBroker, publications: Iterable[Publication]) -> int:
    """Put each job's message on its queue under the Redis id already committed on the job row.

    ``RedisBroker.enqueue`` would pick a fresh Redis id and make one round trip per message; this
    writes Dramatiq's queue layout directly (the message in ``<ns>:<queue>.msgs``, its id pushed on
    ``<ns>:<queue>``, as its dispatch script does) in one pipeline, under ids the sweeper can look up,
    and pushes wake tokens for the queue's idle consumers.
    """
    pubs = list(publications)
    if not pubs:
        return 0
    # Middleware sees each message as a dramatiq.Message; without any, the messages are encoded
    # directly (the stdlib JSON encoder Dramatiq uses is most of a large batch's publish time).
    messages = [message_for(pub) for pub in pubs] if broker.middleware else []
    for message in messages:
        broker.emit_before("enqueue", message, None)
    # One MULTI/EXEC: a message is never in its queue's hash without its id in the list (the sweeper
    # counts on it), even when the connection breaks mid-pipeline.
    pipe = broker.client.pipeline(transaction=True)
    encoded = [m.encode() for m in messages] if messages else None
    for command in publish_commands(broker.namespace, pubs, encoded):
        pipe.execute_command(*command)
    pipe.execute()
    for message in messages:
        broker.emit_after("enqueue", message, None)
    return len(pubs)
