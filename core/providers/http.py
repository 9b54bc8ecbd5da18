"""HTTP calls to providers: quick retries of a blip inside the call, then one error tree outside it.

Two layers, each with one job: tenacity retries a connection reset or a lone 502/503/504 within a
second or so; anything that outlives that becomes a RetryableError, RateLimitedError or
PermanentError, and the job's retry policy takes over across attempts.

A client from ``abortable_client`` (core/providers/abortable.py) has its call aborted when the job is
cancelled while it waits: ``request`` then raises JobCancelled (never retried, not the provider's
failure).
"""

from __future__ import annotations

from typing import Any

import httpx
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random

from core.errors import PermanentError, ProviderBusy, RateLimitedError, RetryableError
from core.platform import cancellation
from core.providers.abortable import abortable_client
from core.providers.retry_after import parse_retry_after

__all__ = ["abortable_client", "parse_retry_after", "raise_for_status", "request"]

#: In-call retries of a blip: total tries, and the pause between them.
BLIP_TRIES = 3
BLIP_WAIT_S = (0.05, 0.3)
_BLIP_STATUSES = {502, 503, 504}


def _is_blip(exc: BaseException) -> bool:
    # Timeouts are not blips: retrying them inside the call would multiply the job's wait; nor is a
    # call the job's cancel aborted.
    if cancellation.is_cancelled():
        return False
    return isinstance(exc, ProviderBusy) or (
        isinstance(exc, httpx.TransportError) and not isinstance(exc, httpx.TimeoutException)
    )


def request(client: httpx.Client, method: str, url: str, *, provider: str, **kwargs: Any) -> httpx.Response:
    """Send a request; return a 2xx/3xx response or raise an error from core.errors."""

    @retry(
        retry=retry_if_exception(_is_blip),
        stop=stop_after_attempt(BLIP_TRIES),
        wait=wait_random(*BLIP_WAIT_S),
        reraise=True,
    )
    def send() -> httpx.Response:
        response = client.request(method, url, **kwargs)
        if response.status_code in _BLIP_STATUSES:
            raise ProviderBusy(response)
        return response

    cancellation.stop_if_cancelled()
    try:
        response = send()
    except ProviderBusy as blip:
        response = blip.response
    except httpx.TransportError as exc:
        cancellation.stop_if_cancelled()
        raise _transport_error(exc, provider) from exc
    raise_for_status(response, provider)
    return response


def _transport_error(exc: httpx.TransportError, provider: str) -> RetryableError:
    if isinstance(exc, httpx.TimeoutException):
        return RetryableError(f"{provider} did not answer in time: {exc}", code="provider_timeout")
    return RetryableError(f"{provider} is unreachable: {exc}", code="provider_unreachable")


def raise_for_status(response: httpx.Response, provider: str) -> None:
    status = response.status_code
    if status < 400:
        return
    detail = response.text[:300]
    if status == 429:
        raise RateLimitedError(
            f"{provider} rate-limited the request: {detail}",
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    if status >= 500:
        raise RetryableError(f"{provider} answered {status}: {detail}", code="provider_unavailable")
    if status in (408, 409, 425):  # timeouts and conflicts a later attempt may get past
        raise RetryableError(f"{provider} answered {status}: {detail}", code="provider_retry_later")
    raise PermanentError(f"{provider} rejected the request with {status}: {detail}", code="provider_rejected")
