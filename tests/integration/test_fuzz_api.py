"""Schemathesis against the app's own OpenAPI document: every operation, at least 1,000 generated
requests in all, authenticated with an all-scopes key, against real Postgres and Redis (no worker:
jobs just queue). No answer may be a server error, and every answer must match the document: its
status code is declared, and its body fits the declared schema (errors included).
"""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import strategies as st
from litestar.testing import TestClient
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from core.settings import Settings

#: Examples per operation: with ~40 operations this passes 1,000 requests in all, a minute or so.
EXAMPLES_PER_OPERATION = 40
MIN_TOTAL_CASES = 1000
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A configured webhook: unconfigured, it rightly answers every call with 503."""
    return settings.replace(whatsapp_app_secret="fuzz-app-secret", whatsapp_verify_token="fuzz-verify-token")


def _request_kwargs(case: schemathesis.Case) -> dict[str, Any]:
    """Schemathesis prepares requests-style arguments; the test client speaks httpx."""
    kwargs = case.as_transport_kwargs(base_url="http://testserver.local")
    kwargs.pop("cookies", None)
    if "data" in kwargs:
        kwargs["content"] = kwargs.pop("data")
    # The client's own Authorization header is the all-scopes key; a generated one must not replace it.
    kwargs["headers"] = {
        k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "authorization"
    }
    return kwargs


def test_generated_requests_get_no_server_error_and_match_the_schema(api: TestClient[Any]) -> None:
    document = api.get("/schema/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    per_operation: dict[str, int] = {}
    failures: dict[str, str] = {}

    for result in schema.get_all_operations():
        operation = result.ok()

        # Valid requests and invalid ones (wrong types, missing fields, out-of-range values).
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
        )

        @hypothesis.given(case=cases)
        @hypothesis.settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,  # the same cases on every run: CI must not turn red by chance
            suppress_health_check=list(HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )
        def run(case: schemathesis.Case) -> None:
            label = case.operation.label
            per_operation[label] = per_operation.get(label, 0) + 1
            response = api.request(**_request_kwargs(case))
            case.validate_response(response, checks=CHECKS)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # report every operation's failures at once
            failures[operation.label] = str(exc)[:3000]

    assert failures == {}, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
    total = sum(per_operation.values())
    print(f"schemathesis: {total} cases over {len(per_operation)} operations")
    assert len(per_operation) >= 35, sorted(per_operation)
    assert total >= MIN_TOTAL_CASES, per_operation
