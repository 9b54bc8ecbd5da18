"""The schedulers' heartbeats: how /metrics tells that no scheduler runs (the JobyardSchedulerDown
alert, docs/operations/alerts.md).

Without a scheduler nothing fails loudly: jobs enqueued to run now still run, but scheduled and
retrying jobs never come due, recurring schedules stop firing, lost messages are not re-published,
jobs of dead workers are not recovered and history is not pruned. So each scheduler process beats
every ``BEAT_S`` seconds, and /metrics reports how many beat within ``DEAD_AFTER_S`` and how long
ago the last beat was.

The beats live in Redis, in one sorted set per namespace (``ns:schedulers``): member = the process
(host and pid), score = the time of its last beat on Redis's clock, so a scheduler's clock and an
API's never have to agree. A beat is two small commands, no table and no write to Postgres; a Redis
restart that loses the set makes the schedulers look dead for one beat at most. Members silent for
a day are dropped by the next beat.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import cast

import redis

#: How often a scheduler beats.
BEAT_S = 5.0
#: A scheduler silent this long counts as gone (six missed beats: a long GC pause or a slow Redis
#: round trip is not an outage).
DEAD_AFTER_S = 30.0
#: Members silent this long are removed from the set.
FORGET_AFTER_S = 86400.0


def beats_key(namespace: str) -> str:
    return f"{namespace}:schedulers"


def this_process() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return float(seconds) + micros / 1_000_000


def beat(client: redis.Redis, namespace: str, member: str) -> int:
    """Record that ``member`` (a scheduler process) is alive now. Returns 0 (jobs published: none)."""
    now = _redis_now(client)
    pipe = client.pipeline(transaction=False)
    pipe.zadd(beats_key(namespace), {member: now})
    pipe.zremrangebyscore(beats_key(namespace), "-inf", now - FORGET_AFTER_S)
    pipe.execute()
    return 0


@dataclass(frozen=True)
class SchedulerBeats:
    #: Schedulers that beat within DEAD_AFTER_S.
    alive: int
    #: Seconds since the latest beat of any scheduler; None when none beat within FORGET_AFTER_S.
    last_beat_age_s: float | None


def read_beats(client: redis.Redis, namespace: str) -> SchedulerBeats:
    now = _redis_now(client)
    members = cast(list[tuple[bytes, float]], client.zrange(beats_key(namespace), 0, -1, withscores=True))
    scores = [float(score) for _, score in members]
    alive = sum(1 for score in scores if score >= now - DEAD_AFTER_S)
    return SchedulerBeats(alive=alive, last_beat_age_s=max(now - max(scores), 0.0) if scores else None)
