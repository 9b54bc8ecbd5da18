"""Quiet hours: the part of the recipient's day when no message goes out, and when the next may.

The window is recipient-local wall-clock time (`21:00-09:00` crosses midnight), so a send due at
23:00 in Kolkata waits until 09:00 in Kolkata, whatever the farm's own time zone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import SettingsError

_WINDOW = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")
#: Values of JOBYARD_QUIET_HOURS that switch quiet hours off.
OFF = frozenset({"off", "none", "no", "false", "0"})


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time  # first quiet minute
    end: time  # first minute a message may go out again

    def contains(self, local: time) -> bool:
        """Whether a recipient-local time is quiet; the start is quiet, the end is not."""
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # across midnight

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_quiet_hours(spec: str) -> QuietHours | None:
    """`HH:MM-HH:MM` as a window, or None for `off`; SettingsError for anything else."""
    if spec.strip().lower() in OFF:
        return None
    found = _WINDOW.match(spec)
    if found is None:
        raise SettingsError(f"JOBYARD_QUIET_HOURS={spec!r}: expected HH:MM-HH:MM (e.g. 21:00-09:00) or off")
    h1, m1, h2, m2 = (int(g) for g in found.groups())
    return QuietHours(time(h1, m1), time(h2, m2))


def zone(name: str) -> ZoneInfo:
    """An IANA time zone by name; ValueError naming it when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (expected an IANA name such as Europe/London)"
        ) from None


def next_allowed(now: datetime, tz: ZoneInfo, window: QuietHours | None) -> datetime | None:
    """None if a message may go out at ``now``; else the (UTC) moment the recipient's quiet hours end."""
    if window is None:
        return None
    local = now.astimezone(tz)
    if not window.contains(local.time()):
        return None
    day = local.date()
    if window.start > window.end and local.time() >= window.start:
        day += timedelta(days=1)  # late evening: the window ends tomorrow morning
    # An end time that a DST change skips is read with the offset before the change (PEP 495).
    until = datetime.combine(day, window.end, tzinfo=tz).astimezone(UTC)
    return until if until > now else None
