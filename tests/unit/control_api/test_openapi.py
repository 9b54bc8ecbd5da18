"""The API contract lives in the project: every operation of the generated OpenAPI document has a
stable operationId, a summary and examples that fit its schemas, and docs/reference/api.md describes
each one. A new route fails here until it has a row in control_api/examples.py and a section in the
reference."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import jsonschema
import pytest

from control_api.app import create_app
from control_api.examples import OPERATIONS
from core.platform.settings import Settings
from tests.services import ROOT

REFERENCE = ROOT / "docs" / "reference" / "api.md"
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    app = create_app(Settings.from_env({}), configure_logs=False)  # no connection is made until startup
    return app.openapi_schema.to_schema()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def test_every_operation_has_a_table_entry_and_a_stable_operation_id(document: dict[str, Any]) -> None:
    found = {(method, path): op["operationId"] for method, path, op in _operations(document)}
    assert sorted(set(found) - set(OPERATIONS)) == [], "routes without a row in control_api/examples.py"
    assert sorted(set(OPERATIONS) - set(found)) == [], "rows in control_api/examples.py without a route"
    assert found == {key: doc.operation_id for key, doc in OPERATIONS.items()}
    ids = list(found.values())
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][A-Za-z]+", i) for i in ids), ids


def test_every_operation_has_a_summary_worth_reading(document: dict[str, Any]) -> None:
    # Litestar's fallback is the function's name ("Read", "Healthz"): one word says nothing.
    short = [
        (m, p, op.get("summary"))
        for m, p, op in _operations(document)
        if len((op.get("summary") or "").split()) < 2
    ]
    assert short == []


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    # "#/components/..." references resolve against the whole document.
    return jsonschema.Draft202012Validator({**schema, "components": document["components"]})


def test_every_operation_has_examples_that_fit_its_schemas(document: dict[str, Any]) -> None:
    problems: list[str] = []
    for method, path, op in _operations(document):
        where = f"{method} {path}"
        examples = 0
        for parameter in op.get("parameters", []):
            if parameter["in"] == "path":
                if "example" not in parameter:
                    problems.append(f"{where}: path parameter {parameter['name']} has no example")
                    continue
                examples += 1
        for media_type, media in op.get("requestBody", {}).get("content", {}).items():
            if "example" not in media:
                problems.append(f"{where}: request body ({media_type}) has no example")
                continue
            examples += 1
            for error in _validator(document, media["schema"]).iter_errors(media["example"]):
                problems.append(f"{where}: request example: {error.message} at {list(error.path)}")
        for status, response in op["responses"].items():
            if not status.startswith("2"):
                continue
            for media_type, media in (response.get("content") or {}).items():
                if not media_type.startswith(("application/json", "text/")):
                    continue  # a PNG is shown by its path parameter's example
                if "example" not in media:
                    problems.append(f"{where}: {status} answer ({media_type}) has no example")
                    continue
                examples += 1
                for error in _validator(document, media["schema"]).iter_errors(media["example"]):
                    problems.append(f"{where}: {status} example: {error.message} at {list(error.path)}")
        if examples == 0:
            problems.append(f"{where}: no example at all")
    assert problems == []


def test_the_reference_describes_every_operation(document: dict[str, Any]) -> None:
    text = REFERENCE.read_text()
    missing = [
        f"{method} {path} ({op['operationId']})"
        for method, path, op in _operations(document)
        if f"`{method} {path}`" not in text or f"`{op['operationId']}`" not in text
    ]
    assert missing == [], (
        f"describe these in {REFERENCE.relative_to(ROOT)} (`METHOD /path` and `operationId`)"
    )


def test_nothing_in_the_repository_points_outside_it() -> None:
    # The contract once lived in a shared folder beside the clone, so no clone had it.
    outside = re.compile(r"\.\./shared\b")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    offenders = [
        name
        for name in listed
        if (ROOT / name).is_file() and outside.search((ROOT / name).read_text(errors="ignore"))
    ]
    assert offenders == []
