"""Every request body and job payload the API accepts is bounded where it is defined: each struct
refuses unknown fields, each string has a maximum length and each list a maximum size. Free-form
objects (a payload, template components, document metadata) are bounded by the body size, the JSON
depth limit and their job type's max_payload_bytes instead."""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi
from litestar.routes import HTTPRoute

from control_api.app import create_app
from core.engine.job_types import job_types
from core.platform.settings import Settings

KEY = "dGhlIGpvYnlhcmQgdGVzdHMnIGRhdGEga2V5ISEhISE="
#: Where an unbounded string is deliberate: a cursor or field name inside a validated shape.
ALLOWED_UNBOUNDED: set[str] = set()


def _problems(t: mi.Type, where: str, seen: set[type]) -> list[str]:
    found: list[str] = []
    if isinstance(t, mi.StructType):
        if t.cls in seen:
            return []
        seen.add(t.cls)
        if not t.forbid_unknown_fields:
            found.append(f"{t.cls.__name__} accepts unknown fields")
        for f in t.fields:
            found += _problems(f.type, f"{t.cls.__name__}.{f.name}", seen)
    elif isinstance(t, mi.StrType):
        if t.max_length is None and t.pattern is None and where not in ALLOWED_UNBOUNDED:
            found.append(f"{where}: a string without max_length")
    elif isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType):
        if t.max_length is None:
            found.append(f"{where}: a list without max_length")
        found += _problems(t.item_type, f"{where}[]", seen)
    elif isinstance(t, mi.UnionType):
        for member in t.types:
            found += _problems(member, where, seen)
    return found


def _body_types() -> list[Any]:
    app = create_app(Settings(data_key=KEY), configure_logs=False)
    types = []
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                data = handler.parsed_fn_signature.parameters.get("data")
                if data is not None:
                    types.append(data.annotation)
    return types


def test_request_bodies_and_payloads_are_bounded() -> None:
    body_types = _body_types()
    assert len(body_types) >= 14
    payload_types = [t.payload for t in job_types().values() if not t.name.startswith("test_")]
    problems: list[str] = []
    for annotation in [*body_types, *payload_types]:
        problems += _problems(mi.type_info(annotation), str(annotation), set())
    assert problems == []


def test_every_job_type_bounds_its_payload() -> None:
    for job_type in job_types().values():
        assert 0 < job_type.max_payload_bytes <= 8 * 1024 * 1024, job_type.name
    assert job_types()["whatsapp_message"].sealed_fields == ("to",)
    assert isinstance(msgspec.json.encode({}), bytes)
