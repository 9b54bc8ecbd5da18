"""Long documents cut into chunks that each fit what an embedding model reads.

A model reads a bounded number of tokens and ignores the rest (all-MiniLM-L6-v2: 256 word pieces,
about 1,000 characters of English), so a long page embedded whole is a vector of its first
paragraphs. Cut into chunks, each chunk is a row of its own (the document id and the chunk number)
and a search finds the chunk that answers, wherever it is in the document.

Chunks are windows of at most ``size`` characters; each starts ``overlap`` characters before the
previous one ends, so a sentence cut at a chunk's end is whole in the next one. A window ends at the
last whitespace of its second half when there is one (a word is not cut in two), else at ``size``.
The same text and the same size and overlap always give the same chunks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Chunking:
    """How documents are cut: windows of at most ``size`` characters overlapping by ``overlap``."""

    size: int
    overlap: int

    def problem(self) -> str | None:
        """Why these numbers cannot cut a text, or None."""
        if self.size < 1:
            return f"a chunk size of {self.size} characters is below 1"
        if not 0 <= self.overlap <= self.size // 2:
            return f"an overlap of {self.overlap} characters is not between 0 and half the chunk size ({self.size})"
        return None


def spans(length: int, chunking: Chunking, text: str = "") -> list[tuple[int, int]]:
    """The [start, end) of each chunk of a text of ``length`` characters (``text``, when given, is
    where the windows look for whitespace to end at)."""
    size, overlap = chunking.size, chunking.overlap
    if length <= size:
        return [(0, length)]
    out: list[tuple[int, int]] = []
    start = 0
    while True:
        end = start + size
        if end >= length:
            out.append((start, length))
            return out
        # End after the last whitespace past the window's middle (and past the overlap, so the next
        # window starts after this one did).
        floor = start + max(size // 2, overlap + 1)
        cut = max(text.rfind(" ", floor, end), text.rfind("\n", floor, end)) if text else -1
        if cut >= floor:
            end = cut + 1
        out.append((start, end))
        start = end - overlap


def split(text: str, chunking: Chunking) -> list[str]:
    """The chunks of ``text``, in order; one chunk, the text itself, when it fits in one."""
    if len(text) <= chunking.size:
        return [text]
    return [text[a:b] for a, b in spans(len(text), chunking, text)]
