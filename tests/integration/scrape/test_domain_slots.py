"""The per-host limit on pages loading at once, shared through Redis by every worker."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from core.errors import RateLimitedError
from core.platform.settings import Settings
from core.scrape.domain_slots import DomainSlots
from tests.services import wait_for


def test_a_host_gets_at_most_its_limit_and_a_dead_holders_slot_expires(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    slots = DomainSlots(redis_conn, settings.redis_namespace, limit=2, max_wait_s=0.3)
    other_worker = DomainSlots(redis_conn, settings.redis_namespace, limit=2, max_wait_s=0.3)
    with (
        slots.hold("shop.example.com", "job-1", lease_s=60),
        other_worker.hold("shop.example.com", "job-2", 60),
    ):
        # Full for this host, whoever asks; another host is not affected.
        with pytest.raises(RateLimitedError) as caught, slots.hold("shop.example.com", "job-3", 60):
            pass
        assert caught.value.code == "domain_busy" and caught.value.retry_after > 0
        with slots.hold("other.example.com", "job-4", 60):
            pass

    # A slot is given back at the end of the block, and a waiter takes it within its wait.
    taken = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with slots.hold("shop.example.com", "job-5", 60), slots.hold("shop.example.com", "job-6", 60):
            taken.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    taken.wait(5)
    patient = DomainSlots(redis_conn, settings.redis_namespace, limit=2, max_wait_s=5)
    threading.Timer(0.2, release.set).start()
    started = time.monotonic()
    with patient.hold("shop.example.com", "job-7", 60):
        assert 0.1 < time.monotonic() - started < 4
    thread.join()

    # A worker that died holding slots (no release) loses them when the lease runs out.
    dead = DomainSlots(redis_conn, settings.redis_namespace, limit=1, max_wait_s=0.1)
    dead._acquire(dead.prefix + "gone.example.com", "killed-job", 200)
    with pytest.raises(RateLimitedError), dead.hold("gone.example.com", "job-8", 60):
        pass

    def free() -> bool:
        try:
            with dead.hold("gone.example.com", "job-8", 60):
                return True
        except RateLimitedError:
            return False

    wait_for(free, timeout=5, what="the dead holder's lease to run out")


def test_no_limit_when_set_to_zero(redis_conn: redis.Redis, settings: Settings) -> None:
    slots = DomainSlots(redis_conn, settings.redis_namespace, limit=0)
    with slots.hold("a.example", "1", 60), slots.hold("a.example", "2", 60), slots.hold("a.example", "3", 60):
        assert redis_conn.keys(f"{settings.redis_namespace}:scrape:*") == []
