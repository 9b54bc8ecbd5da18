"""``job.progress`` is a stream-only event type: a stream asks for it by name, a webhook never gets it."""

from __future__ import annotations

import pytest

from control_api.events import parse_types
from core.errors import InvalidInput
from core.events.endpoints import checked_events
from core.platform.tables.events import EVENT_TYPES


def test_a_stream_gets_progress_only_when_it_names_it() -> None:
    assert parse_types(None) == frozenset(EVENT_TYPES)
    assert "job.progress" not in parse_types("")
    assert parse_types("job.progress, job.succeeded") == {"job.progress", "job.succeeded"}
    with pytest.raises(InvalidInput):
        parse_types("job.progres")


def test_a_webhook_endpoint_cannot_ask_for_progress() -> None:
    with pytest.raises(InvalidInput) as refused:
        checked_events(["job.succeeded", "job.progress"])
    assert "job.progress" in str(refused.value.details)
