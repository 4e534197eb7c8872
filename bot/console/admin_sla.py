"""The SLA matrix page: 27 cells (priority × impact × time band) as one table, each with its response
and resolution targets and its clock; a preview that shows the changed cells and, for a start time the
admin picks, the due times every priority × impact would get (business time, holidays, 调休 included).

Saving is `SaveSlaMatrix` (one version for the whole table, audited "config_changed" like `SLA 设置`);
rollback is the chat's `RollbackSla`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from bot.chat.sla import parse_minutes
from bot.console.admin_versions import SECTIONS, current_version, history
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
from core.errors import InvalidInput
from core.sla.admin import MAX_TARGET_MINUTES, RollbackSla
from core.sla.calendar import BusinessCalendar, TimeBand
from core.sla.matrix import ClockMode, Impact, Priority, SlaConfigError, SlaMatrix, explain, format_duration
from core.sla.stored_config import load_calendar
from core.sla.versioned_saves import SaveSlaMatrix, changed_cells

SECTION = SECTIONS["sla"]
PRIORITY_CODES = {Priority.URGENT: "urgent", Priority.NORMAL: "normal", Priority.CONSULT: "consult"}
IMPACT_CODES = {Impact.USER: "user", Impact.DEPARTMENT: "department", Impact.PLANT: "plant"}
BAND_CODES = {TimeBand.WORKING: "working", TimeBand.OFF_HOURS: "off_hours", TimeBand.HOLIDAY: "holiday"}
CLOCK_LABELS = {ClockMode.BUSINESS: "工作时间计时", ClockMode.WALL: "自然时间计时"}
LOCAL_INPUT = "%Y-%m-%dT%H:%M"


def cell_key(priority: Priority, impact: Impact, band: TimeBand) -> str:
    return f"{PRIORITY_CODES[priority]}.{IMPACT_CODES[impact]}.{BAND_CODES[band]}"


def _label_to_key() -> dict[str, str]:
    return {f"{p}×{i}×{b}": cell_key(p, i, b) for p in Priority for i in Impact for b in TimeBand}


def form_values(matrix: SlaMatrix) -> dict[str, str]:
    """The form's fields for a matrix: `<cell>.response`, `<cell>.resolution` (minutes), `<cell>.clock`."""
    values: dict[str, str] = {}
    for cell in matrix:
        key = cell_key(cell.priority, cell.impact, cell.band)
        values[f"{key}.response"] = f"{cell.response.total_seconds() / 60:g}"
        values[f"{key}.resolution"] = f"{cell.resolution.total_seconds() / 60:g}"
        values[f"{key}.clock"] = cell.clock.value
    return values


def _minutes(form: Mapping[str, str], name: str, label: str) -> float:
    raw = (form.get(name) or "").strip()
    if not raw:
        raise FormError(name, f"{label}不能为空。")
    try:
        value = parse_minutes(raw, label)  # the chat's reading: 30, 30分钟, 2小时, 1.5h
    except InvalidInput as error:
        raise FormError(name, error.user_message) from error
    if value <= 0:
        raise FormError(name, f"{label}必须是正的分钟数，收到 {value:g}。")
    if value > MAX_TARGET_MINUTES:
        raise FormError(name, f"{label}太长（{value:g} 分钟），最多 {MAX_TARGET_MINUTES} 分钟（60 天）。")
    return value


def matrix_from_form(form: Mapping[str, str]) -> SlaMatrix:
    """All 27 cells from the form. Raises FormError naming the first bad field."""
    cells: list[dict[str, Any]] = []
    for priority in Priority:
        for impact in Impact:
            for band in TimeBand:
                key = cell_key(priority, impact, band)
                label = f"{priority}×{impact}×{band} "
                clock = (form.get(f"{key}.clock") or "").strip()
                if clock not in {c.value for c in ClockMode}:
                    raise FormError(f"{key}.clock", f"{label}计时方式应为「工作时间计时」或「自然时间计时」。")
                cells.append({"priority": priority.value, "impact": impact.value, "band": band.value, "clock": clock,
                              "response_minutes": _minutes(form, f"{key}.response", label + "响应时限"),
                              "resolution_minutes": _minutes(form, f"{key}.resolution", label + "解决时限")})
    try:
        return SlaMatrix.from_dict({"cells": cells})
    except SlaConfigError as error:
        key = _label_to_key().get(str(error.data.get("cell", "")), "matrix")
        raise FormError(f"{key}.response" if key != "matrix" else key, error.user_message) from error


def _start(form: Mapping[str, str], calendar: BusinessCalendar, now: datetime) -> datetime:
    raw = (form.get("start") or "").strip()
    if not raw:
        return now
    try:
        local = datetime.strptime(raw[:16], LOCAL_INPUT)
    except ValueError:
        raise FormError("start", f"无法识别的开始时间「{raw[:30]}」，例如 2026-12-31T17:50。") from None
    return local.replace(tzinfo=calendar.zone)


