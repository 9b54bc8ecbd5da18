"""`ai_reply`'s `knowledge` without services: the payload checked, and the system message that gives
the model its documents, bounded in characters (core/chats/ai_reply.py, core/embeddings/knowledge.py)."""

from __future__ import annotations

from core.chats.ai_reply import KNOWLEDGE_HEADER, knowledge_message
from core.embeddings.embed import Hit
from core.engine.job_types import get_job_type, validate_payload

AI_REPLY = get_job_type("ai_reply")
BASE = {"chat_id": "c1", "user_id": "u1", "message": "Do you have the teapot in blue?"}


def test_knowledge_is_checked_field_by_field() -> None:
    ok, errors = validate_payload(AI_REPLY, {**BASE, "knowledge": {"collection": "products"}})
    assert errors == []
    assert ok["knowledge"] == {"collection": "products", "k": 4}
    for bad in (
        {"collection": "products", "k": 0},
        {"collection": "products", "k": 21},
        {"k": 3},
        {"collection": "no spaces", "k": 3},
        {"collection": "p", "top": 3},
    ):
        _, errors = validate_payload(AI_REPLY, {**BASE, "knowledge": bad})
        assert [e.field for e in errors] == ["payload.knowledge"], (bad, errors)
    _, errors = validate_payload(AI_REPLY, {**BASE, "knowledge": {"collection": "products", "k": 21}})
    assert "<= 20" in errors[0].message


def test_documents_are_given_nearest_first_within_the_character_budget() -> None:
    hits = [
        Hit("teapot-blue", "A blue teapot.", None, 0.9, 2),
        Hit("cup", "x" * 500, None, 0.5, 0),
        Hit("saucer", "A saucer.", None, 0.4, 0),
    ]
    content, given = knowledge_message(hits, 10_000)
    assert content.startswith(KNOWLEDGE_HEADER)
    assert "[document teapot-blue, chunk 2]\nA blue teapot." in content
    assert [h.id for h in given] == ["teapot-blue", "cup", "saucer"]
    # A budget that ends inside the second document: it is cut there, the third left out.
    content, given = knowledge_message(hits, 100)
    assert [h.id for h in given] == ["teapot-blue", "cup"]
    assert len(content) - len(KNOWLEDGE_HEADER) - 2 * len("\n\n") == 100
    assert "saucer" not in content
