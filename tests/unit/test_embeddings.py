"""Embeddings without services: payloads, the vector text form, model resolution errors, the local
backend's batching, and the worker layout of `jobyard up`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from huggingface_hub import constants
from pgvector.vector import Vector

from core.embeddings.embed import EMBED, EMBEDDINGS_QUEUE, vector_text
from core.engine.job_types import validate_payload
from core.errors import PermanentError
from core.platform.settings import Settings
from core.providers.embeddings import LocalBackend, build_backend, resolve_model_dir


def test_embed_payloads_are_checked_field_by_field() -> None:
    ok, errors = validate_payload(EMBED, {"collection": "kb", "documents": [{"id": "1", "text": "hi"}]})
    assert errors == []
    assert ok == {
        "collection": "kb",
        "documents": [{"id": "1", "text": "hi", "metadata": None}],
        "model": None,
    }
    _, errors = validate_payload(
        EMBED, {"collection": "no spaces/", "documents": [], "model": "", "colour": "red"}
    )
    assert {e.field for e in errors} == {
        "payload.collection",
        "payload.documents",
        "payload.model",
        "payload.colour",
    }
    _, errors = validate_payload(EMBED, {"collection": "kb", "documents": [{"id": "", "text": "x", "k": 1}]})
    assert [e.field for e in errors] == ["payload.documents"]


def test_vector_text_reads_back_exactly_as_float32() -> None:
    values = np.random.default_rng(1).standard_normal(384).astype(np.float32)
    parsed = np.asarray(Vector._from_text(vector_text(values.tolist())), dtype=np.float32)
    assert np.array_equal(parsed, values)


def test_model_resolution_errors_are_permanent_or_retryable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_model_dir(str(tmp_path)) == tmp_path
    with pytest.raises(PermanentError) as missing_dir:
        resolve_model_dir(str(tmp_path / "nope"))
    assert missing_dir.value.code == "embedding_model_not_found"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PermanentError) as offline:
        resolve_model_dir("some-org/some-model")
    assert offline.value.code == "embedding_model_not_found"
    with pytest.raises(PermanentError) as unknown:
        build_backend(Settings(embedding_backend="gpu-cloud"))
    assert unknown.value.code == "embedding_backend_unknown"


class _FakeModel:
    """Stands in for a SentenceTransformer: a text's vector is its length."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str], **kwargs: Any) -> np.ndarray:
        self.calls.append(texts)
        return np.array([[float(len(t)), 1.0] for t in texts])


def test_local_backend_encodes_one_batch_per_call_longest_first_and_keeps_the_order() -> None:
    backend = LocalBackend("unused", batch=2)
    backend._st = fake = _FakeModel()
    texts = ["a", "bbbb", "cc", "ddddd", "eee"]
    vectors = backend.embed(texts)
    assert [v[0] for v in vectors] == [1, 4, 2, 5, 3]
    assert fake.calls == [["ddddd", "bbbb"], ["eee", "cc"], ["a"]]


def test_up_gives_embedding_jobs_a_worker_of_their_own() -> None:
    from core.launch.stack import farm_children

    children = {c.name: list(c.argv) for c in farm_children(Settings())}
    assert set(children) == {"api", "worker", "worker_embeddings", "scheduler"}
    light = children["worker"][children["worker"].index("--queues") + 1 :]
    assert "unread_count" in light and EMBEDDINGS_QUEUE not in light
    embeddings = children["worker_embeddings"]
    assert embeddings[embeddings.index("--queues") + 1 :] == [EMBEDDINGS_QUEUE]
    assert embeddings[embeddings.index("--processes") + 1] == "1"
    assert embeddings[embeddings.index("--threads") + 1] == "2"
    only_light = {c.name for c in farm_children(Settings(worker_queues=("unread_count",)))}
    assert only_light == {"api", "worker", "scheduler"}
