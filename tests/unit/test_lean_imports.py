"""A farm process loads only what it uses (docs/performance.md#memory).

Every process imports every job type's module (core/catalog.py), so a library imported at the top of
one of them lands in all: the openai SDK alone is some 35 MiB of resident memory. The heavy client
libraries are imported where they are used, and loaded at boot (``Preload``) only by the worker
processes that consume the queues of the types that call them. structlog and redis-py are imported
without the optional packages they would load for features the farm does not use
(core/platform/lean_imports.py), and the API without Litestar's pydantic and attrs plugins.

Each probe runs in a fresh interpreter, as the entry point it stands for imports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.services import ROOT

#: What a worker process imports at boot (workers/entrypoint.py, less the broker it connects).
WORKER = """
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
for name in ("ai_reply", "whatsapp_message"):
    for resource in job_types()[name].resources:
        resource.start(settings)
preloaded = sorted({m.split(".")[0] for m in sys.modules if m.startswith(tuple(heavy))})
print(json.dumps({"at_boot": at_boot, "preloaded": preloaded}))
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


def probe(code: str, names: list[str]) -> Any:
    env = {"PATH": "/usr/bin:/bin", "JOBYARD_JOB_MODULES": ""}
    done = subprocess.run(
        [sys.executable, "-c", "import json, sys\n" + code, *names],
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
    # The LLM and WhatsApp job types' workers load their clients at boot, not on their first job.
    assert {"openai", "httpx", "httpx2", "tenacity"} <= set(found["preloaded"])


def test_the_api_loads_no_pydantic_attrs_or_optional_extras_of_structlog_and_redis() -> None:
    found = probe(API, ["openai", "pydantic", "attr", "opentelemetry.instrumentation", *OPTIONAL])
    assert found["loaded"] == []
    assert not [p for p in found["plugins"] if p.startswith(("Pydantic", "Attrs"))]


def test_hidden_packages_import_again_after_the_lean_imports() -> None:
    code = "import core.platform.lean_imports, rich.console, opentelemetry.sdk.metrics\nprint('[]')"
    assert probe(code, []) == []
