"""The dead-letter payload merge patch (core/engine/deadletters.py), RFC 7386: property tests
(hypothesis) and the RFC's own examples."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given

from core.engine.deadletters import merge_patch
from tests.properties import JSON_VALUES, PROPERTY


def rfc7386(target: Any, patch: Any) -> Any:
    """The RFC's own pseudo-code, word for word."""
    if isinstance(patch, dict):
        if not isinstance(target, dict):
            target = {}
        target = dict(target)
        for name, value in patch.items():
            if value is None:
                target.pop(name, None)
            else:
                target[name] = rfc7386(target.get(name), value)
        return target
    return patch


def no_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: no_nulls(v) for k, v in value.items() if v is not None}
    return value


def diff(source: Any, target: Any) -> Any:
    """A merge patch that turns ``source`` into ``target`` (which holds no null member)."""
    if not isinstance(source, dict) or not isinstance(target, dict):
        return target
    patch: dict[str, Any] = {k: None for k in source if k not in target}
    for k, v in target.items():
        if k not in source:
            patch[k] = v
        elif source[k] != v:
            patch[k] = diff(source[k], v)
    return patch


@PROPERTY
@given(target=JSON_VALUES, patch=JSON_VALUES)
def test_the_merge_patch_follows_rfc_7386_and_leaves_its_input_alone(target: Any, patch: Any) -> None:
    before = copy.deepcopy((target, patch))
    result = merge_patch(target, patch)
    assert result == rfc7386(target, patch)
    assert (target, patch) == before  # neither input is changed
    assert merge_patch(result, patch) == result  # applying it twice changes nothing more


@PROPERTY
@given(source=JSON_VALUES, target=JSON_VALUES.map(no_nulls))
def test_a_merge_patch_made_from_two_documents_turns_one_into_the_other(source: Any, target: Any) -> None:
    assert merge_patch(source, diff(source, target)) == target


def test_merge_patch_examples_of_rfc_7386_appendix_a() -> None:
    cases = [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ]
    for target, patch, expected in cases:
        assert merge_patch(target, patch) == expected, (target, patch)