def _local(iso: str) -> str:
    value = datetime.fromisoformat(iso)
    return f"{value:%m-%d %H:%M} 周{'一二三四五六日'[value.weekday()]}"


def due_table(matrix: SlaMatrix, proposed: SlaMatrix | None, calendar: BusinessCalendar, start: datetime,
              lead: Any) -> Table:
    """The deadlines a report at `start` gets for every priority × impact (current, and proposed if any)."""
    rows = []
    for priority in Priority:
        for impact in Impact:
            now = explain(priority, impact, start, calendar, matrix, reminder_lead=lead)
            row = [f"{priority}×{impact}", now["band"], _local(now["response_due"]), _local(now["resolution_due"])]
            if proposed is not None:
                new = explain(priority, impact, start, calendar, proposed, reminder_lead=lead)
                row += [_local(new[k]) + (" *" if new[k] != now[k] else "") for k in ("response_due", "resolution_due")]
            rows.append(row)
    headers = ["优先级×影响", "时段", "响应截止", "解决截止"]
    if proposed is not None:
        headers += ["修改后响应截止", "修改后解决截止"]
    when = start.astimezone(calendar.zone)
    return Table(f"业务时间试算：{when:%Y-%m-%d %H:%M}（{calendar.zone.key}，工作时间 {calendar.hours.describe()}）"
                 "报修的截止时间" + ("，* 为有变化" if proposed is not None else ""), headers, rows)


async def _context(request: web.Request) -> tuple[int, SlaMatrix, BusinessCalendar]:
    runtime = runtime_of(request)
    config = runtime.service.config
    async with runtime.uow() as uow:
        version, payload = await current_version(uow, SECTION)
        calendar = await load_calendar(uow, config.timezone, config.sla)
    return version, SlaMatrix.from_dict(payload), calendar


async def page(request: web.Request, session: StaffSession, *, error: FormError | None = None,
               form: Mapping[str, str] | None = None, status: int = 200) -> web.Response:
    runtime = runtime_of(request)
    version, matrix, calendar = await _context(request)
    async with runtime.uow() as uow:
        rows = await history(uow, SECTION, runtime.service.config.timezone)
    values = dict(form_values(matrix))
    if form is not None:
        values.update({k: v for k, v in form.items() if k in values or k == "start"})
    try:
        start = _start({"start": values.get("start", "")}, calendar, runtime.clock.now())
    except FormError:  # a bad start time next to another error: the table shows now
        start = runtime.clock.now()
    return render(request, session, "console/admin_sla.html", status=status, section=SECTION, version=version,
                  history=rows, error=error, values=values, matrix=matrix, priorities=list(Priority),
                  impacts=list(Impact), bands=list(TimeBand), cell_key=cell_key, clock_labels=CLOCK_LABELS,
                  format_duration=format_duration,
                  start_value=values.get("start") or start.astimezone(calendar.zone).strftime(LOCAL_INPUT),
                  dues=due_table(matrix, None, calendar, start, runtime.service.config.sla.reminder_lead),
                  saved=request.query.get("saved"))


async def preview(request: web.Request, session: StaffSession, form: Mapping[str, str]) -> web.Response:
    runtime = runtime_of(request)
    version, matrix, calendar = await _context(request)
    proposed = matrix_from_form(form)
    start = _start(form, calendar, runtime.clock.now())
    cells = changed_cells(matrix, proposed)
    hidden = [(k, v) for k, v in form_values(proposed).items()] + [("based_on", str(version)),
                                                                  ("start", form.get("start", ""))]
    return render_preview(request, session, SECTION.title, Preview(
        title=f"预览：SLA 矩阵（当前版本 {version}）", action=f"{ADMIN_ROOT}sla/save", hidden=hidden,
        lines=[c["text"] for c in cells],
        tables=[due_table(matrix, proposed, calendar, start, runtime.service.config.sla.reminder_lead)],
        blocked="" if cells else "没有修改任何单元格，无需保存。", back=f"{ADMIN_ROOT}sla",
        confirm_label=f"确认保存（将成为版本 {version + 1}）"))


async def save(request: web.Request, session: StaffSession, form: Mapping[str, str]) -> web.StreamResponse:
    proposed = matrix_from_form(form)
    based_on = int_field(form, "based_on")
    version = await run_as(request, session.person, SaveSlaMatrix(proposed.to_dict(), based_on), field="matrix")
    return saved_redirect("sla", version)


async def rollback_tables(request: web.Request, current: dict[str, Any], target: dict[str, Any]) -> list[Table]:
    """The rollback's business-time preview: a report now, under the current and the old matrix."""
    runtime = runtime_of(request)
    _version, _matrix, calendar = await _context(request)
    return [due_table(SlaMatrix.from_dict(current), SlaMatrix.from_dict(target), calendar, runtime.clock.now(),
                      runtime.service.config.sla.reminder_lead)]


async def rollback(request: web.Request, session: StaffSession, version: int, based_on: int) -> object:
    return await run_as(request, session.person, RollbackSla(version), field="version")
