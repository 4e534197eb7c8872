"""Business calendar: working hours, China's statutory holidays, 调休 make-up workdays, overrides.

Holidays and make-up workdays come from python-holidays (`holidays.China`), which carries the
State Council's yearly notice (国务院办公厅关于…部分节假日安排的通知) as static data. For a year
whose notice the package does not know yet, it still yields the statutory festival days (with
its own guessed 补假 days) but no make-up workdays; `schedule_known` / `coming_year_warning`
report that, and admins fill the gap with `DayOverride`s.

Every public method takes aware datetimes and returns aware UTC datetimes. Working hours are
wall-clock times in the tenant's zone; durations are real elapsed time.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import CalendarError
from core.settings import WorkingHours

DEFAULT_ZONE = "Asia/Shanghai"
_ONE_DAY = timedelta(days=1)
# A calendar without one working day in this many days is misconfigured (all overridden).
_MAX_SEARCH_DAYS = 3 * 366


class TimeBand(StrEnum):
    """The time-of-report dimension of the SLA matrix."""

    WORKING = "工作时间"
    OFF_HOURS = "非工作时间"  # a working day, outside working hours (night, lunch break)
    HOLIDAY = "节假日"  # a statutory day off, or a weekend day that is not a 调休 workday


class DayKind(StrEnum):
    WORKDAY = "工作日"
    MAKEUP_WORKDAY = "调休上班"  # a weekend day the State Council notice turns into a workday
    WEEKEND = "周末"
    HOLIDAY = "法定节假日"  # includes 调休 days off and 补假
    FORCED_WORKDAY = "指定工作日"  # admin override
    FORCED_HOLIDAY = "指定休息日"  # admin override

    @property
    def is_working(self) -> bool:
        return self in (DayKind.WORKDAY, DayKind.MAKEUP_WORKDAY, DayKind.FORCED_WORKDAY)


def require_aware(value: datetime, name: str = "时间") -> datetime:
    """Return `value` in UTC; refuse naive datetimes, whose zone would be a guess."""
    if not isinstance(value, datetime):
        raise CalendarError(f"{name}必须是 datetime，收到 {type(value).__name__}", value=repr(value))
    if value.tzinfo is None or value.utcoffset() is None:
        raise CalendarError(f"{name}缺少时区：{value.isoformat()}（请带上时区偏移，例如 +08:00）", value=str(value))
    return value.astimezone(UTC)


def parse_instant(text: str) -> datetime:
    """Parse ISO 8601 with an offset (e.g. `2026-10-09T17:50+08:00`) into an aware UTC datetime."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CalendarError(
            f"无法识别的时间：{text}（请使用 ISO 8601，例如 2026-10-09T17:50+08:00）", value=text
        ) from None
    return require_aware(value, "时间")


@dataclass(frozen=True, slots=True)
class DayOverride:
    """An admin's decision about one local date, e.g. from the State Council's notice."""

    day: date
    working: bool
    note: str = ""  # e.g. "国庆节" or "2027年通知:调休上班" or "工厂停产检修"


@dataclass(frozen=True, slots=True)
class _StatutoryYear:
    days_off: Mapping[date, str]  # statutory holidays, 补假 and 调休 days off, with Chinese names
    makeup_workdays: frozenset[date]  # weekend days that are working days (调休上班)
    notice_known: bool  # the package carries the State Council notice for this year


_CHINA = "holidays.countries.china"
_CHINA_LOCK = threading.Lock()


def _china() -> ModuleType:
    """python-holidays' China module, imported on first use and without the `holidays.countries` package.

    Idle processes need no holidays at all (the package and dateutil are ~3.6 MB of RSS), and that
    package's __init__ imports all ~250 countries (~8 MB more) when only China is used. The module
    is registered under its own name, so a later `import holidays.countries` reuses it.
    """
    with _CHINA_LOCK:
        module = sys.modules.get(_CHINA)
        if module is not None:
            return module
        import holidays  # the base classes china.py imports; its country registry stays lazy

        spec = importlib.util.spec_from_file_location(_CHINA, Path(holidays.__file__).parent / "countries" / "china.py")
        if spec is None or spec.loader is None:  # pragma: no cover - layout change in a future holidays release
            return importlib.import_module(_CHINA)
        module = importlib.util.module_from_spec(spec)
        sys.modules[_CHINA] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[_CHINA]
            raise
        return module


