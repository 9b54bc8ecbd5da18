"""Start the peers' workers, fill their queues, and watch them drain, for the scenarios."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from bench.harness import CELERY_DB, DRAMATIQ_DB, WORKER_PROCESSES, WORKER_THREADS, Bench, Proc, with_db

PEERS = ("dramatiq", "celery")


@dataclass
class Peer:
    name: str
    url: str
    client: redis.Redis

    @property
    def queue_key(self) -> str:
        return "peer:noop" if self.name == "dramatiq" else "noop"

    def pending(self) -> int:
        """Messages not yet acknowledged: waiting in the queue or held by a worker."""
        waiting = int(self.client.llen(self.queue_key))
        if self.name == "dramatiq":
            held = sum(int(self.client.scard(k)) for k in self.client.scan_iter(match="peer:__acks__.*"))
        else:
            held = int(self.client.hlen("unacked"))
        return waiting + held

    def waiting(self) -> int:
        return int(self.client.llen(self.queue_key))


def peer(bench: Bench, name: str) -> Peer:
    url = with_db(bench.settings.redis_url or "", DRAMATIQ_DB if name == "dramatiq" else CELERY_DB)
    return Peer(name, url, redis.Redis.from_url(url, socket_timeout=30))


def start_worker(bench: Bench, p: Peer) -> Proc:
    env = bench.env(BENCH_PEER_REDIS_URL=p.url)
    if p.name == "dramatiq":
        argv = [sys.executable, "-m", "dramatiq", "bench.peers.dramatiq_noop"]
        argv += ["--processes", str(WORKER_PROCESSES), "--threads", str(WORKER_THREADS)]
    else:
        argv = [sys.executable, "-m", "celery", "-A", "bench.peers.celery_noop", "worker"]
        argv += ["-P", "prefork", "-c", str(WORKER_PROCESSES), "-Q", "noop", "-l", "WARNING"]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    proc = bench.spawn(f"peer-{p.name}", argv, env)
    return proc


def wait_ready(bench: Bench, p: Peer, proc: Proc, send: Callable[[], None]) -> None:
    """Send one message and wait until it is acknowledged: the worker is up and consuming."""
    send()
    deadline = time.monotonic() + 90
    while p.pending():
        if not proc.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"peer {p.name} did not start:\n{proc.log()}")
        time.sleep(0.05)


def sender(bench: Bench, p: Peer) -> Callable[..., None]:
    """A function that sends one no-op message (optionally carrying its send time), from this process."""
    import os

    os.environ["BENCH_PEER_REDIS_URL"] = p.url
    if p.name == "dramatiq":
        import dramatiq

        from bench.peers import dramatiq_noop

        dramatiq.set_broker(dramatiq_noop.broker)
        return lambda sent=None: dramatiq_noop.noop.send(sent)
    from bench.peers import celery_noop

    return lambda sent=None: celery_noop.noop.delay(sent)
