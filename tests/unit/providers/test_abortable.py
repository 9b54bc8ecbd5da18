"""A job's cancel aborts its HTTP call in flight: the socket is shut down under the blocked read, the
server sees the connection close, and the call raises JobCancelled at once, not at its timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from core.errors import JobCancelled
from core.platform.cancellation import CancelScope, running
from core.providers.http import abortable_client, request
from tests.fakes.openai import FakeOpenAI
from tests.services import wait_for


@pytest.fixture
def slow() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI("slow")
    fake.hang_s = 30.0
    yield fake
    fake.close()


def test_a_cancel_aborts_the_call_in_flight(slow: FakeOpenAI) -> None:
    scope = CancelScope("job")
    outcome: list[BaseException | None] = []

    def call() -> None:
        with running(scope), abortable_client(timeout=60) as client:
            try:
                request(client, "POST", f"{slow.base_url}/chat/completions", provider="slow", json={})
            except BaseException as exc:
                outcome.append(exc)
            else:
                outcome.append(None)

    thread = threading.Thread(target=call)
    thread.start()
    assert slow.holding.wait(10)
    started = time.monotonic()
    scope.cancel()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - started < 2
    assert isinstance(outcome[0], JobCancelled)
    wait_for(lambda: slow.disconnects, timeout=5, what="the server to see the connection closed")
    assert len(slow.disconnects) == 1

    # A new call of the cancelled job fails at once, without a request; outside a job, calls go on.
    with running(scope), abortable_client(timeout=5) as client, pytest.raises(JobCancelled):
        request(client, "POST", f"{slow.base_url}/chat/completions", provider="slow", json={})
    assert slow.calls() == 1
