"""One trace from the caller's traceparent to the LLM call: the API's request span, the worker's job
span under it (the context carried in the job's message), and the provider call under that, exported
by both processes over OTLP/HTTP to a local receiver. Their log lines carry the same trace id. A
WhatsApp send's Cloud API call is in its own request's trace the same way."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from core.platform.settings import Settings
from tests.fakes.openai import FakeOpenAI
from tests.fakes.otlp import FakeOtlpReceiver, ReceivedSpan
from tests.fakes.whatsapp import FakeWhatsApp
from tests.integration.conftest import Farm, JobWaiter, make_key, sending_to
from tests.services import wait_for


@pytest.fixture
def receiver() -> Iterator[FakeOtlpReceiver]:
    fake = FakeOtlpReceiver()
    yield fake
    fake.close()


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI("traced")
    yield fake
    fake.close()


def _ancestors(span: ReceivedSpan, spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    by_id = {s.span_id: s for s in spans}
    chain = []
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        chain.append(span)
    return chain


def test_one_post_yields_one_trace_from_the_api_through_the_worker_to_the_llm(
    farm: Farm, settings: Settings, receiver: FakeOtlpReceiver, llm: FakeOpenAI, whatsapp: FakeWhatsApp
) -> None:
    farm.settings = sending_to(
        settings.replace(openai_base_url=llm.base_url, openai_api_key="sk-test", llm_model="m-1"),
        whatsapp,
        "app-secret",
    )
    # Short batches: spans reach the receiver a tenth of a second after they end.
    farm.env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    worker = farm.worker()
    api, base = farm.api()
    key = make_key(settings, "jobs:write", "jobs:read")
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    send_trace = secrets.token_hex(16)
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        r = client.post(
            "/v1/jobs",
            json={"type": "ai_reply", "payload": {"chat_id": "c1", "user_id": "u1", "message": "hello"}},
            headers={"traceparent": f"00-{trace_id}-{caller_span}-01"},
        )
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        sent = client.post(
            "/v1/jobs",
            json={"type": "whatsapp_message", "payload": {"to": "+447700900123", "text": "hi"}},
            headers={"traceparent": f"00-{send_trace}-{caller_span}-01"},
        )
        assert sent.status_code == 201, sent.text

    def whole_chain() -> tuple[ReceivedSpan, list[ReceivedSpan]] | None:
        # Spans arrive as each ends, a parent after its children: wait until the chain is whole.
        spans = receiver.trace(trace_id)
        chat = next((s for s in spans if s.name == "chat m-1"), None)
        chain = _ancestors(chat, spans) if chat else []
        return (chat, chain) if chat and chain and chain[-1].service == "jobyard-api" else None

    chat, chain = wait_for(whole_chain, timeout=20, what="the trace from the API to the LLM call")
    spans = receiver.trace(trace_id)
    names = [(s.service, s.name) for s in chain]
    assert ("jobyard-worker", "job ai_reply") in names, names
    job_span = next(s for s in chain if s.name == "job ai_reply")
    assert job_span.attributes["jobyard.job.id"] == job_id
    # The chain reaches the API's request span, whose parent is the caller's span.
    assert chain[-1].service == "jobyard-api", names
    assert chain[-1].parent_span_id == caller_span
    assert chat.service == "jobyard-worker"
    assert chat.attributes["gen_ai.usage.input_tokens"] == 11
    assert {s.service for s in spans} == {"jobyard-api", "jobyard-worker"}
    # The fixture's /healthz polls started no trace.
    assert not [s.name for s in receiver.spans if "healthz" in s.name]
    # Postgres and Redis calls of both processes are in the trace too.
    assert any(s.attributes.get("db.system") == "redis" for s in spans if s.service == "jobyard-api")
    assert any(s.attributes.get("db.system") == "postgresql" for s in spans if s.service == "jobyard-worker")

    # The WhatsApp send, in its own trace: the Cloud API call (httpx) under the worker's job span.
    def send_chain() -> list[ReceivedSpan] | None:
        spans = receiver.trace(send_trace)
        post = next(
            (s for s in spans if str(s.attributes.get("http.url", "")).startswith(whatsapp.url)), None
        )
        chain = _ancestors(post, spans) if post else []
        return chain if chain and chain[-1].service == "jobyard-api" else None

    chain = wait_for(send_chain, timeout=20, what="the WhatsApp send's trace")
    assert ("jobyard-worker", "job whatsapp_message") in [(s.service, s.name) for s in chain]
    # No span holds the number or the text: statements go without their values, URLs carry ids.
    everything = str([(s.name, s.attributes) for s in receiver.spans])
    assert "447700900123" not in everything
    assert "hello" not in everything

    def lines(text: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def ai_reply_succeeded() -> dict[str, Any] | None:
        # The ai_reply job's own line: the WhatsApp send's job may finish first, in its own trace.
        found = (
            line
            for line in lines(worker.log())
            if line.get("event") == "job_succeeded" and line.get("job_id") == job_id
        )
        return next(found, None)

    succeeded = wait_for(ai_reply_succeeded, what="the ai_reply job's job_succeeded line")
    assert succeeded["trace_id"] == trace_id
    access = next(
        line for line in lines(api.log()) if line.get("event") == "request" and line["path"] == "/v1/jobs"
    )
    assert access["trace_id"] == trace_id


def test_a_stopping_worker_exports_the_spans_still_batched(
    api: TestClient[Any], farm: Farm, receiver: FakeOtlpReceiver, wait_job: JobWaiter
) -> None:
    # Batches every ten minutes: only the flush at shutdown can bring the job's span in time.
    farm.env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "600000"}
    worker = farm.worker()
    r = api.post("/v1/jobs", json={"type": "test_echo", "payload": {"value": 1}})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    assert wait_job(job_id)["status"] == "succeeded"
    assert worker.stop() == 0
    # No traceparent (this API does not trace): the job's span starts a trace of its own.
    spans = wait_for(
        lambda: [s for s in receiver.spans if s.attributes.get("jobyard.job.id") == job_id],
        timeout=10,
        what="the job's span",
    )
    assert [s.name for s in spans] == ["job test_echo"]
    assert spans[0].parent_span_id == ""
