"""A workflow step's payload templates: ``{{ step.result.a.b }}`` in string values, rendered once.

A string that is one template and nothing else becomes the value at that path, whatever its JSON
type (a number stays a number, an object an object). A template inside a longer string is replaced by
the value's text: a string as it is, anything else as compact JSON. Rendering is one pass over the
template's own text: a result that itself holds ``{{ x.result.y }}`` is inserted literally, never
rendered again. Keys of objects are never templates. A path step is an object's key, or a list's
index when it is all digits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

#: ``{{ name.result }}`` or ``{{ name.result.a.0.b }}``, spaces inside the braces optional.
TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_-]*)\.result((?:\.[A-Za-z0-9_-]+)*)\s*\}\}")
#: The deepest path a template may name.
MAX_PATH_DEPTH = 32


@dataclass(frozen=True, slots=True)
class Reference:
    """A template's step and path (``("a", "0", "b")`` for ``.result.a.0.b``)."""

    step: str
    path: tuple[str, ...]

    def __str__(self) -> str:
        return ".".join((self.step, "result", *self.path))


class MissingPath(Exception):
    """A template names a path its step's result does not hold."""

    def __init__(self, ref: Reference) -> None:
        super().__init__(f"{ref} is not in the result of step {ref.step!r}")
        self.ref = ref


def _parse(match: re.Match[str]) -> Reference:
    path = match.group(2)
    return Reference(match.group(1), tuple(path[1:].split(".")) if path else ())


def references(value: Any) -> Iterator[Reference]:
    """Every template in ``value``'s string values, at any depth."""
    if isinstance(value, str):
        if "{{" in value:
            yield from (_parse(m) for m in TEMPLATE.finditer(value))
    elif isinstance(value, dict):
        for v in value.values():
            yield from references(v)
    elif isinstance(value, list):
        for v in value:
            yield from references(v)


def has_templates(value: Any) -> bool:
    return next(references(value), None) is not None


_MISSING = object()


def lookup(result: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path`` in ``result``; ``_MISSING`` when there is none."""
    value = result
    for part in path:
        if isinstance(value, dict):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def _value(ref: Reference, results: Mapping[str, Any]) -> Any:
    value = lookup(results[ref.step], ref.path) if ref.step in results else _MISSING
    if value is _MISSING:
        raise MissingPath(ref)
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def render(value: Any, results: Mapping[str, Any]) -> Any:
    """``value`` with every template replaced from ``results`` (step name -> result); raises
    MissingPath naming the first path that is not there."""
    if isinstance(value, str):
        if "{{" not in value:
            return value
        whole = TEMPLATE.fullmatch(value)
        if whole is not None:
            return _value(_parse(whole), results)
        return TEMPLATE.sub(lambda m: _text(_value(_parse(m), results)), value)
    if isinstance(value, dict):
        return {k: render(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, results) for v in value]
    return value
