"""Embedding a search's query with the collection's model, without torch in the API process.

With the `inference` backend the API calls the hosted model itself (an HTTP call). With the `local`
backend only the embeddings workers hold the model, so the API asks one of them over Redis: it pushes
the query onto a list named after the model and waits on a reply key; a responder thread in every
embeddings worker pops the list, embeds the text and pushes the vector back. The reply key expires.

Why not an `embed_query` job: a query is a synchronous read whose caller waits seconds at most. A job
would make every search a durable row (with an 8 KB vector as its result) and several commits, would
wait behind bulk `embed` jobs for a worker thread, and could be retried after its caller gave up. A
request lost with a dying worker shows as a timeout (503); the caller searches again.
"""

from __future__ import annotations

import functools
import hashlib
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import redis

from core.errors import JobFailure, ModelNotServed, QueryNotEmbedded, QueryRateLimited
from core.platform.settings import Settings
from core.providers.embeddings import InferenceBackend, Vector

#: A request list no worker popped for this long expires, so requests do not pile up without workers.
REQUEST_TTL_S = 60
#: A reply nobody collected (the API timed out) expires after this.
REPLY_TTL_S = 30
#: A worker still answers a request this long past its deadline: hosts' clocks differ a little.
CLOCK_SLACK_S = 5.0


class _Request(msgspec.Struct):
    text: str
    reply_to: str
    deadline: float


class _Reply(msgspec.Struct, omit_defaults=True):
    vector: Vector | None = None
    code: str | None = None
    message: str | None = None


def not_embedded(code: str, message: str, *, retry_after: float | None = None) -> QueryNotEmbedded:
    """Why a query was not embedded: another model than this farm's (a conflict), the provider's
    rate limit (slow down), or an outage."""
    if code == "model_not_served":
        return ModelNotServed(message, code=code)
    if code == "rate_limited":
        return QueryRateLimited(message, code=code, retry_after=retry_after)
    return QueryNotEmbedded(f"the query could not be embedded: {message}", code=code)


def requests_key(settings: Settings, model: str) -> str:
    """The list a model's queries wait on; only workers serving that model pop it."""
    return f"{settings.redis_namespace}:embed-queries:{hashlib.sha256(model.encode()).hexdigest()[:16]}"


def query_vector(settings: Settings, client: redis.Redis, model: str, text: str) -> Vector:
    """The query's vector under ``model``; raises QueryNotEmbedded."""
    if settings.embedding_backend == "inference":
        return _embed_hosted(settings, model, text)
    return _ask_worker(settings, client, model, text)


@functools.cache
def _hosted(model: str, base_url: str | None, batch: int) -> InferenceBackend:
    return InferenceBackend(model, base_url, batch)


def _embed_hosted(settings: Settings, model: str, text: str) -> Vector:
    if model != settings.embedding_model:
        raise not_embedded(
            "model_not_served", f"this farm serves {settings.embedding_model!r}, not {model!r}"
        )
    backend = _hosted(model, settings.embedding_inference_url, settings.embedding_batch)
    try:
        return backend.embed([text])[0]
    except JobFailure as exc:
        raise not_embedded(exc.code, exc.message, retry_after=getattr(exc, "retry_after", None)) from exc


def _ask_worker(settings: Settings, client: redis.Redis, model: str, text: str) -> Vector:
    timeout = settings.embedding_query_timeout_s
    reply_to = f"{settings.redis_namespace}:embed-queries:reply:{uuid.uuid4().hex}"
    request = _Request(text=text, reply_to=reply_to, deadline=time.time() + timeout)
    key = requests_key(settings, model)
    with client.pipeline() as pipe:
        pipe.rpush(key, msgspec.json.encode(request))
        pipe.expire(key, REQUEST_TTL_S)
        pipe.execute()
    popped: Any = client.blpop([reply_to], timeout=timeout)
    if popped is None:
        raise not_embedded(
            "embeddings_unavailable", f"no embeddings worker serving {model!r} answered within {timeout:g} s"
        )
    reply = msgspec.json.decode(popped[1], type=_Reply)
    if reply.vector is None:
        raise not_embedded(reply.code or "embedding_failed", reply.message or "the query was not embedded")
    return reply.vector


def serve_one(
    settings: Settings,
    client: redis.Redis,
    model: str,
    embed: Callable[[list[str]], list[Vector]],
    wait_s: float = 1.0,
) -> bool:
    """Answer one query waiting for ``model`` if one arrives within ``wait_s``; True if one was taken.

    ``embed`` raises an error of core.errors when the model is not usable; the caller hears why.
    """
    popped: Any = client.blpop([requests_key(settings, model)], timeout=wait_s)
    if popped is None:
        return False
    request = msgspec.json.decode(popped[1], type=_Request)
    if time.time() > request.deadline + CLOCK_SLACK_S:
        return True  # its caller has given up
    try:
        reply = _Reply(vector=embed([request.text])[0])
    except JobFailure as exc:
        reply = _Reply(code=exc.code, message=exc.message)
    except Exception as exc:  # the caller must hear of it, not wait for its timeout
        reply = _Reply(code="unexpected_error", message=f"{type(exc).__name__}: {exc}")
    with client.pipeline() as pipe:
        pipe.rpush(request.reply_to, msgspec.json.encode(reply))
        pipe.expire(request.reply_to, REPLY_TTL_S)
        pipe.execute()
    return True
