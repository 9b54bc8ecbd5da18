"""The assistant's decisions without services: handoff words as whole words, the guardrails, business
hours across days and time zones, and what its configuration refuses."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from core.assistant.config import AssistantIn, BusinessHours, breach, handoff_word, is_open

WORDS = ["human", "agent", "real person"]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("human please", "human"),
        ("HUMAN?!", "human"),
        ("Can I talk to an Agent.", "agent"),
        ("a real   person, now", "real person"),
        ("A REAL\nPERSON", "real person"),
        ("is it humane?", None),
        ("inhuman prices", None),
        ("agents of change", None),
        ("personal question", None),
        ("realperson", None),
        ("", None),
    ],
)
def test_handoff_words_match_whole_words_whatever_the_case(text: str, found: str | None) -> None:
    assert handoff_word(WORDS, text) == found


def test_handoff_words_are_matched_literally() -> None:
    assert handoff_word(["c++", "a.b"], "I use C++ daily") == "c++"
    assert handoff_word(["a.b"], "axb") is None


def test_guardrails() -> None:
    assistant = AssistantIn(max_reply_chars=40, forbidden_phrases=["free shipping", "guarantee"])
    assert breach(assistant, "We ship the blue teapot tomorrow.") is None
    assert (
        breach(assistant, "FREE  Shipping on it!")
        == "the reply contains the forbidden phrase 'free shipping'"
    )
    assert breach(assistant, "Guaranteed.") == "the reply contains the forbidden phrase 'guarantee'"
    assert breach(assistant, "x" * 41) == "the reply has 41 characters, more than max_reply_chars 40"
    assert breach(assistant, "   ") == "the reply is empty"


def _hours(**weekly: list[str]) -> BusinessHours:
    return msgspec.convert({"timezone": "Europe/London", "weekly": weekly}, BusinessHours)


def test_business_hours_in_their_time_zone() -> None:
    hours = _hours(mon=["09:00-12:00", "13:00-17:30"], sat=["22:00-24:00"])
    # Monday 2026-11-23; London is on UTC in November.
    assert is_open(hours, datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    assert not is_open(hours, datetime(2026, 11, 23, 12, 30, tzinfo=UTC))
    assert not is_open(hours, datetime(2026, 11, 23, 17, 30, tzinfo=UTC))
    assert not is_open(hours, datetime(2026, 11, 24, 10, 0, tzinfo=UTC))  # Tuesday: not named
    assert is_open(hours, datetime(2026, 11, 28, 23, 59, tzinfo=UTC))  # Saturday until midnight
    # In July London is UTC+1: 08:30 UTC is 09:30 there.
    assert is_open(hours, datetime(2026, 7, 6, 8, 30, tzinfo=UTC))
    assert is_open(None, datetime(2026, 11, 24, 3, 0, tzinfo=UTC))


@pytest.mark.parametrize(
    "bad",
    [
        {"business_hours": {"timezone": "Mars/Olympus", "weekly": {}}},
        {"business_hours": {"timezone": "../etc/passwd", "weekly": {}}},
        {"business_hours": {"timezone": "UTC", "weekly": {"mon": ["17:00-09:00"]}}},
        {"business_hours": {"timezone": "UTC", "weekly": {"mon": ["09:00-24:30"]}}},
        {"business_hours": {"timezone": "UTC", "weekly": {"mon": ["9:00-17:00"]}}},
        {"business_hours": {"timezone": "UTC", "weekly": {"funday": ["09:00-17:00"]}}},
        {"handoff_words": [" "]},
        {"forbidden_phrases": [""]},
        {"max_reply_chars": 0},
        {"max_reply_chars": 4097},
        {"knowledge": {"collection": "products", "k": 0}},
        {"knowledge": {"collection": "../x"}},
        {"enabled": True, "extra": 1},
    ],
)
def test_the_configuration_refuses(bad: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(bad, AssistantIn)
