"""A fake WhatsApp Cloud API: `POST /{version}/{phone_number_id}/messages` on 127.0.0.1, speaking the
real protocol (bearer token, Graph error bodies), recording every request it receives (with the
phone number id of its path and the bearer token it carried), and failing on demand per recipient:
scripted Graph errors, or a stall after the request was recorded (the message "accepted" while the
sender waits for an answer that comes late or never). It serves several business numbers, each
with its own token (``add_number``), as Meta serves several tenants' numbers."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.base import FakeHTTPServer, read_body, reply_json

TOKEN = "test-whatsapp-token"
PHONE_NUMBER_ID = "106540352242922"
VERSION = "v21.0"


@dataclass(frozen=True)
class GraphFail:
    """Answer with a Graph API error body."""

    status: int
    code: int
    message: str = "scripted failure"
    subcode: int | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class Stall:
    """Record the request, then hold the answer this long before accepting the message."""

    seconds: float


Behavior = GraphFail | Stall


@dataclass(frozen=True)
class Request:
    at: float  # wall-clock time.time() when the server received it
    path: str
    authorization: str | None
    body: dict[str, Any]
    message_id: str | None  # the id answered, if the message was accepted

    @property
    def number(self) -> str:
        """The phone number id of the path: the business number the message was sent through."""
        parts = self.path.strip("/").split("/")
        return parts[1] if len(parts) >= 2 else ""


class FakeWhatsApp(FakeHTTPServer):
    def __init__(self, token: str = TOKEN, phone_number_id: str = PHONE_NUMBER_ID, version: str = VERSION):
        self.token, self.phone_number_id, self.version = token, phone_number_id, version
        #: Every number served, with the token its sends must carry.
        self._numbers = {phone_number_id: token}
        self._scripts: dict[str, deque[Behavior]] = defaultdict(deque)
        self._requests: list[Request] = []
        self._closing = threading.Event()
        super().__init__()

    def post(self, request: BaseHTTPRequestHandler) -> None:
        raw = read_body(request)
        status, body, headers = self._handle(request.path, request.headers.get("authorization"), raw)
        reply_json(request, status, body, headers=headers)

    def _handle(self, path: str, auth: str | None, raw: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        to = str(body.get("to", ""))
        with self._lock:
            script = self._scripts[to]
            behavior = script.popleft() if script else None
        prefix, _, rest = path.lstrip("/").partition("/")
        number, _, tail = rest.partition("/")
        with self._lock:
            token = self._numbers.get(number)
        if prefix != self.version or tail != "messages" or token is None:
            self._record(path, auth, body, None)
            return 400, _graph_error(100, f"Unsupported post request to {path}"), {}
        if auth != f"Bearer {token}":
            self._record(path, auth, body, None)
            return 401, _graph_error(190, "Invalid OAuth access token - Cannot parse access token"), {}
        if isinstance(behavior, GraphFail):
            self._record(path, auth, body, None)
            headers = {} if behavior.retry_after is None else {"Retry-After": str(behavior.retry_after)}
            return behavior.status, _graph_error(behavior.code, behavior.message, behavior.subcode), headers
        message_id = "wamid." + secrets.token_hex(16)
        self._record(path, auth, body, message_id)
        if isinstance(behavior, Stall):
            self._closing.wait(behavior.seconds)
        accepted = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
            "messages": [{"id": message_id}],
        }
        return 200, accepted, {}

    def _record(self, path: str, auth: str | None, body: dict[str, Any], message_id: str | None) -> None:
        with self._lock:
            self._requests.append(Request(time.time(), path, auth, body, message_id))

    def add_number(self, phone_number_id: str, token: str) -> None:
        """Serve another business number (or give one a new token: the old one is refused from now on)."""
        with self._lock:
            self._numbers[phone_number_id] = token

    def script(self, to: str, *behaviors: Behavior) -> None:
        """The next answers for messages to ``to``; afterwards every message to it is accepted."""
        with self._lock:
            self._scripts[to].extend(behaviors)

    def requests(self, to: str | None = None, *, number: str | None = None) -> list[Request]:
        """What was received: to one recipient, through one number (its phone number id), or all."""
        with self._lock:
            return [
                r
                for r in self._requests
                if (to is None or r.body.get("to") == to) and (number is None or r.number == number)
            ]

    def close(self) -> None:
        self._closing.set()
        super().close()


def _graph_error(code: int, message: str, subcode: int | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {
        "message": f"(#{code}) {message}",
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": message},
        "fbtrace_id": "A" + secrets.token_hex(8),
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


# -- what Meta POSTs to the farm's webhook ---------------------------------------------------------


def notification(value: dict[str, Any], phone_number_id: str = PHONE_NUMBER_ID) -> dict[str, Any]:
    """A webhook body with one change to the business number ``phone_number_id``."""
    meta = {"display_phone_number": "15550000000", "phone_number_id": phone_number_id}
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "WABA1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {"messaging_product": "whatsapp", "metadata": meta, **value},
                    }
                ],
            }
        ],
    }


def customer_message(
    wa_id: str,
    text: str,
    *,
    message_id: str | None = None,
    phone_number_id: str = PHONE_NUMBER_ID,
    timestamp: float | None = None,
) -> dict[str, Any]:
    """A webhook body: the customer ``wa_id`` (digits) wrote ``text`` to the business number."""
    message = {
        "from": wa_id,
        "id": message_id or "wamid.in" + wa_id,
        "timestamp": str(int(time.time() if timestamp is None else timestamp)),
        "type": "text",
        "text": {"body": text},
    }
    value = {"contacts": [{"profile": {"name": "Ann"}, "wa_id": wa_id}], "messages": [message]}
    return notification(value, phone_number_id)
