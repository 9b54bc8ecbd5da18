"""Chaos: Postgres restarted twice while clients enqueue over HTTP and a worker and a scheduler run.

A Postgres of this test's own (so the session's shared server is never restarted), a real API
process, worker and scheduler, clients posting one job each with a marker of their own. Afterwards:
every accepted job (201) ran exactly once (its effect row, written in the job's transaction, exists
once), no job ran twice (also those whose request was refused after their commit), every refused
request was a 503 with Retry-After, and every farm process is alive under the pid it started with.

The closing figures are printed in pytest's terminal summary.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import sqlalchemy as sa

from core.launch.embedded import EmbeddedPostgres
from core.platform.crypto import use_data_key
from core.platform.db import dispose_engines, transaction
from core.platform.migrate import upgrade
from core.platform.settings import Settings
from tests.e2e.conftest import FIGURES
from tests.integration.conftest import Farm, make_key
from tests.jobtypes import EFFECTS_TABLE
from tests.services import TEST_DATA_KEY, TestServices, wait_for

CLIENTS = 6
#: How long clients enqueue, and when Postgres is stopped (for RESTART_PAUSE_S, then started).
FEED_S = 30.0
RESTARTS_AT_S = (7.0, 18.0)
RESTART_PAUSE_S = 1.5


@dataclass(frozen=True)
class Answer:
    marker: str
    status: int | None  # None: no HTTP answer at all
    retry_after: str | None
    code: str | None
    job_id: str | None
    error: str | None = None


@pytest.fixture
def chaos_pg(tmp_path: Path, services: TestServices) -> Iterator[tuple[EmbeddedPostgres, Settings]]:
    """A Postgres of this test's own, migrated, and the farm's settings pointing at it."""
    pg = EmbeddedPostgres(tmp_path / "chaos-pg")
    settings = Settings(
        database_url=pg.start(),
        redis_url=services.redis_url,
        redis_namespace=f"jyc{uuid.uuid4().hex[:8]}",
        job_modules=("tests.jobtypes",),
        data_key=TEST_DATA_KEY,
        worker_queues=("test_effect",),
        republish_after_s=1.0,
        scheduler_interval_s=0.05,
        worker_heartbeat_s=1.0,
        worker_shutdown_timeout_s=10.0,
        # A run whose outcome could not be recorded while Postgres was down is recovered soon after.
        stuck_grace_s=2.0,
    )
    try:
        upgrade(settings)
        with transaction(settings) as conn:
            conn.execute(sa.text(EFFECTS_TABLE))
        use_data_key(settings)
        yield pg, settings
    finally:
        dispose_engines()
        pg.stop()


def _descendants(pid: int) -> set[int]:
    return {p.pid for p in psutil.Process(pid).children(recursive=True)}


def _post_jobs(base: str, key: str, client_no: int, until: float, answers: list[Answer]) -> None:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        n = 0
        while time.monotonic() < until:
            marker = f"c{client_no}-{n}"
            n += 1
            try:
                r = client.post("/v1/jobs", json={"type": "test_effect", "payload": {"marker": marker}})
            except httpx.HTTPError as exc:
                answers.append(Answer(marker, None, None, None, None, repr(exc)))
                continue
            body = r.json()
            answers.append(
                Answer(
                    marker,
                    r.status_code,
                    r.headers.get("Retry-After"),
                    body.get("error", {}).get("code") if r.status_code >= 400 else None,
                    body.get("id") if r.status_code == 201 else None,
                )
            )
            time.sleep(0.05)  # a steady trickle (~20 jobs/s per client), not a flood


def _count(settings: Settings, sql: str) -> Counter[str]:
    with transaction(settings) as conn:
        return Counter({marker: n for marker, n in conn.execute(sa.text(sql))})


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_postgres_restarted_while_clients_enqueue_and_jobs_run(
    chaos_pg: tuple[EmbeddedPostgres, Settings], tmp_path: Path
) -> None:
    pg, settings = chaos_pg
    farm = Farm(settings, tmp_path)
    try:
        key = make_key(settings)
        worker = farm.worker(processes=1, threads=8)
        scheduler = farm.scheduler()
        api, base = farm.api()
        pids = {p.proc.pid: _descendants(p.proc.pid) for p in (worker, scheduler, api)}

        answers: list[Answer] = []
        started = time.monotonic()
        clients = [
            threading.Thread(target=_post_jobs, args=(base, key, n, started + FEED_S, answers))
            for n in range(CLIENTS)
        ]
        for c in clients:
            c.start()
        for at in RESTARTS_AT_S:
            time.sleep(max(0.0, started + at - time.monotonic()))  # the chaos cadence, not a wait
            pg.stop()
            time.sleep(RESTART_PAUSE_S)  # Postgres stays down this long
            pg.start()
        for c in clients:
            c.join()
        dispose_engines()  # the test's own pooled connections died with the restarts

        accepted = {a.marker for a in answers if a.status == 201}
        refused = [a for a in answers if a.status != 201]

        def all_ran() -> bool:
            ran = _count(settings, "SELECT marker, count(*) FROM test_effects GROUP BY marker")
            return accepted <= set(ran)

        wait_for(all_ran, timeout=180, interval=0.5, what="every accepted job to run")
        # Jobs whose request was refused after their commit run too (the sweeper publishes them).
        wait_for(
            lambda: (
                not _count(
                    settings,
                    "SELECT status, count(*) FROM jobs WHERE status NOT IN ('succeeded') GROUP BY status",
                )
            ),
            timeout=120,
            interval=0.5,
            what="every job to finish",
        )
        ran = _count(settings, "SELECT marker, count(*) FROM test_effects GROUP BY marker")
        stored = _count(settings, "SELECT payload->>'marker', count(*) FROM jobs GROUP BY 1")
        attempts = _count(settings, "SELECT attempts::text, count(*) FROM jobs GROUP BY 1")

        FIGURES.append(
            (
                "chaos: Postgres restarted twice",
                {
                    "requests": len(answers),
                    "accepted_201": len(accepted),
                    "refused": dict(Counter(str(a.status) for a in refused)),
                    "refused_but_committed": sum(1 for a in refused if stored[a.marker]),
                    "jobs_by_attempts": dict(attempts),
                    "effects": sum(ran.values()),
                },
            )
        )
        assert [a for a in refused if a.status is None] == [], "the API dropped connections"
        assert {(a.status, a.code) for a in refused} <= {(503, "dependency_down")}, refused[:5]
        assert all(a.retry_after and a.retry_after.isdigit() for a in refused), refused[:5]
        assert [m for m, n in stored.items() if n > 1] == [], "a job was stored twice"
        assert [m for m, n in ran.items() if n > 1] == [], "a job ran twice"
        assert all(ran[m] == 1 for m in accepted)
        assert set(ran) <= set(stored)
        # No farm process exited or was replaced: the same pids, all alive.
        for proc in (worker, scheduler, api):
            assert proc.alive(), proc.log()[-3000:]
            assert _descendants(proc.proc.pid) == pids[proc.proc.pid], proc.log()[-3000:]
    finally:
        farm.discard()
