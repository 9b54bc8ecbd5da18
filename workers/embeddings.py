"""The `embed` actor, and the embeddings worker's boot.

A worker process that consumes the embeddings queue loads the model once, at boot, before it takes a
message (``before_worker_boot``), and runs a thread that embeds search queries for the API (see
core/embeddings/queries.py). A process that does not consume that queue loads nothing, so torch and
sentence-transformers never enter it.
"""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
import redis
import structlog
from dramatiq.middleware import Middleware

from core.embeddings.embed import EMBEDDINGS_QUEUE, EmbedPayload, embed_documents
from core.embeddings.queries import serve_one
from core.engine.broker import redis_client
from core.errors import JobFailure, RetryableError
from core.platform.settings import Settings
from core.providers.embeddings import EmbeddingBackend, Vector, build_backend
from workers.handlers import JobContext, consumes, handler

log = structlog.get_logger(__name__)


class _Model:
    """This process's embedding backend, and why it is not usable if it is not."""

    def __init__(self) -> None:
        self.backend: EmbeddingBackend | None = None
        self.error: JobFailure | None = None
        self._lock = threading.Lock()

    def load(self, settings: Settings) -> None:
        with self._lock:
            try:
                if self.backend is None:
                    self.backend = build_backend(settings)
                self.backend.load()
                self.error = None
            except JobFailure as exc:
                self.error = exc
                log.error("embedding_model_unavailable", error_code=exc.code, error=exc.message)
            except Exception as exc:  # a surprise must not crash-loop the worker: its jobs retry
                self.error = RetryableError(
                    f"the embedding model could not be loaded: {type(exc).__name__}: {exc}",
                    code="embedding_model_load_failed",
                )
                log.exception("embedding_model_unavailable", error_code=self.error.code)

    def ready(self, settings: Settings) -> EmbeddingBackend:
        """The loaded backend; a load that failed for a passing reason is tried again."""
        if self.error is not None and self.error.retryable:
            self.load(settings)
        if self.error is not None:
            raise self.error
        if self.backend is None:
            raise RetryableError(
                "this worker process has not loaded an embedding model", code="embedding_model_not_loaded"
            )
        return self.backend


_model = _Model()


class EmbeddingModel(Middleware):
    """Loads the model at boot in processes that consume the embeddings queue, and serves queries."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._client: redis.Redis | None = None

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if not consumes(worker, EMBEDDINGS_QUEUE):
            return
        _model.load(self.settings)
        if self.settings.embedding_backend == "local":
            self._client = redis_client(self.settings)
            threading.Thread(target=self._serve_queries, name="jobyard-embed-queries", daemon=True).start()

    def _serve_queries(self) -> None:
        assert self._client is not None

        def embed(texts: list[str]) -> list[Vector]:
            return _model.ready(self.settings).embed(texts)

        while not self._stop.is_set():
            try:
                serve_one(self.settings, self._client, self.settings.embedding_model, embed)
            except redis.RedisError as exc:
                log.warning("embed_queries_redis_error", error=str(exc))
                self._stop.wait(1.0)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()


@handler("embed")
def embed(ctx: JobContext, payload: EmbedPayload) -> dict[str, Any]:
    return embed_documents(ctx.conn, payload, _model.ready(ctx.settings), ctx.claim.job_id)
