"""Workflow templates (core/engine/templates.py): paths found at any depth and JSON type, a missing
path named, and never a second rendering of what a result brought in."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.engine.templates import MAX_PATH_DEPTH, MissingPath, Reference, has_templates, references, render
from tests.properties import JSON_VALUES, PROPERTY

KEYS = st.text(alphabet="abcXYZ019_-", min_size=1, max_size=6)


@st.composite
def result_and_path(draw: st.DrawFn) -> tuple[Any, tuple[str, ...], Any]:
    """A result, a path that exists in it, and the value there."""
    value = draw(JSON_VALUES)
    path: list[str] = []
    result: Any = value
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            key = draw(KEYS)
            result = {key: result, **draw(st.dictionaries(KEYS, JSON_VALUES, max_size=2))} | {key: result}
            path.insert(0, key)
        else:
            before = draw(st.lists(JSON_VALUES, max_size=2))
            result = [*before, result]
            path.insert(0, str(len(before)))
    return result, tuple(path), value


def _template(step: str, path: tuple[str, ...]) -> str:
    return "{{ " + ".".join((step, "result", *path)) + " }}"


@PROPERTY
@given(result_and_path())
def test_a_whole_string_template_keeps_the_value_and_its_type(case: tuple[Any, tuple[str, ...], Any]) -> None:
    result, path, value = case
    assert render({"x": _template("s", path)}, {"s": result}) == {"x": value}


@PROPERTY
@given(result_and_path())
def test_a_template_inside_text_inserts_strings_as_they_are_and_the_rest_as_json(
    case: tuple[Any, tuple[str, ...], Any],
) -> None:
    result, path, value = case
    rendered = render(["<" + _template("s", path) + ">"], {"s": result})
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert rendered == [f"<{text}>"]


@PROPERTY
@given(JSON_VALUES, st.lists(KEYS, max_size=8))
def test_a_missing_path_is_named(result: Any, path: list[str]) -> None:
    # Seven letters: longer than any key a generated result holds, so the path cannot be there.
    missing = (*path, "missing")
    with pytest.raises(MissingPath) as raised:
        render({"deep": [{"x": "at " + _template("s", missing)}]}, {"s": result})
    assert raised.value.ref == Reference("s", missing)
    assert str(raised.value) == f"{'.'.join(('s', 'result', *missing))} is not in the result of step 's'"


@PROPERTY
@given(st.text(max_size=40), JSON_VALUES)
def test_results_are_never_rendered_again(text: str, other: Any) -> None:
    # A result holding a template of another step (present, with a value) comes out literally.
    hostile = text + "{{ other.result.value }}" + "{{ page.result }}"
    out = render(
        {"a": "{{ page.result.text }}", "b": "x {{ page.result.text }} y"},
        {
            "page": {"text": hostile},
            "other": {"value": other},
        },
    )
    assert out == {"a": hostile, "b": f"x {hostile} y"}


def test_strings_without_templates_keys_and_other_values_are_left_alone() -> None:
    payload = {"{{ a.result }}": 1, "n": 2.5, "t": True, "z": None, "s": "{{ not a template }}", "e": "{{}}"}
    assert render(payload, {}) == payload
    assert not has_templates(payload)


def test_references_and_list_indexes() -> None:
    payload = {"a": ["{{page.result.items.1.name}} and {{ other.result }}"], "b": {"c": "{{ x.result.y }}"}}
    assert list(references(payload)) == [
        Reference("page", ("items", "1", "name")),
        Reference("other", ()),
        Reference("x", ("y",)),
    ]
    results = {"page": {"items": [{"name": "a"}, {"name": "b"}]}, "other": [1], "x": {"y": {"z": 1}}}
    assert render(payload, results) == {"a": ["b and [1]"], "b": {"c": {"z": 1}}}
    with pytest.raises(MissingPath, match=r"page\.result\.items\.1\.name"):
        render(payload, {"page": {"items": [{"name": "a"}]}, "other": 1, "x": {"y": 1}})


def test_a_deep_path_is_found_without_recursion() -> None:
    result: Any = "bottom"
    for _ in range(MAX_PATH_DEPTH):
        result = {"k": result}
    assert render("{{ s.result" + ".k" * MAX_PATH_DEPTH + " }}", {"s": result}) == "bottom"
