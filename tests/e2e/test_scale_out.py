"""Scaled out the way a deployment scales: two API processes, three worker processes in two groups and
two schedulers on one Postgres and one Redis, fed 10,000 mixed jobs while a worker of each group and
a scheduler are SIGKILLed and restarted. Every job ends final, no effect happens twice, none is lost.

The closing figures (jobs, kills, duplicates, lost) are printed in pytest's terminal summary and
written to ``scale_out_figures.json`` in the test's tmp dir.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from core.engine.job_types import open_payload
from core.messaging.send import WHATSAPP_MESSAGE
from core.platform.crypto import use_data_key
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import chat_messages, jobs, unread_counters
from tests.e2e.conftest import FIGURES
from tests.fakes.openai import FakeOpenAI
from tests.fakes.whatsapp import PHONE_NUMBER_ID, TOKEN, FakeWhatsApp, Stall
from tests.integration.conftest import Farm, make_key
from tests.services import TEST_DATA_KEY, Process, TestServices, wait_for

#: The mix: mostly unread increments (cheap, contended counters), a few hundred scheduled WhatsApp
#: sends due within seconds, a few hundred AI replies; 10,000 jobs in all.
UNREAD_JOBS = 9_400
WHATSAPP_JOBS = 300
AI_JOBS = 300
#: Scheduled jobs come due over this many seconds, so the kills land while they flow.
DUE_WITHIN_S = 30
BATCH = 500
TYPES = ("unread_count", "whatsapp_message", "ai_reply")

#: The two worker groups, as a deployment runs them (deploy/): counters alone, and the rest.
COUNTERS = ("--queues", "unread_count")
MESSAGING = (
    "--exclude-queues",
    "unread_count",
    "--exclude-queues",
    "embeddings",
    "--exclude-queues",
    "scrape",
)


@dataclass
class Mix:
    bodies: list[dict[str, Any]] = field(default_factory=list)
    expected_unread: Counter[tuple[str, str]] = field(default_factory=Counter)


def build_mix(rng: random.Random) -> Mix:
    mix = Mix()
    for _ in range(UNREAD_JOBS):
        chat, user, by = f"c{rng.randrange(200)}", f"u{rng.randrange(20)}", rng.randint(1, 3)
        mix.bodies.append({"type": "unread_count", "payload": {"chat_id": chat, "user_id": user, "by": by}})
        mix.expected_unread[(chat, user)] += by
    for i in range(WHATSAPP_JOBS):
        payload = {"to": f"+1555{i:07d}", "text": f"Order {i} has shipped"}
        delay = rng.randint(1, DUE_WITHIN_S)
        mix.bodies.append({"type": "whatsapp_message", "payload": payload, "delay_seconds": delay})
    for i in range(AI_JOBS):
        chat, user = f"ai{i % 50}", f"owner{i % 50}"
        payload = {"chat_id": chat, "user_id": user, "message": f"question {i}", "history_limit": 4}
        mix.bodies.append(
            {"type": "ai_reply", "payload": payload, "delay_seconds": rng.randint(0, DUE_WITHIN_S)}
        )
        mix.expected_unread[(chat, user)] += 1  # a reply bumps its user's unread count
    rng.shuffle(mix.bodies)
    return mix


@pytest.fixture
def fakes() -> Iterator[tuple[FakeWhatsApp, FakeOpenAI]]:
    whatsapp, llm = FakeWhatsApp(), FakeOpenAI("fake-llm")
    yield whatsapp, llm
    whatsapp.close()
    llm.close()


@pytest.fixture
def farm(services: TestServices, fakes: tuple[FakeWhatsApp, FakeOpenAI], tmp_path: Path) -> Iterator[Farm]:
    whatsapp, llm = fakes
    with services.database() as url:
        settings = Settings(
            database_url=url,
            redis_url=services.redis_url,
            redis_namespace=f"jyscale{random.randrange(1 << 30):x}",
            data_key=TEST_DATA_KEY,
            # A killed worker is presumed dead after 3 s (default 30 s), so its jobs come back quickly.
            worker_heartbeat_s=0.5,
            worker_dead_after_s=3.0,
            republish_after_s=3.0,
            worker_shutdown_timeout_s=5.0,
            whatsapp_api_base_url=whatsapp.url,
            whatsapp_token=TOKEN,
            whatsapp_phone_number_id=PHONE_NUMBER_ID,
            quiet_hours="off",
            openai_api_key="test-key",
            openai_base_url=llm.base_url,
        )
        use_data_key(settings)  # this process reads the sealed recipients back
        f = Farm(settings, tmp_path)
        yield f
        f.discard()


def _counts(settings: Settings) -> Counter[tuple[str, str]]:
    """Jobs by (type, status)."""
    with transaction(settings) as conn:
        rows = conn.execute(
            sa.select(jobs.c.type, jobs.c.status, sa.func.count()).group_by(jobs.c.type, jobs.c.status)
        ).all()
    return Counter({(t, status): n for t, status, n in rows})


def _finished(counts: Counter[tuple[str, str]], *types: str) -> int:
    return sum(n for (t, status), n in counts.items() if status in ("succeeded", "dead") and t in types)


def _enqueue(bases: list[str], key: str, bodies: list[dict[str, Any]]) -> list[str]:
    """Post the jobs in batches, spread over the API processes, from a few clients at once."""
    batches = [bodies[i : i + BATCH] for i in range(0, len(bodies), BATCH)]

    def post(numbered: tuple[int, list[dict[str, Any]]]) -> list[str]:
        n, batch = numbered
        with httpx.Client(base_url=bases[n % len(bases)], timeout=60) as client:
            r = client.post(
                "/v1/jobs/batch", json={"jobs": batch}, headers={"Authorization": f"Bearer {key}"}
            )
        assert r.status_code == 201, r.text
        return [job["id"] for job in r.json()["items"]]

    with ThreadPoolExecutor(4) as pool:
        return [job_id for ids in pool.map(post, enumerate(batches)) for job_id in ids]


@dataclass
class Role:
    """Running processes of one kind, and how the process manager starts another."""

    name: str
    start: Callable[[], Process]
    running: list[Process] = field(default_factory=list)

    def scale(self, n: int) -> Role:
        self.running = [self.start() for _ in range(n)]
        return self

    def kill_one_and_restart(self) -> None:
        self.running[0].kill()  # SIGKILL to its whole process group (a Dramatiq master and its workers)
        self.running[0] = self.start()


@dataclass
class Chaos:
    """Kills, each followed by a restart, once a share of the jobs of some types has finished: at
    points where the killed process is busy with them."""

    steps: list[tuple[Role, float, tuple[str, ...], int]]
    kills: list[dict[str, Any]] = field(default_factory=list)

    def tick(self, counts: Counter[tuple[str, str]], started: float) -> None:
        while self.steps and _finished(counts, *self.steps[0][2]) >= self.steps[0][1] * self.steps[0][3]:
            role = self.steps.pop(0)[0]
            self.kills.append({"process": role.name, "at_s": round(time.monotonic() - started, 1)})
            role.kill_one_and_restart()


def test_a_scaled_out_farm_loses_nothing_and_repeats_nothing_through_kills(
    farm: Farm, fakes: tuple[FakeWhatsApp, FakeOpenAI], tmp_path: Path
) -> None:
    whatsapp, llm = fakes
    settings = farm.settings
    apis = [farm.api()[1] for _ in range(2)]
    schedulers = Role("scheduler", farm.scheduler).scale(2)
    counters = Role("counters worker", lambda: farm.worker(threads=8, cli=COUNTERS)).scale(2)
    messaging = Role("messaging worker", lambda: farm.worker(threads=8, cli=MESSAGING)).scale(1)
    key = make_key(settings)
    mix = build_mix(random.Random(9))
    total = len(mix.bodies)

    # Outside calls take the time real ones do, so a kill finds some of them in flight.
    llm.latency_s = 0.3
    for body in mix.bodies:
        if body["type"] == "whatsapp_message":
            whatsapp.script(body["payload"]["to"], Stall(0.2))

    started = time.monotonic()
    pool = ThreadPoolExecutor(1)
    enqueued = pool.submit(_enqueue, apis, key, mix.bodies)  # the farm works (and is killed) meanwhile
    enqueue_s: list[float] = []
    enqueued.add_done_callback(lambda _: enqueue_s.append(time.monotonic() - started))

    messages = ("whatsapp_message", "ai_reply")
    chaos = Chaos(
        [
            (counters, 0.25, ("unread_count",), UNREAD_JOBS),
            (schedulers, 0.25, messages, WHATSAPP_JOBS + AI_JOBS),  # while it publishes due jobs
            (messaging, 0.5, messages, WHATSAPP_JOBS + AI_JOBS),
        ]
    )

    def settled() -> Counter[tuple[str, str]] | None:
        if enqueued.done():
            enqueued.result()  # an enqueue that failed fails the test now
        counts = _counts(settings)
        chaos.tick(counts, started)
        return counts if _finished(counts, *TYPES) == total and not chaos.steps else None

    by_type = wait_for(settled, timeout=300, interval=0.25, what="every job to end")
    elapsed = time.monotonic() - started
    ids = enqueued.result()
    pool.shutdown()
    assert len(set(ids)) == total == 10_000
    counts = Counter[str]()
    for (_, status), n in by_type.items():
        counts[status] += n

    figures = _check_effects(settings, mix, whatsapp, llm, counts)
    figures.update(
        jobs=total,
        kills=len(chaos.kills),
        enqueue_s=round(enqueue_s[0], 1),
        killed=chaos.kills,
        seconds=round(elapsed, 1),
        jobs_per_s=round(total / elapsed),
        processes={
            "api": len(apis),
            "workers": len(counters.running) + len(messaging.running),
            "schedulers": len(schedulers.running),
        },
    )
    (tmp_path / "scale_out_figures.json").write_text(json.dumps(figures, indent=2))
    FIGURES.append(("scale-out", figures))
    print(json.dumps(figures))
    assert figures["kills"] == 3
    assert figures["duplicates"] == 0, figures
    assert figures["lost"] == 0, figures


def _check_effects(
    settings: Settings, mix: Mix, whatsapp: FakeWhatsApp, llm: FakeOpenAI, counts: Counter[str]
) -> dict[str, Any]:
    """Count duplicated and lost effects; a job dead by design (an unknown WhatsApp outcome) is
    accounted for, not lost."""
    duplicates = lost = 0
    with transaction(settings) as conn:
        rows = conn.execute(
            sa.select(jobs.c.id, jobs.c.type, jobs.c.status, jobs.c.payload, jobs.c.error)
        ).all()
        unread = {
            (r.chat_id, r.user_id): r.unread
            for r in conn.execute(
                sa.select(unread_counters.c.chat_id, unread_counters.c.user_id, unread_counters.c.unread)
            )
        }
        replies = Counter(
            conn.execute(
                sa.select(chat_messages.c.job_id).where(chat_messages.c.role == "assistant")
            ).scalars()
        )

    # Counters: each equals the sum of its increments (and AI replies), no more, no less.
    for chat_user in mix.expected_unread.keys() | unread.keys():
        diff = unread.get(chat_user, 0) - mix.expected_unread[chat_user]
        duplicates += max(diff, 0)
        lost += max(-diff, 0)

    sent = Counter((r.body["to"], r.body["text"]["body"]) for r in whatsapp.requests() if r.message_id)
    duplicates += sum(n - 1 for n in sent.values() if n > 1)
    accounted_dead = 0
    for row in rows:
        if row.status not in ("succeeded", "dead"):
            lost += 1
        elif row.type == "whatsapp_message":
            payload = open_payload(WHATSAPP_MESSAGE, row.payload)  # the recipient is sealed at rest
            times = sent[(payload["to"], payload["text"])]
            if row.status == "succeeded":
                lost += times == 0
            elif row.error["code"] == "unknown_outcome" and times <= 1:
                accounted_dead += 1  # a send cut off by the kill: left to a human, never resent
            else:
                lost += 1
        elif row.type == "ai_reply":
            duplicates += max(replies[row.id] - 1, 0)
            lost += row.status != "succeeded" or replies[row.id] == 0
        elif row.status != "succeeded":
            lost += 1
    return {
        "statuses": dict(counts),
        "duplicates": duplicates,
        "lost": lost,
        "dead_unknown_outcome": accounted_dead,
        "whatsapp_sent": sum(sent.values()),
        "llm_calls": llm.calls(),
    }
