"""The holidays page: the calendar in use (this year and next: statutory days off with their names, 调休
make-up workdays, whether the State Council's notice is known), the admins' overrides, and the chat's
three edits: set a day (休息/上班 with a note), remove an override, confirm a year.

Each edit is previewed (the day's kind before → after), then runs the chat's command
(`SetCalendarDay`, `RemoveCalendarDay`, `ConfirmCalendarYear`; audited "config_changed"). Rollback,
which the chat lacks, is `RollbackCalendar` (bot/console/admin_commands.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from aiohttp import web

from bot.console.admin_versions import SECTIONS, history
from bot.console.admin_web import (
    ADMIN_ROOT,
    FormError,
    Preview,
    Table,
    int_field,
    render,
    render_preview,
    run_as,
    runtime_of,
    saved_redirect,
)
from bot.console.auth import StaffSession
from bot.runtime import Runtime
from core.sla.admin import ConfirmCalendarYear, RemoveCalendarDay, SetCalendarDay
from core.sla.calendar import BusinessCalendar, DayKind, DayOverride
from core.sla.stored_config import CalendarConfig, build_calendar, load_calendar_config
from core.sla.versioned_saves import RollbackCalendar

SECTION = SECTIONS["holidays"]
NOTE_LIMIT = 40
OPERATIONS = {"set": "设置某天", "remove": "删除覆盖", "confirm_year": "确认全年安排"}
SHOWN_KINDS = (DayKind.HOLIDAY, DayKind.MAKEUP_WORKDAY, DayKind.FORCED_HOLIDAY, DayKind.FORCED_WORKDAY)


@dataclass(frozen=True, slots=True)
class SpecialDay:
    day: date
    kind: DayKind
    name: str

    @property
    def weekday(self) -> str:
        return "一二三四五六日"[self.day.weekday()]


@dataclass(frozen=True, slots=True)
class YearView:
    year: int
    known: bool
    confirmed: bool
    warning: str | None
    days: list[SpecialDay]


def year_view(calendar: BusinessCalendar, year: int) -> YearView:
    days = []
    day = date(year, 1, 1)
    while day.year == year:
        kind = calendar.day_kind(day)
        if kind in SHOWN_KINDS:
            days.append(SpecialDay(day, kind, calendar.day_name(day) or ""))
        day += timedelta(days=1)
    return YearView(year, calendar.schedule_known(year), year in calendar.confirmed_years,
                    calendar.schedule_warning(year), days)


def _day(form: Mapping[str, str]) -> date:
    raw = (form.get("day") or "").strip().replace("/", "-")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise FormError("day", f"无法识别的日期「{raw[:20]}」，例如 2027-02-05。") from None


def command_from_form(form: Mapping[str, str]) -> tuple[object, str]:
    """The chat command the form describes and a line saying what it does."""
    op = (form.get("op") or "").strip()
    if op == "set":
        day = _day(form)
        working = (form.get("working") or "").strip()
        if working not in {"0", "1"}:
            raise FormError("working", "请选择「休息」或「上班」。")
        note = (form.get("note") or "").strip()
        if len(note) > NOTE_LIMIT:
            raise FormError("note", f"备注最多 {NOTE_LIMIT} 个字。")
        kind = "上班" if working == "1" else "休息"
        return SetCalendarDay(day, working == "1", note), f"设置 {day.isoformat()} 为{kind}日 {note}".rstrip()
    if op == "remove":
        day = _day(form)
        return RemoveCalendarDay(day), f"删除 {day.isoformat()} 的覆盖"
    if op == "confirm_year":
        raw = (form.get("year") or "").strip().removesuffix("年")
        if not (raw.isdigit() and len(raw) == 4):
            raise FormError("year", f"请写明四位数的年份，收到「{raw[:10]}」。")
        return ConfirmCalendarYear(int(raw)), f"确认 {raw} 年放假调休安排"
    raise FormError("op", "请选择一种操作：" + "、".join(OPERATIONS.values()) + "。")


def check_year(year: int, current: int, field: str) -> None:
    """The core's range (core.sla.admin: last year to five years ahead), checked in the preview too."""
    if not current - 1 <= year <= current + 5:
        raise FormError(field, f"年份 {year} 超出可设置范围（{current - 1}–{current + 5}）。")


