"""A real worker process for one queue, started for a benchmark and stopped after it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from core.launch.roles import worker_argv
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import workers


@contextmanager
def worker_process(
    settings: Settings, queue: str, threads: int, home: Path, boot_timeout_s: float = 180, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`jobyard worker --queues QUEUE` on the settings' services, once it registered (booted: its
    model loaded, its browser launched); SIGTERM at the end. ``env`` adds variables. The settings must
    carry a data key (every farm process refuses to start without one)."""
    if not settings.data_key:
        raise ValueError(
            "the benchmark's settings need a data_key (core.platform.crypto.generate_data_key())"
        )
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("JOBYARD_")}
    child_env.update(
        DATABASE_URL=settings.database_url or "",
        REDIS_URL=settings.redis_url or "",
        JOBYARD_DATA_KEY=settings.data_key or "",
        JOBYARD_LOG_LEVEL="WARNING",
        **env,
    )
    log_path = home / f"worker-{queue}.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            worker_argv(1, threads, (queue,), 30.0), env=child_env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + boot_timeout_s
            while True:
                with transaction(settings) as conn:
                    if conn.execute(sa.select(sa.func.count()).select_from(workers)).scalar_one():
                        break
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise SystemExit(f"the {queue} worker did not start; see {log_path}")
                time.sleep(0.1)
            yield worker
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
