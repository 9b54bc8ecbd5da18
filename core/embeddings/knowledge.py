"""Knowledge for a job: the documents of a tenant's collection nearest to a question (RAG).

`ai_reply`'s ``knowledge`` (core/chats/ai_reply.py) names a collection and ``k``; the question is
embedded with the collection's own model and the ``k`` nearest documents, each by its nearest chunk,
are what the model is given. Only the job's tenant's collection of that name is searched: another
tenant's of the same name is never read, and a missing one is a permanent failure.

Where the question is embedded: in a worker process that holds the model itself (one consuming the
embeddings queue as well), by that model; otherwise the way the API embeds a search's query
(core/embeddings/queries.py): the hosted model, or an embeddings worker asked over Redis.
"""

from __future__ import annotations

import threading
from typing import Annotated

import msgspec
import redis
from sqlalchemy.engine import Connection

from core.embeddings.embed import CollectionName, Hit, get_collection, search
from core.embeddings.model import MODEL
from core.embeddings.queries import query_vector
from core.engine.broker import redis_client
from core.errors import (
    ModelNotServed,
    PermanentError,
    QueryNotEmbedded,
    QueryRateLimited,
    RateLimitedError,
    RetryableError,
)
from core.platform.settings import Settings
from core.providers.embeddings import Vector

#: Documents a job may ask for: each costs characters of the model's context.
MAX_K = 20


class Knowledge(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Which of the tenant's collections to answer from, and how many documents to give the model."""

    collection: CollectionName
    k: Annotated[int, msgspec.Meta(ge=1, le=MAX_K)] = 4


def retrieve(
    conn: Connection, settings: Settings, tenant: str, knowledge: Knowledge, question: str
) -> list[Hit]:
    """The ``k`` documents of ``tenant``'s collection nearest to ``question``, nearest first."""
    collection = get_collection(conn, tenant, knowledge.collection)
    if collection is None:
        raise PermanentError(
            f"no collection {knowledge.collection!r} to answer from: embed documents into it first",
            code="collection_not_found",
        )
    vector = _question_vector(settings, collection.model, question)
    return search(conn, collection, vector, knowledge.k)


def _question_vector(settings: Settings, model: str, question: str) -> Vector:
    backend = MODEL.backend
    if backend is not None and MODEL.error is None and backend.model == model:
        return backend.embed([question])[0]
    try:
        return query_vector(settings, _client(settings), model, question)
    except ModelNotServed as exc:
        raise PermanentError(exc.message, code=exc.code) from exc
    except QueryRateLimited as exc:
        raise RateLimitedError(exc.message, retry_after=exc.retry_after or 1.0) from exc
    except QueryNotEmbedded as exc:
        raise RetryableError(exc.message, code=exc.code) from exc


_clients: dict[tuple[str | None, float], redis.Redis] = {}
_clients_lock = threading.Lock()


def _client(settings: Settings) -> redis.Redis:
    """This process's Redis client for asking embeddings workers; its socket outlasts the wait."""
    timeout = settings.embedding_query_timeout_s + 5
    with _clients_lock:
        key = (settings.redis_url, timeout)
        if key not in _clients:
            _clients[key] = redis_client(settings, socket_timeout=timeout)
        return _clients[key]
