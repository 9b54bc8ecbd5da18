"""The chunker (core/embeddings/chunks.py): property tests over any text, size and overlap."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from core.embeddings.chunks import Chunking, spans, split
from tests.properties import PROPERTY

TEXTS = st.text(alphabet=st.sampled_from("ab é\n\t."), min_size=1, max_size=3000)


@st.composite
def chunkings(draw: st.DrawFn) -> Chunking:
    size = draw(st.integers(min_value=1, max_value=400))
    return Chunking(size, draw(st.integers(min_value=0, max_value=size // 2)))


@PROPERTY
@given(text=TEXTS, chunking=chunkings())
def test_chunks_cover_the_text_within_size_and_overlap(text: str, chunking: Chunking) -> None:
    cuts = spans(len(text), chunking, text)
    chunks = split(text, chunking)
    assert chunks == [text[a:b] for a, b in cuts]
    assert all(chunk for chunk in chunks)  # none empty
    assert all(len(chunk) <= chunking.size for chunk in chunks)
    assert cuts[0][0] == 0 and cuts[-1][1] == len(text)  # the whole text, start to end
    for (a1, b1), (a2, b2) in itertools.pairwise(cuts):
        assert b1 - a2 == chunking.overlap  # each repeats exactly the overlap of the one before
        assert a1 < a2 and b1 < b2  # and moves on
    # Laid end to end without their overlaps, the chunks are the text.
    assert "".join([chunks[0], *(c[chunking.overlap :] for c in chunks[1:])]) == text
    assert split(text, chunking) == chunks  # the same input, the same chunks


def test_a_short_text_is_one_chunk_and_words_are_not_cut() -> None:
    assert split("short", Chunking(1000, 200)) == ["short"]
    words = " ".join(f"word{i:04d}" for i in range(1000))  # 8,999 characters
    chunks = split(words, Chunking(1000, 200))
    assert len(chunks) == 12
    assert all(c.endswith(" ") or c is chunks[-1] for c in chunks)
    assert chunks[-1].endswith("word0999")


def test_numbers_that_cannot_cut_a_text_are_named() -> None:
    assert Chunking(1000, 200).problem() is None
    assert Chunking(1000, 500).problem() is None
    assert "not between 0 and half" in (Chunking(1000, 501).problem() or "")
    assert "below 1" in (Chunking(0, 0).problem() or "")
