"""The profile summary of `python -m bench --only profiles`: areas, idle threads, top frames."""

from __future__ import annotations

from bench.scenarios.profiles import summarize

COLLAPSED = "\n".join(
    [
        "run (dramatiq/worker.py:10);_log_job (workers/execution.py:139);emit (logging/__init__.py:1113) 30",
        "run (dramatiq/worker.py:10);claim (core/engine/lifecycle.py:80);wait (psycopg/connection.py:495) 50",
        "run (dramatiq/worker.py:10);fetch (core/engine/lanes.py:5);read (redis/_parsers/hiredis.py:192) 20",
        "_bootstrap (threading.py:1);wait (threading.py:331);Condition.wait (threading.py:331) 100",
        "garbage without a count",
    ]
)


def test_busy_samples_are_shared_by_area_and_waiting_threads_are_left_out() -> None:
    result = summarize(COLLAPSED)
    assert (result["samples"], result["idle_samples"]) == (100, 100)
    areas = result["areas"]
    assert areas["logging (stdlib logging, structlog, our chain)"] == 30.0
    assert areas["Postgres driver (psycopg, SQLAlchemy)"] == 50.0
    assert areas["Redis client (redis-py)"] == 20.0
    assert areas["Dramatiq (worker threads, middleware calls)"] == 100.0
    assert areas["HTTP server (uvicorn, httptools)"] == 0.0
    assert result["top_self"][0] == ("wait (psycopg/connection.py)", 50.0)