def _proposed(config: CalendarConfig, command: object) -> CalendarConfig:
    if isinstance(command, SetCalendarDay):
        return config.with_day(DayOverride(command.day, command.working, command.note))
    if isinstance(command, RemoveCalendarDay):
        if all(o.day != command.day for o in config.overrides):
            raise FormError("day", f"{command.day.isoformat()} 没有设置过覆盖。")
        return config.without_day(command.day)
    if isinstance(command, ConfirmCalendarYear):
        if command.year in config.confirmed_years:
            raise FormError("year", f"{command.year} 年的安排已经确认过了。")
        return config.with_confirmed_year(command.year)
    raise AssertionError(command)  # pragma: no cover - command_from_form returns only these


def _check_range(runtime: Runtime, command: object) -> None:
    current = runtime.clock.now().astimezone(runtime.service.config.timezone).year
    if isinstance(command, ConfirmCalendarYear):
        check_year(command.year, current, "year")
    elif isinstance(command, SetCalendarDay):
        check_year(command.day.year, current, "day")


async def _state(request: web.Request) -> tuple[int, CalendarConfig, BusinessCalendar]:
    runtime = runtime_of(request)
    config = runtime.service.config
    async with runtime.uow() as uow:
        version, stored = await load_calendar_config(uow)
    return version, stored, build_calendar(config.timezone, config.sla, stored)


async def page(request: web.Request, session: StaffSession, *, error: FormError | None = None,
               form: Mapping[str, str] | None = None, status: int = 200) -> web.Response:
    runtime = runtime_of(request)
    version, stored, calendar = await _state(request)
    async with runtime.uow() as uow:
        rows = await history(uow, SECTION, runtime.service.config.timezone)
    year = calendar.local(runtime.clock.now()).year
    return render(request, session, "console/admin_holidays.html", status=status, section=SECTION, version=version,
                  history=rows, error=error, values=dict(form or {}), calendar=calendar,
                  overrides=sorted(stored.overrides, key=lambda o: o.day),
                  years=[year_view(calendar, y) for y in (year, year + 1)], next_year=year + 1,
                  saved=request.query.get("saved"))


async def preview(request: web.Request, session: StaffSession, form: Mapping[str, str]) -> web.Response:
    runtime = runtime_of(request)
    version, stored, calendar = await _state(request)
    command, line = command_from_form(form)
    _check_range(runtime_of(request), command)
    proposed = _proposed(stored, command)
    after = build_calendar(runtime.service.config.timezone, runtime.service.config.sla, proposed)
    tables = []
    day = getattr(command, "day", None)
    if isinstance(day, date):
        tables.append(Table("这一天的安排", ["日期", "修改前", "修改后"], [[
            day.isoformat(), f"{calendar.day_kind(day)} {calendar.day_name(day) or ''}".rstrip(),
            f"{after.day_kind(day)} {after.day_name(day) or ''}".rstrip()]]))
    hidden = [(k, form.get(k, "")) for k in ("op", "day", "working", "note", "year")] + [("based_on", str(version))]
    return render_preview(request, session, SECTION.title, Preview(
        title=f"预览：{line}（当前版本 {version}）", action=f"{ADMIN_ROOT}holidays/save", hidden=hidden,
        lines=SECTION.diff(stored.to_dict(), proposed.to_dict()), tables=tables, back=f"{ADMIN_ROOT}holidays"))


async def save(request: web.Request, session: StaffSession, form: Mapping[str, str]) -> web.StreamResponse:
    version, stored, _calendar = await _state(request)
    command, _line = command_from_form(form)
    _check_range(runtime_of(request), command)
    _proposed(stored, command)
    if int_field(form, "based_on") != version:
        raise FormError("based_on", "节假日配置在您预览之后被修改过，请重新预览。", status=409)
    field = "year" if isinstance(command, ConfirmCalendarYear) else "day"
    return saved_redirect("holidays", await run_as(request, session.person, command, field=field))


async def rollback(request: web.Request, session: StaffSession, version: int, based_on: int) -> object:
    return await run_as(request, session.person, RollbackCalendar(version, based_on), field="version")
