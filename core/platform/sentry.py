"""Sentry error reports, when SENTRY_DSN is set; sentry_sdk is not even imported otherwise.

Every event goes through the logs' redactor (core/platform/redact.py) in ``before_send``: keys,
tokens, message bodies and phone numbers never leave the process, in an exception's message, a log
line's text or its fields. Local variables are not sent at all (a message body in a variable has no
field name to be recognised by). Errors only: traces are OpenTelemetry's (core/platform/tracing.py).

An error log line becomes an event, and earlier lines its breadcrumbs, through the SDK's logging
integration. Such a record holds structlog's event dict, which the SDK would send as one string
(``repr``), where a field's name no longer tells a message body apart: the event's name becomes the
message, and its fields go as data, each by its name through the redactor. Our own lines do not go
through the standard library's logging (core/platform/logs.py): with Sentry on, each is handed to it
as such a record too, for the SDK to see.
"""

from __future__ import annotations

from typing import Any

from core.platform.logs import mirror_to_stdlib
from core.platform.redact import Redactor, provider_secrets
from core.platform.settings import Settings


def configure_sentry(settings: Settings, *, process: str) -> bool:
    """Start the Sentry client of this process (the API's, a worker's) if a DSN is set."""
    if not settings.sentry_dsn:
        return False
    import sentry_sdk

    redactor = Redactor(provider_secrets(settings))
    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        before_send=scrubber(redactor),
        before_breadcrumb=breadcrumb_scrubber(redactor),
        send_default_pii=False,
        include_local_variables=False,
    )
    sentry_sdk.set_tag("process", process)
    # Our lines skip the standard library's logging (core/platform/logs.py), where the SDK listens.
    mirror_to_stdlib()
    return True


def _log_fields(hint: dict[str, Any] | None, redactor: Redactor) -> tuple[str, dict[str, Any]] | None:
    """The event name and redacted fields of a structlog line the hint's log record carries."""
    record = (hint or {}).get("log_record")
    if record is None or not isinstance(record.msg, dict):
        return None
    fields: dict[str, Any] = redactor.value(record.msg)
    return str(fields.pop("event", "")), fields


def scrubber(redactor: Redactor) -> Any:
    """``before_send``: the event as the redactor leaves it."""

    def scrub(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
        logged = _log_fields(hint, redactor)
        if logged is not None:
            name, fields = logged
            event["logentry"] = {"message": name, "formatted": name, "params": []}
            event["extra"] = {**event.get("extra", {}), **fields}
        return redactor.value(event)  # type: ignore[no-any-return]

    return scrub


def breadcrumb_scrubber(redactor: Redactor) -> Any:
    """``before_breadcrumb``: a log line's breadcrumb with its name as the message, fields as data."""

    def scrub(crumb: dict[str, Any], hint: dict[str, Any] | None) -> dict[str, Any]:
        logged = _log_fields(hint, redactor)
        if logged is not None:
            crumb["message"], crumb["data"] = logged
        return redactor.value(crumb)  # type: ignore[no-any-return]

    return scrub