def _notice_years() -> frozenset[int]:
    # The years whose notice the package encodes as static substitutions. This is an internal
    # table of python-holidays, so it is only a second signal next to `weekend_workdays`.
    static: Any = getattr(_china(), "ChinaStaticHolidays", None)
    return frozenset(getattr(static, "special_public_holidays", {}))


@lru_cache(maxsize=256)
def _statutory_year(year: int) -> _StatutoryYear:
    # Populate the next year too: a notice may put a make-up workday into late December of the
    # year before the holiday it compensates (e.g. 2001-12-29 for the 2002 New Year).
    cn = _china().China(years=(year, year + 1), language="zh_CN")
    days_off = {d: str(name) for d, name in cn.items() if d.year == year}
    makeup = frozenset(d for d in cn.weekend_workdays if d.year == year)
    # Every notice since 2001 has had make-up workdays; the package has none for an unknown
    # year, even though it still lists that year's festival days. "Has any holiday" or "has
    # Spring Festival" would therefore wrongly call 2027 known in 2026.
    known = bool(makeup) or year in _notice_years()
    return _StatutoryYear(MappingProxyType(days_off), makeup, known)


def warm_up(day: date) -> None:
    """Build the statutory years a deadline from `day` reads. python-holidays builds a year in ~30 ms of
    pure Python: the service calls this in a thread at start-up, so that the first fault report after a
    start does not build it on the event loop (issue 24)."""
    for year in (day.year, day.year + 1):
        _statutory_year(year)


