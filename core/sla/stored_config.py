"""The stored SLA matrix and holiday overrides (versioned configuration) and the calendar they make.

Kind "sla": `SlaMatrix.to_dict()`; no stored version means the shipped defaults (version 0).
Kind "calendar": {"overrides": [{"day", "working", "note"}], "confirmed_years": [...]}.
Every service instance and the CLI read them the same way, so `ticketbot sla explain` and the
deadlines on tickets agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from core.errors import InvalidInput
from core.repository import UnitOfWork
from core.settings import SlaSettings
from core.sla.calendar import BusinessCalendar, DayOverride
from core.sla.matrix import SlaMatrix

SLA_KIND = "sla"
CALENDAR_KIND = "calendar"


@dataclass(frozen=True, slots=True)
class CalendarConfig:
    overrides: tuple[DayOverride, ...] = ()
    confirmed_years: frozenset[int] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        return {
            "overrides": [
                {"day": o.day.isoformat(), "working": o.working, "note": o.note}
                for o in sorted(self.overrides, key=lambda o: o.day)
            ],
            "confirmed_years": sorted(self.confirmed_years),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CalendarConfig:
        try:
            overrides = tuple(
                DayOverride(date.fromisoformat(o["day"]), bool(o["working"]), str(o.get("note", "")))
                for o in data.get("overrides", [])
            )
            years = frozenset(int(y) for y in data.get("confirmed_years", []))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"节假日配置格式错误：{exc}") from None
        return cls(overrides, years)

    def with_day(self, override: DayOverride) -> CalendarConfig:
        kept = tuple(o for o in self.overrides if o.day != override.day)
        return CalendarConfig((*kept, override), self.confirmed_years)

    def without_day(self, day: date) -> CalendarConfig:
        return CalendarConfig(tuple(o for o in self.overrides if o.day != day), self.confirmed_years)

    def with_confirmed_year(self, year: int) -> CalendarConfig:
        return CalendarConfig(self.overrides, self.confirmed_years | {year})


# Parsed configuration, reused while the stored payload is unchanged: parsing the matrix and building a
# calendar (python-holidays) cost milliseconds, and every new ticket needs both. Keyed by the payload itself
# (not only the version number): several databases, e.g. in tests, can hold different payloads per version.
# Values are immutable (SlaMatrix, BusinessCalendar), so sharing them is safe.
_CACHE_LIMIT = 32
_matrix_cache: dict[int, tuple[dict[str, Any], SlaMatrix]] = {}
_calendar_cache: dict[tuple[Any, ...], tuple[dict[str, Any] | None, BusinessCalendar]] = {}


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value


async def load_matrix(uow: UnitOfWork) -> tuple[int, SlaMatrix]:
    return matrix_from(await uow.latest_config(SLA_KIND))


def matrix_from(stored: tuple[int, dict[str, Any]] | None) -> tuple[int, SlaMatrix]:
    """The matrix of a stored SLA_KIND version (None: the shipped default)."""
    version, payload = stored if stored is not None else (0, None)
    cached = _matrix_cache.get(version)
    if cached is not None and cached[0] == payload:
        return version, cached[1]
    matrix = SlaMatrix.default() if payload is None else SlaMatrix.from_dict(payload)
    _remember(_matrix_cache, version, (payload, matrix))
    return version, matrix


async def load_calendar_config(uow: UnitOfWork) -> tuple[int, CalendarConfig]:
    stored = await uow.latest_config(CALENDAR_KIND)
    if stored is None:
        return 0, CalendarConfig()
    return stored[0], CalendarConfig.from_dict(stored[1])


def build_calendar(zone: ZoneInfo, settings: SlaSettings, config: CalendarConfig) -> BusinessCalendar:
    return BusinessCalendar(zone=zone, hours=settings.hours, overrides=config.overrides,
                            confirmed_years=config.confirmed_years)


async def load_calendar(uow: UnitOfWork, zone: ZoneInfo, settings: SlaSettings) -> BusinessCalendar:
    return calendar_from(await uow.latest_config(CALENDAR_KIND), zone, settings)


def calendar_from(stored: tuple[int, dict[str, Any]] | None, zone: ZoneInfo, settings: SlaSettings) -> BusinessCalendar:
    """The business calendar of a stored CALENDAR_KIND version (None: the holidays alone)."""
    version, payload = stored if stored is not None else (0, None)
    key = (version, zone, settings.hours)
    cached = _calendar_cache.get(key)
    if cached is not None and cached[0] == payload:
        return cached[1]
    config = CalendarConfig() if payload is None else CalendarConfig.from_dict(payload)
    calendar = build_calendar(zone, settings, config)
    _remember(_calendar_cache, key, (payload, calendar))
    return calendar
