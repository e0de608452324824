"""Calendar periods of spending limits in the organisation's time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.periods import EPOCH, period_bounds

PARIS = ZoneInfo("Europe/Paris")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_day_starts_at_local_midnight_not_utc_midnight() -> None:
    # 23:30 UTC on 14 June is already 15 June in Paris (UTC+2).
    start, end = period_bounds("day", utc(2025, 6, 14, 23, 30), PARIS)
    assert start == utc(2025, 6, 14, 22, 0)
    assert end == utc(2025, 6, 15, 22, 0)


def test_day_rolls_over_at_local_midnight() -> None:
    before = period_bounds("day", utc(2025, 6, 14, 21, 59, 59), "Europe/Paris")
    after = period_bounds("day", utc(2025, 6, 14, 22, 0), "Europe/Paris")
    assert before[1] == after[0] == utc(2025, 6, 14, 22, 0)


def test_spring_forward_day_is_23_hours() -> None:
    start, end = period_bounds("day", utc(2025, 3, 30, 12), PARIS)
    assert start == utc(2025, 3, 29, 23)  # midnight at UTC+1
    assert end == utc(2025, 3, 30, 22)  # next midnight at UTC+2
    assert end - start == timedelta(hours=23)


def test_fall_back_day_is_25_hours() -> None:
    start, end = period_bounds("day", utc(2025, 10, 26, 12), PARIS)
    assert end - start == timedelta(hours=25)


def test_skipped_midnight_starts_the_day_at_the_jump() -> None:
    # Santiago springs forward at 00:00 → 01:00 on 7 September 2025: that midnight never exists.
    start, end = period_bounds("day", utc(2025, 9, 7, 12), "America/Santiago")
    assert start == utc(2025, 9, 7, 4)  # 00:00 at -04 == 01:00 at -03
    assert start.astimezone(ZoneInfo("America/Santiago")).hour == 1
    assert end - start == timedelta(hours=23)


def test_week_starts_on_monday_in_local_time() -> None:
    # Sunday 23:30 in New York is Monday 03:30 UTC: still the week that began the Monday before.
    start, end = period_bounds("week", utc(2025, 3, 17, 3, 30), "America/New_York")
    assert start == utc(2025, 3, 10, 4)  # Monday 10 March, 00:00 EDT
    assert end == utc(2025, 3, 17, 4)
    assert start.astimezone(ZoneInfo("America/New_York")).weekday() == 0


def test_week_across_dst_change_is_one_hour_short() -> None:
    start, end = period_bounds("week", utc(2025, 3, 30, 12), PARIS)
    assert end - start == timedelta(days=7, hours=-1)


def test_month_end_in_a_zone_ahead_of_utc() -> None:
    # 31 January 23:30 UTC is 1 February in Paris: February's period.
    start, end = period_bounds("month", utc(2025, 1, 31, 23, 30), PARIS)
    assert start == utc(2025, 1, 31, 23)
    assert end == utc(2025, 2, 28, 23)


def test_month_end_in_a_zone_behind_utc() -> None:
    # 1 March 03:00 UTC is still 28 February in Los Angeles.
    start, end = period_bounds("month", utc(2025, 3, 1, 3), "America/Los_Angeles")
    assert start == utc(2025, 2, 1, 8)
    assert end == utc(2025, 3, 1, 8)


def test_december_rolls_into_next_year() -> None:
    start, end = period_bounds("month", utc(2025, 12, 31, 12), "UTC")
    assert (start, end) == (utc(2025, 12, 1), utc(2026, 1, 1))


def test_leap_february() -> None:
    start, end = period_bounds("month", utc(2024, 2, 29, 12), "UTC")
    assert end - start == timedelta(days=29)


def test_total_never_ends() -> None:
    assert period_bounds("total", utc(2025, 5, 5), PARIS) == (EPOCH, None)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError):
        period_bounds("day", datetime(2025, 1, 1), PARIS)


ZONES = st.sampled_from(
    ["UTC", "Europe/Paris", "America/New_York", "America/Santiago", "Australia/Lord_Howe"]
)
INSTANTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
)


@given(period=st.sampled_from(["day", "week", "month"]), now=INSTANTS, zone=ZONES)
def test_every_instant_falls_in_its_period_and_periods_tile(period, now, zone) -> None:
    start, end = period_bounds(period, now, zone)
    assert start <= now < end
    assert period_bounds(period, end, zone)[0] == end
    assert period_bounds(period, start - timedelta(microseconds=1), zone)[1] == start
