"""When a recurring schedule fires: every N seconds from its start, or a cron rule on a local clock.

An interval counts real seconds from ``start_at``, whatever the time zone. A cron rule is read on
the wall clock of its time zone, and each local slot fires once:

- a local time that happens twice (clocks go back) fires at its first occurrence only;
- a local time that does not happen (clocks go forward) fires at the moment the clock jumps over
  it; several slots of one skipped hour (``*/15 * * * *``) fire there once, together.

A rule must fire within the horizon of client times (core/engine/timebounds.py): ``0 0 31 2 *`` (31
February) never does, and is refused when the schedule is created or changed.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter

from core.engine.job_types import FieldError
from core.engine.timebounds import HORIZON, HORIZON_TEXT, zone_named
from core.errors import NoNextSlot

#: Candidate local slots looked at before giving up on finding one after now: a safety net, as the
#: search starts where the first candidate is already after now.
MAX_CANDIDATES = 1000


def check_rule(
    every_seconds: int | None,
    cron: str | None,
    timezone: str,
    start_at: datetime | None = None,
    now: datetime | None = None,
) -> list[FieldError]:
    """Every reason the rule cannot be stored: not exactly one of interval and cron, a cron that is
    not one or never fires within the horizon, a time zone that is not one."""
    errors = []
    if (every_seconds is None) == (cron is None):
        errors.append(FieldError("every_seconds", "give exactly one of every_seconds and cron"))
    zone: ZoneInfo | None = None
    try:
        zone = zone_named(timezone)
    except ValueError as exc:
        errors.append(FieldError("timezone", str(exc)))
    if cron is None:
        return errors
    if not _valid_cron(cron):
        errors.append(FieldError("cron", f"not a valid cron expression: {cron!r}"))
    elif zone is not None:
        now = now or datetime.now(UTC)
        after = max(now, start_at or now)
        try:
            first = _cron_after(cron, zone, after)
        except NoNextSlot:
            first = None
        if first is None or first > after + HORIZON:
            errors.append(
                FieldError("cron", f"{cron!r} never fires within {HORIZON_TEXT} (e.g. 31 February)")
            )
    return errors


def _valid_cron(cron: str) -> bool:
    try:
        return bool(croniter.is_valid(cron))
    except (CroniterError, ValueError, TypeError, KeyError, IndexError, OverflowError):
        return False


def next_slot(
    every_seconds: int | None, cron: str | None, timezone: str, start_at: datetime, now: datetime
) -> datetime:
    """The first slot strictly after ``now`` (or ``start_at`` itself while it is still ahead), in UTC.

    NoNextSlot when the rule yields none; ValueError when the time zone is no longer known.
    """
    if start_at > now:
        if every_seconds is not None:
            return start_at
        now = start_at - timedelta(microseconds=1)
    try:
        if every_seconds is not None:
            periods = int((now - start_at).total_seconds() // every_seconds) + 1
            return start_at + timedelta(seconds=periods * every_seconds)
    except OverflowError:
        raise NoNextSlot(f"every {every_seconds} s has no slot after {now.isoformat()}") from None
    if cron is None:
        raise NoNextSlot("the schedule has neither every_seconds nor cron")
    return _cron_after(cron, zone_named(timezone), now)


def _cron_after(cron: str, zone: ZoneInfo, now: datetime) -> datetime:
    """The first local slot of ``cron`` whose first occurrence is after ``now``, as a UTC instant."""
    local = now.astimezone(zone)
    start = local.replace(tzinfo=None)
    if local.fold:
        # The second pass of an hour a DST change repeats: its slots fired in the first pass, so look
        # from the end of the repeated hour (found from the instant the clock went back).
        repeat = (local.replace(fold=0).utcoffset() or timedelta()) - (local.utcoffset() or timedelta())
        went_back = _jump_within(now - repeat, now, zone)
        start = went_back.astimezone(zone).replace(tzinfo=None) + repeat - timedelta(microseconds=1)
    try:
        # A naive start: croniter steps the wall clock with no zone, so no DST rule of its own applies.
        candidates = croniter(cron, start)
        for _ in range(MAX_CANDIDATES):
            instant = _first_instant(candidates.get_next(datetime), zone)
            if instant > now:
                return instant
    except (CroniterError, OverflowError, ValueError) as exc:
        raise NoNextSlot(f"{cron!r} has no slot after {now.isoformat()}: {exc}") from None
    raise NoNextSlot(f"{cron!r} has no slot after {now.isoformat()} in {MAX_CANDIDATES} tries")


def _first_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant a naive local time first happens; for one skipped by a DST jump, the jump."""
    instant = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant  # fold=0 is the earlier of a repeated time's two occurrences
    return _jump_within(wall.replace(tzinfo=zone, fold=1).astimezone(UTC), instant, zone)


def _jump_within(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The instant of the offset change between ``before`` (old offset) and ``after`` (new one)."""
    old = before.astimezone(zone).utcoffset()
    lo, hi = math.floor(before.timestamp()), math.ceil(after.timestamp())
    while hi - lo > 1:  # offsets change on whole seconds
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == old:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)
