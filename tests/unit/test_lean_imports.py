"""A farm process loads only what it uses (docs/performance.md#memory).

Every process imports every job type's module (core/catalog.py), so a library imported at the top of
one of them lands in all: the openai SDK alone is some 35 MiB of resident memory. The heavy client
libraries are imported where they are used, and loaded at boot (``Preload``) only by the worker
processes that consume the queues of the types that call them. structlog and redis-py are imported
without the optional packages they would load for features the farm does not use, and the modules
redis-py and SQLAlchemy import for clients and drivers the workers do not use are deferred to their
first use (core/platform/lean_imports.py); the worker's supervising process leaves out Dramatiq's
file watcher (workers/master.py); the API is built without Litestar's pydantic and attrs plugins.

Each probe runs in a fresh interpreter, as the entry point it stands for imports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.services import ROOT

#: What a worker process imports at boot: its supervising process's imports (workers/master.py),
#: then workers/entrypoint.py's, less the broker it connects.
WORKER = """
import workers.master
import core.platform.lean_imports
from core.catalog import load_job_types
from core.engine.job_types import job_types
from core.platform.crypto import generate_data_key, use_data_key
from core.platform.settings import Settings
import core.engine.broker, workers.actors, workers.cancellation, workers.execution, workers.middleware
import workers.resources

settings = Settings(data_key=generate_data_key())
use_data_key(settings)
load_job_types(settings)
heavy = sys.argv[1:]
at_boot = sorted({m.split(".")[0] for m in sys.modules if m.startswith(tuple(heavy))})
from core.platform.lean_imports import DEFERRED
from core.platform.modules import is_deferred
ran = sorted(name for name in DEFERRED if not is_deferred(name))
unused = sorted(m for m in sys.modules if m.startswith(tuple(UNUSED_MODULES)))
import dramatiq, redis, sqlalchemy, uuid
from core.errors import RedisNotConfigured
from workers.execution import __doc__ as module_doc
docstrings = {
    "functions": [f.__doc__ for f in (sqlalchemy.select, redis.Redis.get, dramatiq.actor, uuid.uuid4)],
    "error_message": RedisNotConfigured().message,
    "module": bool(module_doc),
}
for name in ("ai_reply", "whatsapp_message"):
    for resource in job_types()[name].resources:
        resource.start(settings)
preloaded = sorted({m.split(".")[0] for m in sys.modules if m.startswith(tuple(heavy))})
print(json.dumps({"at_boot": at_boot, "preloaded": preloaded, "ran": ran, "unused": unused, "docstrings": docstrings}))
"""

#: What an API process imports (control_api/__main__.py, then uvicorn's import of the app).
API = """
import core.platform.lean_imports
from control_api.app import create_app

app = create_app(configure_logs=False)
heavy = sys.argv[1:]
loaded = sorted({m.split(".")[0] for m in sys.modules if m.startswith(tuple(heavy))})
print(json.dumps({"loaded": loaded, "plugins": sorted(type(p).__name__ for p in app.plugins)}))
"""

#: Libraries no light worker uses, each of several MiB.
CLIENTS = [
    "openai",
    "httpx",
    "httpx2",
    "httpcore",
    "tenacity",
    "pydantic",
    "litestar",
    "jinja2",
    "prometheus_client",
    "playwright",
    "torch",
    "sentence_transformers",
    "huggingface_hub",
    "numpy",
    "cryptography.hazmat",
]
#: What structlog and redis-py would load for features the farm does not use.
OPTIONAL = [
    "rich",
    "pygments",
    "colorama",
    "greenlet",
    "opentelemetry.metrics",
    "opentelemetry.sdk",
    "psutil",
]


#: Modules a light worker would import only for what it does not use: redis-py's asyncio, cluster
#: and sentinel clients for asyncio, SQLAlchemy's dialects of other drivers than psycopg (imported
#: by their package, deferred: core/platform/lean_imports.py), and Dramatiq's file watcher
#: (workers/master.py).
UNUSED_MODULES = [
    "redis.asyncio.client",
    "redis.asyncio.cluster",
    "redis.asyncio.connection",
    "redis.asyncio.sentinel",
    "watchdog",
    "dramatiq.watcher",
]


def probe(code: str, names: list[str]) -> Any:
    env = {"PATH": "/usr/bin:/bin", "JOBYARD_JOB_MODULES": ""}
    done = subprocess.run(
        [sys.executable, "-c", f"import json, sys\nUNUSED_MODULES = {UNUSED_MODULES!r}\n" + code, *names],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout.decode().splitlines()[-1])


def test_a_light_worker_loads_no_client_library_until_a_type_that_calls_one_preloads_it() -> None:
    found = probe(WORKER, CLIENTS + OPTIONAL)
    assert found["at_boot"] == []
    assert found["ran"] == []  # every deferred module is still waiting for a first use
    assert found["unused"] == []
    # Functions without their docstrings (workers/master.py); a class's and a module's are kept.
    assert found["docstrings"] == {
        "functions": [None, None, None, None],
        "error_message": "REDIS_URL is not set and no embedded Redis was started.",
        "module": True,
    }
    # The LLM and WhatsApp job types' workers load their clients at boot, not on their first job.
    assert {"openai", "httpx", "httpx2", "tenacity"} <= set(found["preloaded"])


def test_the_api_loads_no_pydantic_attrs_or_optional_extras_of_structlog_and_redis() -> None:
    found = probe(API, ["openai", "pydantic", "attr", "opentelemetry.instrumentation", *OPTIONAL])
    assert found["loaded"] == []
    assert not [p for p in found["plugins"] if p.startswith(("Pydantic", "Attrs"))]


def test_hidden_packages_import_again_after_the_lean_imports() -> None:
    code = "import core.platform.lean_imports, rich.console, opentelemetry.sdk.metrics\nprint('[]')"
    assert probe(code, []) == []


def test_deferred_modules_run_at_their_first_use_and_work_as_imported_ones() -> None:
    code = """