class BusinessCalendar:
    """One tenant's calendar. Immutable; build a new one when its settings change."""

    def __init__(
        self,
        *,
        zone: ZoneInfo | str = DEFAULT_ZONE,
        hours: WorkingHours | None = None,
        overrides: Iterable[DayOverride] = (),
        confirmed_years: Iterable[int] = (),
        weekend: Iterable[int] = (5, 6),
        warn_from_month: int = 11,
    ) -> None:
        """
        zone: the tenant's zone. hours: default 08:00-18:00 without a break (seed 001).
        overrides: admin decisions per local date; they beat the package.
        confirmed_years: years whose official schedule an admin has entered by overrides.
        weekend: ISO weekday numbers minus one (Monday=0), default Saturday and Sunday.
        warn_from_month: from this month on, warn when next year's schedule is unknown.
        """
        if isinstance(zone, str):
            try:
                zone = ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise CalendarError(f"未知时区：{zone}", zone=zone) from None
        if not 1 <= warn_from_month <= 12:
            raise CalendarError(f"提醒起始月份必须在 1-12 之间，收到 {warn_from_month}")
        self._zone = zone
        self._hours = hours or WorkingHours()
        self._periods = self._hours.periods
        by_day: dict[date, DayOverride] = {}
        for override in overrides:
            by_day[override.day] = override  # the later entry wins, like an edit
        self._overrides: Mapping[date, DayOverride] = MappingProxyType(by_day)
        self._confirmed_years = frozenset(confirmed_years)
        self._weekend = frozenset(weekend)
        self._warn_from_month = warn_from_month

    @property
    def zone(self) -> ZoneInfo:
        return self._zone

    @property
    def hours(self) -> WorkingHours:
        return self._hours

    @property
    def overrides(self) -> Mapping[date, DayOverride]:
        return self._overrides

    @property
    def confirmed_years(self) -> frozenset[int]:
        return self._confirmed_years

    def local(self, value: datetime) -> datetime:
        """`value` in the tenant's zone (for display)."""
        return require_aware(value).astimezone(self._zone)

    def local_date(self, value: datetime) -> date:
        return self.local(value).date()

    # --- days ---

    def day_kind(self, day: date) -> DayKind:
        override = self._overrides.get(day)
        if override is not None:
            return DayKind.FORCED_WORKDAY if override.working else DayKind.FORCED_HOLIDAY
        statutory = _statutory_year(day.year)
        if day in statutory.days_off:
            return DayKind.HOLIDAY
        if day.weekday() in self._weekend:
            return DayKind.MAKEUP_WORKDAY if day in statutory.makeup_workdays else DayKind.WEEKEND
        return DayKind.WORKDAY

    def is_working_day(self, day: date) -> bool:
        return self.day_kind(day).is_working

    def day_name(self, day: date) -> str | None:
        """The holiday's Chinese name or the override's note, if any."""
        override = self._overrides.get(day)
        if override is not None:
            return override.note or None
        return _statutory_year(day.year).days_off.get(day)

    def working_periods(self, day: date) -> list[tuple[datetime, datetime]]:
        """The working periods of a local date as UTC intervals; empty on a day off."""
        if not self.is_working_day(day):
            return []
        return [
            (
                datetime.combine(day, start, tzinfo=self._zone).astimezone(UTC),
                datetime.combine(day, end, tzinfo=self._zone).astimezone(UTC),
            )
            for start, end in self._periods
        ]

    # --- instants ---

    def is_business_time(self, value: datetime) -> bool:
        """True inside working hours of a working day (start inclusive, end exclusive)."""
        utc = require_aware(value)
        return any(start <= utc < end for start, end in self.working_periods(self.local_date(utc)))

    def time_band(self, value: datetime) -> TimeBand:
        utc = require_aware(value)
        if not self.is_working_day(self.local_date(utc)):
            return TimeBand.HOLIDAY
        return TimeBand.WORKING if self.is_business_time(utc) else TimeBand.OFF_HOURS

    def next_business_moment(self, value: datetime) -> datetime:
        """`value` itself during business time, else the start of the next working period."""
        return self.add_business_time(value, timedelta(0), snap=True)

    def add_business_time(self, start: datetime, delta: timedelta, *, snap: bool = False) -> datetime:
        """The instant when `delta` of business time has passed after `start`.

        A result that falls exactly on the end of a working period stays there (Friday 17:50
        plus 10 minutes is Friday 18:00, not Monday 08:00). With `delta` zero the result is
        `start` unless `snap` asks for the next business moment.
        """
        utc = require_aware(start, "开始时间")
        if delta < timedelta(0):
            raise CalendarError("工作时长不能为负数", delta=str(delta))
        if not delta and not snap:
            return utc
        remaining = delta
        day = self.local_date(utc)
        for _ in range(_MAX_SEARCH_DAYS):
            for period_start, period_end in self.working_periods(day):
                if period_end <= utc:
                    continue
                begin = max(period_start, utc)
                if remaining <= period_end - begin:
                    return begin + remaining
                remaining -= period_end - begin
            day += _ONE_DAY
        raise CalendarError(f"{_MAX_SEARCH_DAYS} 天内没有任何工作日，请检查节假日覆盖设置", start=utc.isoformat())

    def business_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Business time from `a` to `b` (negative when `b` is before `a`)."""
        first, second = require_aware(a), require_aware(b)
        if second < first:
            return -self.business_time_between(second, first)
        total = timedelta(0)
        day, last_day = self.local_date(first), self.local_date(second)
        while day <= last_day:
            for period_start, period_end in self.working_periods(day):
                overlap = min(period_end, second) - max(period_start, first)
                if overlap > timedelta(0):
                    total += overlap
            day += _ONE_DAY
        return total

    # --- knowledge of the official schedule ---

    def schedule_known(self, year: int) -> bool:
        """Whether the year's official holiday/调休 schedule is known (package or admin)."""
        return year in self._confirmed_years or _statutory_year(year).notice_known

    def schedule_warning(self, year: int) -> str | None:
        if self.schedule_known(year):
            return None
        return (
            f"{year}年的国务院放假调休安排尚未收录：节假日按法定节日推算，调休上班日缺失，"
            f"涉及{year}年的SLA截止时间可能不准。请管理员在通知发布后录入节假日覆盖，或升级 holidays 数据包。"
        )

    def coming_year_warning(self, now: datetime) -> str | None:
        """A Chinese warning for admins when this year's or (late in the year) next year's
        official schedule is unknown; None when all is well."""
        local_now = self.local(now)
        warnings = [self.schedule_warning(local_now.year)]
        if local_now.month >= self._warn_from_month:
            warnings.append(self.schedule_warning(local_now.year + 1))
        text = "\n".join(w for w in warnings if w)
        return text or None
