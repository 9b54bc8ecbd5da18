"""A worker process of the light queues loads only what its jobs use (docs/performance.md#memory).

Every process imports every job type's module (core/catalog.py), so a library imported at the top of
one of them lands in all: the openai SDK alone is some 35 MiB of resident memory. The heavy client
libraries are imported where they are used, and loaded at boot (``Preload``) only by the worker
processes that consume the queues of the types that call them.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.services import ROOT

#: What a worker process imports at boot (workers/entrypoint.py, less the broker it connects).
PROBE = """
import json, sys
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

#: Libraries no light worker uses, each of several MiB.
HEAVY = [
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


def test_a_light_worker_loads_no_client_library_until_a_type_that_calls_one_preloads_it() -> None:
    env = {"PATH": "/usr/bin:/bin", "JOBYARD_JOB_MODULES": ""}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *HEAVY], cwd=ROOT, env=env, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()
    found = json.loads(done.stdout.decode().splitlines()[-1])
    assert found["at_boot"] == []
    # The LLM and WhatsApp job types' workers load their clients at boot, not on their first job.
    assert {"openai", "httpx", "httpx2", "tenacity"} <= set(found["preloaded"])
