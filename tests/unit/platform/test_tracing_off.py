"""Tracing and Sentry cost nothing when they are not asked for: the API and a worker's job code
install no TracerProvider (the API's spans are no-ops), load neither the trace SDK, its exporter and
instrumentation nor sentry_sdk, and a new job carries no trace context.

Two libraries import parts of OpenTelemetry by themselves when it is installed, once at start and
never per request or command: redis-py the SDK's metrics (an observability feature of its own, off)
and Litestar the ASGI instrumentation (its plugin's module, unused). The farm's processes leave both
out (core/platform/lean_imports.py, control_api.app.App; tests/unit/test_lean_imports.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.services import ROOT

PROBE = """
import json, sys
from opentelemetry import trace
from control_api.app import create_app
from core.engine.jobs import NewJob
import workers.execution, workers.middleware

create_app(configure_logs=False)
clients = ("httpx", "psycopg", "redis", "dbapi")
wanted = ("opentelemetry.sdk.trace", "opentelemetry.exporter", "sentry_sdk")
wanted += tuple(f"opentelemetry.instrumentation.{c}" for c in clients)
loaded = [m for m in sys.modules if m.startswith(wanted)]
provider = type(trace.get_tracer_provider()).__name__
print(json.dumps({"loaded": loaded, "provider": provider, "traceparent": NewJob(type="t", payload={}).traceparent}))
"""


def test_without_endpoint_or_dsn_no_sdk_is_loaded_and_jobs_carry_no_trace() -> None:
    env = {"PATH": "/usr/bin:/bin", "JOBYARD_JOB_MODULES": ""}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout.decode().splitlines()[-1]) == {
        "loaded": [],
        "provider": "ProxyTracerProvider",
        "traceparent": None,
    }
