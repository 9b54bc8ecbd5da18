"""Errors as a caller without `ops` sees them: no secrets, no SQL values.

A job's or attempt's error holds what the failing code said, and that can be anything: a provider's
answer echoing a token, a database error with the statement's parameters ("[parameters: ...]",
"DETAIL: Key (x)=(value)"), a URL with its password. Callers holding `jobs:read` or `jobs:write`
(other systems) get those texts through core/platform/redact.py's ``redacted_error``: the code, the retry
flag and the message's shape stay, the values go. Keys holding `ops` (the operators, who read the
logs anyway) see errors as stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec
from litestar import Request

from core.access.keys import ApiKey
from core.platform.redact import Redactor, redacted_error

#: The scope whose holders see errors unredacted.
FULL_ERRORS_SCOPE = "ops"

T = TypeVar("T", bound=msgspec.Struct)


def redactor_for(request: Request[Any, Any, Any]) -> Redactor | None:
    """The redactor to apply for this request's key; None when it sees errors in full."""
    key = request.user
    if isinstance(key, ApiKey) and FULL_ERRORS_SCOPE in key.scopes:
        return None
    redactor: Redactor = request.app.state.redactor
    return redactor


def shown(item: T, redactor: Redactor | None) -> T:
    """``item`` (anything with an ``error`` field) with its error redacted for ``redactor``."""
    error = getattr(item, "error", None)
    if redactor is None or not error:
        return item
    return msgspec.structs.replace(item, error=redacted_error(error, redactor))


def all_shown(items: Sequence[T], redactor: Redactor | None) -> list[T]:
    return [shown(item, redactor) for item in items]
