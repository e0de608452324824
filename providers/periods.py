"""Calendar periods of spending limits, in the organisation's time zone.

A period is [start, end) in UTC, computed from local calendar boundaries: local midnight of the
day, of the Monday of the week, of the first of the month. Local midnight is built as a wall
time and then converted, so a day is 23 or 25 hours long across a daylight-saving change, and a
midnight skipped by a change (clocks jumping from 00:00 to 01:00) starts the day at the jump.
`total` never ends and starts at the Unix epoch.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

DAY = "day"
WEEK = "week"
MONTH = "month"
TOTAL = "total"


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    # fold=0 picks the first of two midnights when clocks fall back over midnight, and for a
    # skipped midnight the offset before the jump, i.e. the instant the day really begins.
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def _first_days(period: str, today: date) -> tuple[date, date]:
    if period == DAY:
        return today, today + timedelta(days=1)
    if period == WEEK:
        monday = today - timedelta(days=today.weekday())
        return monday, monday + timedelta(days=7)
    if period == MONTH:
        first = today.replace(day=1)
        following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        return first, following
    raise ValueError(f"Unknown period {period!r}.")


def period_bounds(
    period: str, now: datetime, tz: ZoneInfo | str
) -> tuple[datetime, datetime | None]:
    """The UTC bounds [start, end) of the period containing `now`; `end` is None for total."""
    if period == TOTAL:
        return EPOCH, None
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    if now.tzinfo is None:
        raise ValueError("period_bounds needs an aware datetime.")
    first, following = _first_days(period, now.astimezone(zone).date())
    return _local_midnight(first, zone), _local_midnight(following, zone)