import core.platform.lean_imports
from core.platform.modules import is_deferred
import redis.asyncio
import sqlalchemy.dialects.postgresql as pg
from sqlalchemy.dialects import registry
before = is_deferred("redis.asyncio") and is_deferred("sqlalchemy.dialects.postgresql.asyncpg")
client = redis.asyncio.Redis.from_url("redis://localhost:1")  # a client object; nothing connects
asyncpg = registry.load("postgresql.asyncpg")
from sqlalchemy.dialects.postgresql import pg8000
print(json.dumps({
    "before": before,
    "after": [is_deferred(n) for n in ("redis.asyncio", "sqlalchemy.dialects.postgresql.asyncpg")],
    "client": type(client).__module__,
    "asyncpg": asyncpg.__module__,
    "pg8000": pg8000.dialect.__name__,
    "same": sys.modules["redis.asyncio"] is redis.asyncio and redis.asyncio.Redis is redis.asyncio.client.Redis,
}))
"""
    assert probe(code, []) == {
        "before": True,
        "after": [False, False],
        "client": "redis.asyncio.client",
        "asyncpg": "sqlalchemy.dialects.postgresql.asyncpg",
        "pg8000": "PGDialect_pg8000",
        "same": True,
    }


def test_a_deferred_module_runs_once_across_threads_and_fails_as_an_import_does(tmp_path: Path) -> None:
    package = tmp_path / "deferral_probe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "counted.py").write_text("import time\nRUNS.append(1)\ntime.sleep(0.2)\nVALUE = 42\n")
    (package / "broken.py").write_text("raise RuntimeError('broken at import')\n")
    code = f"""
import builtins, threading
sys.path.insert(0, {str(tmp_path)!r})
builtins.RUNS = []
from core.platform.modules import deferred, is_deferred
deferred("deferral_probe.counted", "deferral_probe.broken", "no_such_package.module")
import deferral_probe.counted as counted
values = []
threads = [threading.Thread(target=lambda: values.append(counted.VALUE)) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
import deferral_probe.broken as broken
try:
    broken.anything
    failed = None
except RuntimeError as error:
    failed = str(error)
print(json.dumps({{
    "values": values,
    "runs": len(RUNS),
    "failed": failed,
    "broken_gone": "deferral_probe.broken" not in sys.modules,
    "missing_skipped": "no_such_package.module" not in sys.modules,
    "counted_ran": not is_deferred("deferral_probe.counted"),
}}))
"""
    assert probe(code, []) == {
        "values": [42, 42, 42, 42],
        "runs": 1,
        "failed": "broken at import",
        "broken_gone": True,
        "missing_skipped": True,
        "counted_ran": True,
    }


def test_functions_load_without_docstrings_and_run_as_they_did(tmp_path: Path) -> None:
    (tmp_path / "docless_probe.py").write_text(
        '''"""The module's docstring."""


def documented(x):
    """A docstring."""
    assert x > 0, "x must be positive"
    return [f"{n}" for n in range(x)]


def first_constant_is_used():
    return "used"


class Documented:
    """The class's docstring."""

    def method(self):
        """The method's docstring."""
        return "method"
'''
    )
    code = f"""
sys.path.insert(0, {str(tmp_path)!r})
from core.platform.modules import without_docstrings
without_docstrings("docless_probe", stdlib=False)
import docless_probe as m
try:
    m.documented(0)
    asserted = None
except AssertionError as error:
    asserted = str(error)
print(json.dumps({{
    "docs": [m.documented.__doc__, m.Documented.method.__doc__, m.Documented.__doc__, m.__doc__],
    "results": [m.documented(2), m.first_constant_is_used(), m.Documented().method()],
    "asserted": asserted,
}}))
"""
    assert probe(code, []) == {
        "docs": [None, None, "The class's docstring.", "The module's docstring."],
        "results": [["0", "1"], "used", "method"],
        "asserted": "x must be positive",
    }
