"""The bounds of every time a client gives (run_at, anchor_at, start_at, and offsets added to them),
and the check of a time zone's name. One horizon, one check: the API edges and schedules call here.

A client time is normalised to UTC. Ahead, it may be at most ``HORIZON`` from now (the same ten
years as ``delay_seconds``). Behind, a past time means "now", but one more than ``HORIZON`` ago is
refused: it is almost surely a mistake (a zero epoch, a year typed as 0001), and far enough out it
is a value Postgres stores but Python cannot read back, which once broke every read of the job.
"""

from __future__ import annotations

import functools
import zoneinfo
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from core.engine.job_types import FieldError

#: Ten years: further than any business reason to wait, near enough to catch unit mistakes
#: (milliseconds sent as seconds). Also how far back a time may lie before it is refused.
HORIZON = timedelta(days=3650)
HORIZON_S = int(HORIZON.total_seconds())
HORIZON_TEXT = "ten years"
#: Longest time zone name accepted (the longest IANA name is 32 characters).
MAX_ZONE_NAME = 64


def bounded_utc(value: datetime, field: str, now: datetime) -> tuple[datetime | None, FieldError | None]:
    """``value`` in UTC if it lies within the horizon around ``now``; else a FieldError naming ``field``."""
    if value.tzinfo is None or value.utcoffset() is None:
        return None, FieldError(field, "needs a time zone (e.g. Z or +01:00)")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:59:59-14:00 is year 10000 in UTC: Python cannot hold it, so neither can we.
        return None, FieldError(field, "is not a time that exists in UTC between years 1 and 9999")
    if utc > now + HORIZON:
        latest = (now + HORIZON).isoformat(timespec="seconds")
        return None, FieldError(field, f"is more than {HORIZON_TEXT} ahead (latest {latest})")
    if utc < now - HORIZON:
        earliest = (now - HORIZON).isoformat(timespec="seconds")
        return None, FieldError(
            field,
            f"is more than {HORIZON_TEXT} in the past (earliest {earliest}); a past time means now",
        )
    return utc, None


@functools.cache
def _zone_names() -> frozenset[str]:
    # Read once per process, on first use: the names installed (system tzdata or the tzdata package).
    # Only these are tried, so a hostile name never reaches the file system.
    return frozenset(zoneinfo.available_timezones())


def zone_named(name: str) -> ZoneInfo:
    """An IANA time zone by name; ValueError saying why for anything that is not one.

    Directories (``America``), paths (``../etc``), data files of the tz database and names of
    absurd length are all refused here, before ZoneInfo is asked.
    """
    if not name or len(name) > MAX_ZONE_NAME or name not in _zone_names():
        shown = name if len(name) <= MAX_ZONE_NAME else name[:MAX_ZONE_NAME] + "..."
        raise ValueError(f"unknown time zone {shown!r} (expected an IANA name such as Europe/London)")
    try:
        return ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"time zone {name!r} cannot be loaded from this host's tz database") from None
