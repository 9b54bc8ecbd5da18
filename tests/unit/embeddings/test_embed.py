"""The `embed` job type without services (core/embeddings/embed.py): payloads checked field by field and
the vector text form."""

from __future__ import annotations

import numpy as np
from pgvector.vector import Vector

from core.embeddings.embed import EMBED, vector_text
from core.engine.job_types import validate_payload


def test_embed_payloads_are_checked_field_by_field() -> None:
    ok, errors = validate_payload(EMBED, {"collection": "kb", "documents": [{"id": "1", "text": "hi"}]})
    assert errors == []
    assert ok == {
        "collection": "kb",
        "documents": [{"id": "1", "text": "hi", "metadata": None}],
        "model": None,
        "chunk_chars": None,
        "chunk_overlap": None,
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


def test_chunk_sizes_are_checked_alone_and_together() -> None:
    doc = [{"id": "1", "text": "hi"}]
    for bad in ({"chunk_chars": 99}, {"chunk_overlap": -1}, {"chunk_chars": 1000, "chunk_overlap": 501}):
        _, errors = validate_payload(EMBED, {"collection": "kb", "documents": doc, **bad})
        assert errors, bad
    _, errors = validate_payload(
        EMBED, {"collection": "kb", "documents": doc, "chunk_chars": 1000, "chunk_overlap": 501}
    )
    assert "half the chunk size" in errors[0].message
    ok, errors = validate_payload(
        EMBED, {"collection": "kb", "documents": doc, "chunk_chars": 400, "chunk_overlap": 0}
    )
    assert errors == [] and (ok["chunk_chars"], ok["chunk_overlap"]) == (400, 0)


def test_vector_text_reads_back_exactly_as_float32() -> None:
    values = np.random.default_rng(1).standard_normal(384).astype(np.float32)
    parsed = np.asarray(Vector._from_text(vector_text(values.tolist())), dtype=np.float32)
    assert np.array_equal(parsed, values)
