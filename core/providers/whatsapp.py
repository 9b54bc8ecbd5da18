"""WhatsApp Cloud API client: `POST {base}/{version}/{phone_number_id}/messages`, errors mapped onto the tree.

A send is an outside effect that must never happen twice, so this client retries inside the call
only when the request certainly never reached Meta (the connection was not made). A request that
went out and got no answer (read timeout, dropped connection) is an UnknownOutcomeError, never a
retry: Meta may have accepted it.

Graph API errors look like `{"error": {"message", "type", "code", "error_subcode", "error_data":
{"details"}, "fbtrace_id"}}`; Meta advises acting on `code`, not on the HTTP status or the message.
The mapping (Meta's "Cloud API error codes" reference):

| Graph code | meaning | becomes |
| --- | --- | --- |
| 4, 80007 | app / business account call-rate limit | RateLimitedError `rate_limited`, 60 s |
| 130429 | Cloud API throughput reached (80 msg/s per number) | RateLimitedError `rate_limited`, 1 s |
| 131056 | pair rate limit: too many messages to one recipient | RateLimitedError `rate_limited`, 6 s |
| 131048 | spam rate limit: too many earlier messages flagged | RateLimitedError `rate_limited`, 60 s |
| 131026, 131049, 130472 | undeliverable (not on WhatsApp, old app, Meta held it back) | PermanentError `message_undeliverable` |
| 131021, 131030 | recipient is the sender / not on the test allow list | PermanentError `recipient_invalid` |
| 131047 | more than 24 h since the user last wrote: only a template may go | PermanentError `outside_service_window` |
| 131050 | the user stopped marketing messages from this business | PermanentError `marketing_opted_out` |
| 100, 131008, 131009, 131051 | invalid or missing parameter, unsupported message type | PermanentError `request_invalid` |
| 132000-132999 | template missing, paused, disabled or parameters wrong | PermanentError `template_invalid` |
| 0, 3, 10, 190, 200-299, 131005 | token expired or invalid, permission missing | PermanentError `provider_auth_failed` |
| 368, 130497, 131031, 131037, 131042, 131045, 133010 | account blocked, locked, unpaid, unregistered | PermanentError `account_restricted` |
| 1, 2, 131000, 131016, 131057, 133004 | unknown / temporary error, service unavailable, maintenance | RetryableError `provider_unavailable` |
| any other code | by HTTP status: 429 rate limited, 5xx `provider_unavailable`, 4xx `provider_rejected` (permanent) | |

A `Retry-After` header, when present, overrides the waits above.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random

from core.errors import JobFailure, PermanentError, RateLimitedError, RetryableError, UnknownOutcomeError
from core.platform.settings import Settings
from core.providers.http import BLIP_TRIES, BLIP_WAIT_S, parse_retry_after

PROVIDER = "WhatsApp Cloud API"
#: Connect, write and pool waits are short; the answer to a send may take longer under load.
TIMEOUT = httpx.Timeout(20.0, connect=5.0)

#: Graph codes that mean "slow down", with the wait (seconds) when Meta gives no Retry-After.
RATE_LIMIT_WAITS: dict[int, float] = {4: 60.0, 80007: 60.0, 130429: 1.0, 131056: 6.0, 131048: 60.0}
#: Graph codes that no retry can fix, with the code stored on the job.
PERMANENT_CODES: dict[int, str] = {
    131026: "message_undeliverable",
    131049: "message_undeliverable",
    130472: "message_undeliverable",
    131021: "recipient_invalid",
    131030: "recipient_invalid",
    131047: "outside_service_window",
    131050: "marketing_opted_out",
    100: "request_invalid",
    131008: "request_invalid",
    131009: "request_invalid",
    131051: "request_invalid",
    0: "provider_auth_failed",
    3: "provider_auth_failed",
    10: "provider_auth_failed",
    190: "provider_auth_failed",
    131005: "provider_auth_failed",
    368: "account_restricted",
    130497: "account_restricted",
    131031: "account_restricted",
    131037: "account_restricted",
    131042: "account_restricted",
    131045: "account_restricted",
    133010: "account_restricted",
}
#: Graph codes for a temporary problem on Meta's side.
RETRYABLE_CODES = frozenset({1, 2, 131000, 131016, 131057, 133004})


@dataclass(frozen=True, slots=True)
class GraphError:
    status: int
    code: int | None
    subcode: int | None
    message: str
    details: str | None
    fbtrace_id: str | None

    @classmethod
    def from_response(cls, status: int, body: Any) -> GraphError:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return cls(status, None, None, str(body)[:300] if body else "", None, None)
        data = error.get("error_data")
        details = data.get("details") if isinstance(data, dict) else None
        return cls(
            status=status,
            code=_int(error.get("code")),
            subcode=_int(error.get("error_subcode")),
            message=str(error.get("message", ""))[:500],
            details=str(details)[:500] if details else None,
            fbtrace_id=error.get("fbtrace_id"),
        )

    def describe(self) -> str:
        code = "no Graph error code" if self.code is None else f"Graph error {self.code}"
        if self.subcode is not None:
            code += f"/{self.subcode}"
        text = f"{PROVIDER} answered HTTP {self.status}, {code}: {self.message}"
        if self.details:
            text += f" ({self.details})"
        return text + (f" [fbtrace_id {self.fbtrace_id}]" if self.fbtrace_id else "")


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def classify(error: GraphError, retry_after: str | None = None) -> JobFailure:
    """The error-tree exception for a failed send (see the table in the module docstring)."""
    text, code = error.describe(), error.code
    if code is not None:
        if code in RATE_LIMIT_WAITS:
            return RateLimitedError(text, retry_after=parse_retry_after(retry_after, RATE_LIMIT_WAITS[code]))
        if code in PERMANENT_CODES:
            return PermanentError(text, code=PERMANENT_CODES[code])
        if 132000 <= code < 133000:
            return PermanentError(text, code="template_invalid")
        if 200 <= code < 300:
            return PermanentError(text, code="provider_auth_failed")
        if code in RETRYABLE_CODES:
            return RetryableError(text, code="provider_unavailable")
    status = error.status
    if status == 429:
        return RateLimitedError(text, retry_after=parse_retry_after(retry_after, 1.0))
    if status >= 500:
        return RetryableError(text, code="provider_unavailable")
    if status in (408, 409, 425):
        return RetryableError(text, code="provider_retry_later")
    if status in (401, 403):
        return PermanentError(text, code="provider_auth_failed")
    return PermanentError(text, code="provider_rejected")


@dataclass(frozen=True, slots=True)
class SentMessage:
    message_id: str  # Meta's "wamid...." id; delivery-status webhooks name the message by it
    wa_id: str | None  # the recipient's WhatsApp id as Meta resolved the number


#: Errors raised before any byte of the request left: a retry cannot send twice.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class WhatsAppClient:
    """Sends messages for one business phone number. Thread-safe; build one per process."""

    def __init__(
        self,
        *,
        token: str,
        phone_number_id: str,
        base_url: str = "https://graph.facebook.com",
        version: str = "v21.0",
        timeout: httpx.Timeout = TIMEOUT,
    ) -> None:
        self.phone_number_id = phone_number_id
        self.url = f"{base_url.rstrip('/')}/{version.strip('/')}/{phone_number_id}/messages"
        self._http = httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {token}"})

    @classmethod
    def from_settings(cls, settings: Settings) -> WhatsAppClient | None:
        """The configured client, or None when WHATSAPP_TOKEN is unset (dry-run mode)."""
        if not settings.whatsapp_token:
            return None
        if not settings.whatsapp_phone_number_id:
            raise PermanentError(
                "WHATSAPP_TOKEN is set but WHATSAPP_PHONE_NUMBER_ID is not", code="whatsapp_not_configured"
            )
        return cls(
            token=settings.whatsapp_token,
            phone_number_id=settings.whatsapp_phone_number_id,
            base_url=settings.whatsapp_api_base_url,
            version=settings.whatsapp_api_version,
        )

    def send(self, body: dict[str, Any]) -> SentMessage:
        """Send one message (the Cloud API's JSON body); raise from core.errors when it was not accepted."""
        try:
            response = self._post(body)
        except _NOT_SENT as exc:
            raise RetryableError(f"{PROVIDER} is unreachable: {exc!r}", code="provider_unreachable") from exc
        except httpx.TransportError as exc:
            raise UnknownOutcomeError(
                f"{PROVIDER} did not answer after the request went out ({exc!r}); the message may have been sent"
            ) from exc
        try:
            payload: Any = response.json()
        except ValueError:
            payload = response.text
        if response.status_code >= 400:
            raise classify(
                GraphError.from_response(response.status_code, payload), response.headers.get("retry-after")
            )
        try:
            message_id = str(payload["messages"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise UnknownOutcomeError(
                f"{PROVIDER} answered {response.status_code} without a message id: {str(payload)[:300]}"
            ) from None
        contacts = payload.get("contacts") or [{}]
        return SentMessage(message_id=message_id, wa_id=contacts[0].get("wa_id"))

    @retry(
        retry=retry_if_exception_type(_NOT_SENT),
        stop=stop_after_attempt(BLIP_TRIES),
        wait=wait_random(*BLIP_WAIT_S),
        reraise=True,
    )
    def _post(self, body: dict[str, Any]) -> httpx.Response:
        return self._http.post(self.url, json=body)

    def close(self) -> None:
        self._http.close()
