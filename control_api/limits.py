"""Input limits the handlers cannot see: how deep a JSON body nests.

msgspec decodes nesting up to about 1,000 levels and then raises RecursionError, and a body within
that can still exhaust the stack of whatever walks it later (the JSON encoder of the database
driver, a merge patch). So the body is checked as it streams in, before anything decodes it: a body
deeper than JOBYARD_MAX_JSON_DEPTH is a 400 (`too_deeply_nested`). The scan works on the raw bytes
(strings skipped by one regular expression in C), so it costs microseconds on a job's body.

The other limits live where the data is defined: the body size is Litestar's
(`request_max_body_size`, 413), string lengths and list sizes are in each msgspec Struct, the
payload size per job type is on its JobType, and request bodies forbid unknown fields.
"""

from __future__ import annotations

import re
from itertools import accumulate

from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from control_api.errors import ApiError

# A whole JSON string (escapes included): runs of plain characters, each escape with the character
# it escapes. An unterminated string runs to the end, so no input makes the scan worse than linear.
_STRING = re.compile(rb'"[^"\\]*(?:\\.?[^"\\]*)*(?:"|\Z)', re.DOTALL)
#: Every byte but the four brackets (what bytes.translate deletes).
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
#: A bracket's step in depth, by its byte.
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether ``body`` nests arrays and objects deeper than ``limit`` (malformed JSON is left to
    the decoder, which says what is wrong with it).

    Strings go first (one substitution in C), then every byte but a bracket (``translate``), and the
    depth is the largest running sum of the brackets' steps (``accumulate``, in C too): a batch of
    1,000 jobs is scanned in about 1.2 ms, where a Python loop over its tokens took 3.8.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # cannot be deeper than it has brackets
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets), initial=0)) > limit


class JsonDepthMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):  # type: ignore[comparison-overlap]
            await self.app(scope, receive, send)
            return
        limit: int = scope["app"].state.settings.max_json_depth
        chunks: list[bytes] = []

        async def checked_receive() -> ReceiveMessage:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body = b"".join(chunks)
                    chunks.clear()
                    if json_depth_exceeds(body, limit):
                        raise ApiError(
                            400,
                            "too_deeply_nested",
                            f"the body nests arrays and objects deeper than {limit} levels",
                            {"max_depth": limit},
                        )
            return message

        await self.app(scope, checked_receive, send)
