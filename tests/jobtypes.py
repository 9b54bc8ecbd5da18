"""Job types that exist only in the tests, loaded through JOBYARD_JOB_MODULES like a deployment's own
and declared the same way: ``@job_type`` from ``core``."""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from typing import Any, Literal

import httpx
import msgspec
import sqlalchemy as sa
import structlog

from core import BatchContext, JobContext, PermanentError, RetryableError, job_type
from core.providers.http import request


class FlakyPayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: Attempts that fail before one succeeds.
    fail_times: int = 0
    error: Literal["retryable", "permanent", "unexpected"] = "retryable"


@job_type("test_flaky", payload=FlakyPayload, max_retries=2, min_backoff_s=0.1, max_backoff_s=0.3)
def flaky(ctx: JobContext, payload: FlakyPayload) -> dict[str, Any]:
    if ctx.claim.attempt <= payload.fail_times:
        if payload.error == "permanent":
            raise PermanentError("the test asked for a permanent failure", code="test_permanent")
        if payload.error == "unexpected":
            raise ZeroDivisionError("the test asked for an unexpected error")
        raise RetryableError(f"failing attempt {ctx.claim.attempt}", code="test_retryable")
    return {"attempt": ctx.claim.attempt}


class ProviderPayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: str
    key: str
    timeout_s: float = 5.0


@functools.cache
def _client(timeout_s: float) -> httpx.Client:
    # One client per process, as a real provider module keeps: building one costs ~30 ms of CPU.
    return httpx.Client(timeout=timeout_s)


@job_type("test_provider", payload=ProviderPayload, max_retries=2, min_backoff_s=0.2, max_backoff_s=0.5)
def call_provider(ctx: JobContext, payload: ProviderPayload) -> dict[str, Any]:
    response = request(
        _client(payload.timeout_s), "POST", f"{payload.url}/call/{payload.key}", provider="fake provider"
    )
    return {"status": response.status_code, "body": response.json()}


class SleepPayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    seconds: float
    #: One C-level sleep that Dramatiq's TimeLimit cannot interrupt, instead of short Python sleeps.
    blocking: bool = False


def _sleep(ctx: JobContext, payload: SleepPayload) -> dict[str, Any]:
    if payload.blocking:
        time.sleep(payload.seconds)
    else:
        deadline = time.monotonic() + payload.seconds
        while time.monotonic() < deadline:
            time.sleep(0.05)
    return {"slept": payload.seconds, "attempt": ctx.claim.attempt}


job_type("test_sleep", payload=SleepPayload, max_retries=2, timeout_s=60)(_sleep)
#: The same with a one-second time limit.
job_type("test_slow", payload=SleepPayload, max_retries=1, timeout_s=1, min_backoff_s=0.1)(_sleep)


class CrashPayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: Attempts that kill their worker process before one survives.
    times: int = 1_000_000


@job_type("test_crash", payload=CrashPayload, max_retries=2)
def crash(ctx: JobContext, payload: CrashPayload) -> dict[str, Any]:
    if ctx.claim.attempt <= payload.times:
        os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would
    return {"attempt": ctx.claim.attempt}


class ModulesPayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    modules: list[str]


def _imported(ctx: JobContext, payload: ModulesPayload) -> dict[str, bool]:
    return {name: name in sys.modules for name in payload.modules}


#: Which modules the worker process that runs it has imported (`"torch" in sys.modules`): one type on
#: a queue of its own, as any light job, and one on the embeddings queue, as the control.
job_type("test_modules", payload=ModulesPayload, max_retries=0)(_imported)
job_type("test_modules_embeddings", payload=ModulesPayload, queue="embeddings", max_retries=0)(_imported)


class ScrapeQueuePayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


# The Procfile's worker_scrape line consumes the `scrape` queue; a type of the tests' own on it lets
# them run that line and see it take a job, whatever other type shares the queue.
@job_type("test_scrape_queue", payload=ScrapeQueuePayload, queue="scrape")
def on_scrape_queue(ctx: JobContext, payload: ScrapeQueuePayload) -> dict[str, Any]:
    return {"pid": os.getpid()}


class LeakyPayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    to: str
    text: str
    api_key: str


# Its recipient is sealed at rest like a whatsapp_message's: a deployment's own types can do the same.
@job_type("test_leaky", payload=LeakyPayload, max_retries=0, sealed_fields=("to",))
def leaky(ctx: JobContext, payload: LeakyPayload) -> dict[str, Any]:
    """A careless handler: logs its payload, the provider token and a bearer header, then fails with
    all of them in the exception. The log redaction must catch every one (tests/integration/
    datakeys/test_personal_data.py)."""
    log = structlog.get_logger("tests.leaky")
    token = ctx.settings.whatsapp_token
    log.info(
        "leaky_payload", payload=msgspec.to_builtins(payload), headers={"Authorization": f"Bearer {token}"}
    )
    log.info(f"about to message {payload.to} with key {payload.api_key} and {token}")
    raise RuntimeError(f"could not reach {payload.to} with key {payload.api_key}, token {token}")


class BatchProbePayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: A job that fails its batch's transaction, and then fails alone too.
    poison: bool = False
    #: A job that kills its worker process, in a batch or alone (as the OOM killer would).
    crash: bool = False


def batch_probe(ctx: BatchContext, payloads: list[BatchProbePayload]) -> list[dict[str, Any]]:
    if any(p.crash for p in payloads):
        os.kill(os.getpid(), signal.SIGKILL)
    if any(p.poison for p in payloads):
        raise RetryableError("one poisoned job fails the whole batch", code="test_poison")
    return [{"batch_size": len(payloads), "attempt": c.attempt} for c in ctx.claims]


@job_type("test_batch_probe", payload=BatchProbePayload, batch=batch_probe, max_retries=0)
def batch_probe_single(ctx: JobContext, payload: BatchProbePayload) -> dict[str, Any]:
    if payload.crash:
        os.kill(os.getpid(), signal.SIGKILL)
    if payload.poison:
        raise PermanentError("poisoned on its own too", code="test_poison")
    return {"batch_size": 1, "attempt": ctx.claim.attempt}


class EffectPayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: Names the request that enqueued the job, so a test can count jobs and runs per request.
    marker: str
    seconds: float = 0.0


#: Where test_effect records each run that commits. A test creates it (EFFECTS_TABLE); the schema
#: in core/platform/tables/ stays the product's own.
EFFECTS_TABLE = (
    "CREATE TABLE IF NOT EXISTS test_effects (marker text NOT NULL, job_id uuid NOT NULL, "
    "attempt int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"
)


@job_type(
    "test_effect", payload=EffectPayload, max_retries=20, min_backoff_s=0.2, max_backoff_s=1.0, timeout_s=10
)
def record_effect(ctx: JobContext, payload: EffectPayload) -> dict[str, Any]:
    """A Postgres effect in the job's transaction: it commits with the job's success, or not at all."""
    if payload.seconds:
        time.sleep(payload.seconds)
    ctx.conn.execute(
        sa.text("INSERT INTO test_effects (marker, job_id, attempt) VALUES (:marker, :job_id, :attempt)"),
        {"marker": payload.marker, "job_id": ctx.claim.job_id, "attempt": ctx.claim.attempt},
    )
    return {"attempt": ctx.claim.attempt}


class SealedBatchPayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: A recipient sealed at rest, of a type whose jobs run in batches.
    to: str


def sealed_batch(ctx: BatchContext, payloads: list[SealedBatchPayload]) -> list[dict[str, Any]]:
    return [{"batch_size": len(payloads), "opened": p.to.startswith("+")} for p in payloads]


@job_type(
    "test_sealed_batch", payload=SealedBatchPayload, batch=sealed_batch, max_retries=2, sealed_fields=("to",)
)
def sealed_single(ctx: JobContext, payload: SealedBatchPayload) -> dict[str, Any]:
    return {"batch_size": 1, "opened": payload.to.startswith("+")}


class EchoPayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: Any JSON value: the job's result is ``{"value": value}`` (workflow steps read it).
    value: Any = None


@job_type("test_echo", payload=EchoPayload, max_retries=0)
def echo(ctx: JobContext, payload: EchoPayload) -> dict[str, Any]:
    return {"value": payload.value}


class StepsPayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    steps: int
    step_s: float = 0.1
    #: A fraction reported before the first step (a handler's bug when out of 0..1).
    first_report: float | None = None


@job_type("test_steps", payload=StepsPayload, max_retries=2, min_backoff_s=0.1, timeout_s=60)
def steps(ctx: JobContext, payload: StepsPayload) -> dict[str, Any]:
    """Works in steps, reporting its progress and stopping between steps once cancelled."""
    if payload.first_report is not None:
        ctx.progress(payload.first_report)
    for i in range(payload.steps):
        ctx.stop_if_cancelled()
        ctx.progress(i / payload.steps, f"step {i + 1} of {payload.steps}")
        time.sleep(payload.step_s)
    ctx.progress(1.0, "done")
    return {"steps": payload.steps}


# Fails as test_flaky does, then waits an hour before its next attempt: a job that sits in `retrying`
# until someone runs it now (the ops console's bulk retry).
job_type("test_backoff", payload=FlakyPayload, max_retries=3, min_backoff_s=3600, max_backoff_s=3600)(flaky)
