"""Business calendar: hours, China's holidays and 调休 from python-holidays, overrides, warnings."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest

from core.errors import InvalidInput
from core.sla.calendar import (
    BusinessCalendar,
    CalendarError,
    DayKind,
    DayOverride,
    TimeBand,
    WorkingHours,
    parse_instant,
)

SH = ZoneInfo("Asia/Shanghai")


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)


def local(cal: BusinessCalendar, value: datetime) -> datetime:
    return value.astimezone(cal.zone)


@pytest.fixture
def cal() -> BusinessCalendar:
    return BusinessCalendar()


@pytest.fixture
def lunch_cal() -> BusinessCalendar:
    return BusinessCalendar(hours=WorkingHours.parse("08:00-18:00", lunch="12:00-13:00"))


# --- the package's China data, as this project relies on it ---


def test_2026_national_day_schedule_as_the_state_council_published_it(cal: BusinessCalendar) -> None:
    # 国庆节、中秋节：10月1日至7日放假调休，共7天；9月20日（周日）、10月10日（周六）上班。
    for day in range(1, 8):
        assert not cal.is_working_day(date(2026, 10, day)), day
    assert cal.day_kind(date(2026, 10, 1)) is DayKind.HOLIDAY
    assert cal.day_name(date(2026, 10, 1)) == "国庆节"
    assert cal.day_kind(date(2026, 9, 20)) is DayKind.MAKEUP_WORKDAY
    assert cal.day_kind(date(2026, 10, 10)) is DayKind.MAKEUP_WORKDAY
    assert cal.is_working_day(date(2026, 10, 8))
    assert cal.day_kind(date(2026, 10, 11)) is DayKind.WEEKEND


def test_2026_spring_festival_schedule(cal: BusinessCalendar) -> None:
    # 春节：2月15日（腊月二十八）至23日放假调休，共9天；2月14日（周六）、2月28日（周六）上班。
    for day in range(15, 24):
        assert not cal.is_working_day(date(2026, 2, day)), day
    assert cal.is_working_day(date(2026, 2, 13))
    assert cal.is_working_day(date(2026, 2, 24))
    assert cal.day_kind(date(2026, 2, 14)) is DayKind.MAKEUP_WORKDAY
    assert cal.day_kind(date(2026, 2, 28)) is DayKind.MAKEUP_WORKDAY


def test_working_days_agree_with_the_package_for_every_day_of_2025_and_2026(cal: BusinessCalendar) -> None:
    cn = holidays.China(years=(2025, 2026))
    day = date(2025, 1, 1)
    while day.year < 2027:
        assert cal.is_working_day(day) == cn.is_working_day(day), day
        day += timedelta(days=1)


# --- bands and instants ---


def test_time_band_on_a_normal_friday(cal: BusinessCalendar) -> None:
    assert cal.time_band(at(2026, 11, 20, 7, 59)) is TimeBand.OFF_HOURS
    assert cal.time_band(at(2026, 11, 20, 8, 0)) is TimeBand.WORKING
    assert cal.time_band(at(2026, 11, 20, 17, 59)) is TimeBand.WORKING
    assert cal.time_band(at(2026, 11, 20, 18, 0)) is TimeBand.OFF_HOURS  # end is exclusive
    assert cal.time_band(at(2026, 11, 21, 10, 0)) is TimeBand.HOLIDAY  # plain Saturday


def test_time_band_uses_the_tenant_zone_not_utc(cal: BusinessCalendar) -> None:
    # 2026-10-09T23:30Z is Saturday 2026-10-10 07:30 in Shanghai: a 调休 workday before hours.
    assert cal.time_band(datetime(2026, 10, 9, 23, 30, tzinfo=UTC)) is TimeBand.OFF_HOURS
    assert cal.time_band(datetime(2026, 10, 10, 0, 30, tzinfo=UTC)) is TimeBand.WORKING
    # And 2026-12-31T16:30Z is New Year's Day 00:30 local.
    assert cal.time_band(datetime(2026, 12, 31, 16, 30, tzinfo=UTC)) is TimeBand.HOLIDAY


def test_national_day_week_is_holiday_band(cal: BusinessCalendar) -> None:
    assert cal.time_band(at(2026, 10, 2, 10)) is TimeBand.HOLIDAY
    assert cal.time_band(at(2026, 10, 5, 10)) is TimeBand.HOLIDAY  # Monday 补假
    assert cal.time_band(at(2026, 10, 8, 10)) is TimeBand.WORKING


def test_makeup_saturday_is_working_time(cal: BusinessCalendar) -> None:
    assert cal.time_band(at(2026, 10, 10, 10)) is TimeBand.WORKING
    assert cal.time_band(at(2026, 10, 10, 19)) is TimeBand.OFF_HOURS
    # Friday 17:00 + 2 business hours lands on the 调休 Saturday, not on Monday.
    due = cal.add_business_time(at(2026, 10, 9, 17), timedelta(hours=2))
    assert local(cal, due) == at(2026, 10, 10, 9)


def test_lunch_break(lunch_cal: BusinessCalendar) -> None:
    assert lunch_cal.time_band(at(2026, 11, 18, 12, 30)) is TimeBand.OFF_HOURS
    assert not lunch_cal.is_business_time(at(2026, 11, 18, 12, 0))
    assert lunch_cal.is_business_time(at(2026, 11, 18, 13, 0))
    due = lunch_cal.add_business_time(at(2026, 11, 18, 11, 30), timedelta(hours=1))
    assert local(lunch_cal, due) == at(2026, 11, 18, 13, 30)
    # A ticket during lunch starts counting at 13:00.
    assert local(lunch_cal, lunch_cal.next_business_moment(at(2026, 11, 18, 12, 10))) == at(2026, 11, 18, 13)
    assert lunch_cal.business_time_between(at(2026, 11, 18, 11), at(2026, 11, 18, 14)) == timedelta(hours=2)
    assert lunch_cal.hours.describe() == "08:00-18:00（午休 12:00-13:00）"


def test_add_business_time_over_a_weekend_and_the_exact_end_of_day(cal: BusinessCalendar) -> None:
    friday = at(2026, 11, 20, 17, 50)
    assert local(cal, cal.add_business_time(friday, timedelta(minutes=10))) == at(2026, 11, 20, 18)
    assert local(cal, cal.add_business_time(friday, timedelta(minutes=11))) == at(2026, 11, 23, 8, 1)
    assert local(cal, cal.add_business_time(friday, timedelta(hours=24))) == at(2026, 11, 25, 11, 50)
    # From a Saturday the clock starts on Monday morning.
    assert local(cal, cal.add_business_time(at(2026, 11, 21, 15), timedelta(hours=1))) == at(2026, 11, 23, 9)


def test_add_business_time_skips_the_national_day_week(cal: BusinessCalendar) -> None:
    due = cal.add_business_time(at(2026, 9, 30, 17), timedelta(hours=2))
    assert local(cal, due) == at(2026, 10, 8, 9)
    assert cal.business_time_between(at(2026, 9, 30, 18), at(2026, 10, 8, 8)) == timedelta(0)


def test_business_time_between_is_the_inverse_of_add(lunch_cal: BusinessCalendar) -> None:
    start = at(2026, 9, 18, 16, 20)  # Friday before the 9-20 调休 Sunday
    for minutes in (1, 59, 100, 600, 2000, 10_000):
        end = lunch_cal.add_business_time(start, timedelta(minutes=minutes))
        assert lunch_cal.business_time_between(start, end) == timedelta(minutes=minutes)
        assert lunch_cal.business_time_between(end, start) == -timedelta(minutes=minutes)


def test_results_are_utc(cal: BusinessCalendar) -> None:
    due = cal.add_business_time(at(2026, 11, 20, 9), timedelta(hours=1))
    assert due.tzinfo is UTC
    assert due == datetime(2026, 11, 20, 2, tzinfo=UTC)


def test_year_boundary(cal: BusinessCalendar) -> None:
    # Thursday 2026-12-31 17:00 + 3h: 1h that evening, New Year's Day (Fri) and the weekend
    # are off, Monday 2027-01-04 08:00 + 2h.
    due = cal.add_business_time(at(2026, 12, 31, 17), timedelta(hours=3))
    assert local(cal, due) == at(2027, 1, 4, 10)
    assert cal.day_kind(date(2027, 1, 1)) is DayKind.HOLIDAY


# --- overrides and schedule knowledge ---


def test_overrides_beat_the_package() -> None:
    cal = BusinessCalendar(
        overrides=[
            DayOverride(date(2026, 11, 23), working=False, note="停产检修"),
            DayOverride(date(2026, 11, 21), working=True, note="加班日"),
            DayOverride(date(2026, 10, 10), working=False),  # undo a 调休 Saturday
        ]
    )
    assert cal.day_kind(date(2026, 11, 23)) is DayKind.FORCED_HOLIDAY
    assert cal.day_name(date(2026, 11, 23)) == "停产检修"
    assert cal.time_band(at(2026, 11, 23, 10)) is TimeBand.HOLIDAY
    assert cal.time_band(at(2026, 11, 21, 10)) is TimeBand.WORKING
    assert cal.time_band(at(2026, 10, 10, 10)) is TimeBand.HOLIDAY
    # Saturday is now a workday and Monday is not: Friday 17:50 + 1h lands on Saturday 08:50,
    # and Saturday 17:30 + 1h skips the Monday to Tuesday 08:30.
    assert local(cal, cal.add_business_time(at(2026, 11, 20, 17, 50), timedelta(hours=1))) == at(2026, 11, 21, 8, 50)
    assert local(cal, cal.add_business_time(at(2026, 11, 21, 17, 30), timedelta(hours=1))) == at(2026, 11, 24, 8, 30)


def test_schedule_known_from_the_package_and_from_admins() -> None:
    cal = BusinessCalendar()
    assert cal.schedule_known(2025)
    assert cal.schedule_known(2026)
    # Far future: the package has the festivals by rule but no notice (no 调休 data).
    assert holidays.China(years=2040)  # festival days exist, which is why that is not the test
    assert not cal.schedule_known(2040)
    assert BusinessCalendar(confirmed_years=[2040]).schedule_known(2040)


def test_coming_year_warning_follows_schedule_knowledge() -> None:
    cal = BusinessCalendar()
    # Whatever the installed package knows about 2027, the warning must agree with it.
    warning = cal.coming_year_warning(at(2026, 11, 21, 10))
    assert (warning is None) == cal.schedule_known(2027)
    if warning:
        assert "2027年" in warning and "调休" in warning
    # Before November nobody is warned about next year.
    assert cal.coming_year_warning(at(2026, 6, 1, 10)) is None


def test_coming_year_warning_names_the_missing_year() -> None:
    cal = BusinessCalendar(confirmed_years=[2039])
    assert cal.coming_year_warning(datetime(2039, 10, 31, 12, tzinfo=SH)) is None
    warning = cal.coming_year_warning(datetime(2039, 12, 1, 12, tzinfo=SH))
    assert warning is not None and "2040年" in warning and "2039年" not in warning
    # Once admins have entered 2040 the warning is gone.
    done = BusinessCalendar(confirmed_years=[2039, 2040])
    assert done.coming_year_warning(datetime(2039, 12, 1, 12, tzinfo=SH)) is None
    # An unknown current year is reported any time of the year.
    assert "2041年" in (BusinessCalendar().coming_year_warning(datetime(2041, 3, 1, tzinfo=SH)) or "")


# --- input validation ---


def test_naive_datetimes_are_rejected(cal: BusinessCalendar) -> None:
    naive = datetime(2026, 11, 20, 17, 50)
    for call in (
        lambda: cal.time_band(naive),
        lambda: cal.is_business_time(naive),
        lambda: cal.add_business_time(naive, timedelta(hours=1)),
        lambda: cal.business_time_between(naive, at(2026, 11, 21)),
    ):
        with pytest.raises(CalendarError) as info:
            call()
        assert "时区" in info.value.user_message
    with pytest.raises(InvalidInput):
        parse_instant("2026-11-20T17:50")
    assert parse_instant("2026-11-20T17:50+08:00") == datetime(2026, 11, 20, 9, 50, tzinfo=UTC)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(CalendarError):
        WorkingHours(time(18), time(8))
    with pytest.raises(CalendarError):
        WorkingHours.parse("08:00-18:00", lunch="07:00-09:00")
    with pytest.raises(CalendarError):
        WorkingHours(time(8), time(18), ((time(12), time(13)), (time(12, 30), time(14))))
    with pytest.raises(CalendarError):
        BusinessCalendar(zone="Mars/Olympus")
    with pytest.raises(CalendarError):
        BusinessCalendar().add_business_time(at(2026, 11, 20, 9), -timedelta(minutes=1))


def test_everything_overridden_to_holidays_does_not_loop_forever() -> None:
    start = date(2026, 11, 20)
    cal = BusinessCalendar(overrides=[DayOverride(start + timedelta(days=n), working=False) for n in range(1200)])
    with pytest.raises(CalendarError):
        cal.add_business_time(at(2026, 11, 20, 9), timedelta(hours=1))


def test_other_zones_and_hours() -> None:
    cal = BusinessCalendar(zone="UTC", hours=WorkingHours.parse("09:00-17:00"))
    start = datetime(2026, 11, 20, 16, 30, tzinfo=UTC)  # Friday
    assert cal.add_business_time(start, timedelta(hours=1)) == datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
