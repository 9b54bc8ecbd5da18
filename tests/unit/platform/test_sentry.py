"""Sentry reports scrubbed by the logs' redactor: a process that fails with a phone number and a
message body in its error and log line sends an event to a local ingest endpoint without either."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from core.platform.crypto import mask_phone
from tests.fakes.sentry import FakeSentry
from tests.services import ROOT, wait_for

PHONE = "+447700900123"
#: A process as the API and workers start: logging, then Sentry, from the settings in the environment.
FAILING = f"""
import structlog
from core.platform.logs import configure_logging
from core.platform.sentry import configure_sentry
from core.platform.settings import get_settings

settings = get_settings()
configure_logging(settings, process="test")
assert configure_sentry(settings, process="test")
structlog.get_logger("test").error("send_failed", to="{PHONE}", text="meet me at 5, love")
raise RuntimeError("the provider refused {PHONE}")
"""


@pytest.fixture
def sentry() -> Iterator[FakeSentry]:
    fake = FakeSentry()
    yield fake
    fake.close()


def test_an_error_reaches_sentry_with_phone_numbers_and_bodies_scrubbed(sentry: FakeSentry) -> None:
    env = {"SENTRY_DSN": sentry.dsn, "JOBYARD_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", FAILING], cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert done.returncode == 1, done.stderr.decode()
    # The SDK sends from its own thread and flushes at exit: both events are in before it returns.
    wait_for(lambda: len(sentry.events) >= 2, timeout=10, what="the two events")
    everything = "\n".join(sentry.raw)
    assert PHONE not in everything
    assert "meet me at 5" not in everything
    crash = next(e for e in sentry.events if e.get("exception"))
    assert crash["exception"]["values"][-1]["value"] == f"the provider refused {mask_phone(PHONE)}"
    assert crash["tags"]["process"] == "test"
    # The error line: its name as the message, its fields by name (the body dropped, the number masked).
    logged = next(e for e in sentry.events if not e.get("exception"))
    assert logged["logentry"]["message"] == "send_failed"
    assert (logged["extra"]["to"], logged["extra"]["text"]) == (mask_phone(PHONE), "[redacted]")
    # And it is the crash's breadcrumb, scrubbed the same way.
    crumbs = crash["breadcrumbs"]["values"]
    assert any(c["message"] == "send_failed" and c["data"]["text"] == "[redacted]" for c in crumbs)
