"""The embedding model of a worker process that consumes the embeddings queue: a resource of `embed`.

Loaded once, at boot, before the process takes a message, and only in processes that consume the
embeddings queue (workers/resources.py), so torch and sentence-transformers never enter any other
process. With the `local` backend the process also runs a thread that embeds search queries for the
API (see core/embeddings/queries.py).
"""

from __future__ import annotations

import threading

import redis
import structlog

from core.embeddings.queries import serve_one
from core.engine.broker import redis_client
from core.errors import JobFailure, RetryableError
from core.platform.settings import Settings
from core.providers.embeddings import EmbeddingBackend, Vector, build_backend

log = structlog.get_logger(__name__)


class EmbeddingModel:
    """This process's embedding backend, and why it is not usable if it is not."""

    def __init__(self) -> None:
        self.backend: EmbeddingBackend | None = None
        self.error: JobFailure | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def start(self, settings: Settings) -> None:
        """Load the model, and serve the API's search queries with it (local backend)."""
        self.load(settings)
        if settings.embedding_backend == "local":
            client = redis_client(settings)
            threading.Thread(
                target=self._serve_queries, args=(settings, client), name="jobyard-embed-queries", daemon=True
            ).start()

    def stop(self) -> None:
        self._stop.set()

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

    def _serve_queries(self, settings: Settings, client: redis.Redis) -> None:
        def embed(texts: list[str]) -> list[Vector]:
            return self.ready(settings).embed(texts)

        while not self._stop.is_set():
            try:
                serve_one(settings, client, settings.embedding_model, embed)
            except redis.RedisError as exc:
                log.warning("embed_queries_redis_error", error=str(exc))
                self._stop.wait(1.0)


#: The model of this process (one per process, whatever the settings).
MODEL = EmbeddingModel()
