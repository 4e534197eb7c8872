"""The SLA matrix (priority × impact × time band = 27 cells) and the deadlines it yields.

`deadline_for` is the one computation behind ticket deadlines, timers and
`ticketbot sla explain`; `explain` / `explain_text` render it for the CLI and the bot.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from importlib import resources
from itertools import product
from typing import Any, TypeVar

from core.errors import InvalidInput
from core.settings import DEFAULT_REMINDER_LEAD
from core.sla.calendar import BusinessCalendar, TimeBand, require_aware

__all__ = [
    "DEFAULT_PAUSING_STATES",
    "DEFAULT_REMINDER_LEAD",
    "ClockMode",
    "Impact",
    "Pause",
    "Priority",
    "SlaCell",
    "SlaConfigError",
    "SlaDeadlines",
    "SlaMatrix",
    "TimeBand",
    "deadline_for",
    "due_with_pauses",
    "explain",
    "explain_text",
    "format_duration",
    "parse_band",
    "pauses_from_states",
    "reminder_at",
    "resolution_due_with_pauses",
    "running_time",
]

MATRIX_FORMAT = "ticketbot.sla_matrix/1"
# Waiting on someone outside the team stops the clock (Zammad's "pause by state"). Both the
# state codes of core.model.TicketStatus and the Chinese names are accepted.
DEFAULT_PAUSING_STATES = frozenset(
    {"waiting_parts", "waiting_customer_plan", "等待备件", "等待客户确认", "等待客户确认方案"}
)


_E = TypeVar("_E", bound=StrEnum)


class SlaConfigError(InvalidInput):
    """An SLA matrix (or one of its cells) is incomplete or invalid."""


def _normalize(text: str) -> str:
    # "全厂·产线停机", "全厂 / 产线停机" and "line-down" compare equal to their bare forms.
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def _parse_choice(kind: type[_E], text: str | _E, aliases: Mapping[str, _E], what: str) -> _E:
    if isinstance(text, kind):
        return text
    if isinstance(text, str):
        found = aliases.get(_normalize(text))
        if found is not None:
            return found
    options = " / ".join(member.value for member in kind)
    raise InvalidInput(f"无法识别的{what}「{text}」，可选：{options}", value=str(text), field=what)


class Priority(StrEnum):
    URGENT = "紧急"
    NORMAL = "常规"
    CONSULT = "咨询"

    @classmethod
    def parse(cls, text: str | Priority) -> Priority:
        """Chinese names and English aliases: urgent/normal/consult."""
        return _parse_choice(cls, text, _PRIORITY_ALIASES, "优先级")


class Impact(StrEnum):
    USER = "单用户"
    DEPARTMENT = "部门"
    PLANT = "全厂"  # 全厂·产线停机

    @classmethod
    def parse(cls, text: str | Impact) -> Impact:
        """Chinese names (全厂·产线停机 and 产线停机 mean 全厂) and English aliases: user/department/plant."""
        return _parse_choice(cls, text, _IMPACT_ALIASES, "影响范围")


class ClockMode(StrEnum):
    BUSINESS = "business"  # counts only working hours of working days
    WALL = "wall"  # counts every minute

    @classmethod
    def parse(cls, text: str | ClockMode) -> ClockMode:
        return _parse_choice(cls, text, _CLOCK_ALIASES, "计时方式")

    @property
    def label(self) -> str:
        return "工作时间计时" if self is ClockMode.BUSINESS else "自然时间计时"


def parse_band(text: str | TimeBand) -> TimeBand:
    return _parse_choice(TimeBand, text, _BAND_ALIASES, "时段")


def _aliases(table: Mapping[_E, Iterable[str]]) -> dict[str, _E]:
    return {_normalize(name): member for member, names in table.items() for name in (member.value, *names)}


_PRIORITY_ALIASES = _aliases(
    {
        Priority.URGENT: ("urgent", "high", "p1", "加急", "紧急工单"),
        Priority.NORMAL: ("normal", "regular", "medium", "p2", "普通", "一般"),
        Priority.CONSULT: ("consult", "consultation", "question", "inquiry", "low", "p3", "咨询类"),
    }
)
_IMPACT_ALIASES = _aliases(
    {
        Impact.USER: ("user", "single user", "single_user", "individual", "单人", "个人"),
        Impact.DEPARTMENT: ("department", "dept", "team", "部门级", "科室"),
        Impact.PLANT: ("plant", "factory", "plant-wide", "line down", "line_stop", "全厂·产线停机", "产线停机", "停机"),
    }
)
_CLOCK_ALIASES = _aliases(
    {ClockMode.BUSINESS: ("工作时间计时", "工作时间"), ClockMode.WALL: ("自然时间计时", "自然时间", "挂钟", "24x7")}
)
_BAND_ALIASES = _aliases(
    {
        TimeBand.WORKING: ("working", "business", "work hours", "business hours"),
        TimeBand.OFF_HOURS: ("off hours", "off_hours", "after hours", "night", "非工作时段", "下班时间"),
        TimeBand.HOLIDAY: ("holiday", "weekend", "节假日/周末", "休息日"),
    }
)


def format_duration(value: timedelta) -> str:
    """`timedelta(hours=1, minutes=30)` → "1小时30分钟" (days are not used: business days vary)."""
    minutes = round(value.total_seconds() / 60)
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours}小时{minutes}分钟"
    return f"{hours}小时" if hours else f"{minutes}分钟"


@dataclass(frozen=True, slots=True)
class SlaCell:
    priority: Priority
    impact: Impact
    band: TimeBand
    response: timedelta  # first response target
    resolution: timedelta  # resolution target, counted from the report like the response
    clock: ClockMode

    def __post_init__(self) -> None:
        label = f"{self.priority}×{self.impact}×{self.band}"
        for name, value in (("响应时限", self.response), ("解决时限", self.resolution)):
            if not isinstance(value, timedelta) or value <= timedelta(0):
                raise SlaConfigError(f"SLA 单元格 {label} 的{name}必须为正数，收到 {value}", cell=label)
        if self.response > self.resolution:
            raise SlaConfigError(
                f"SLA 单元格 {label} 的响应时限（{format_duration(self.response)}）"
                f"不能长于解决时限（{format_duration(self.resolution)}）",
                cell=label,
            )

    @property
    def key(self) -> tuple[Priority, Impact, TimeBand]:
        return self.priority, self.impact, self.band

    @property
    def label(self) -> str:
        return f"{self.priority}×{self.impact}×{self.band}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "priority": self.priority.value,
            "impact": self.impact.value,
            "band": self.band.value,
            "clock": self.clock.value,
            "response_minutes": _minutes(self.response),
            "resolution_minutes": _minutes(self.resolution),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "SLA 单元格") -> SlaCell:
        if not isinstance(data, Mapping):
            raise SlaConfigError(f"{where}必须是一个对象", where=where)
        missing = [
            k
            for k in ("priority", "impact", "band", "clock", "response_minutes", "resolution_minutes")
            if k not in data
        ]
        if missing:
            raise SlaConfigError(f"{where}缺少字段：{'、'.join(missing)}", where=where, missing=missing)
        try:
            priority, impact = Priority.parse(data["priority"]), Impact.parse(data["impact"])
            band, clock = parse_band(data["band"]), ClockMode.parse(data["clock"])
        except InvalidInput as exc:
            raise SlaConfigError(f"{where}：{exc.user_message}", where=where) from exc
        return cls(
            priority,
            impact,
            band,
            _duration(data["response_minutes"], f"{where}的响应时限"),
            _duration(data["resolution_minutes"], f"{where}的解决时限"),
            clock,
        )


def _minutes(value: timedelta) -> int | float:
    minutes = value.total_seconds() / 60
    return int(minutes) if minutes.is_integer() else minutes


def _duration(minutes: Any, what: str) -> timedelta:
    if isinstance(minutes, bool) or not isinstance(minutes, int | float):
        raise SlaConfigError(f"{what}必须是分钟数，收到 {minutes!r}", value=repr(minutes))
    if minutes <= 0:
        raise SlaConfigError(f"{what}必须为正数，收到 {minutes}", value=minutes)
    return timedelta(minutes=minutes)


_ALL_KEYS: tuple[tuple[Priority, Impact, TimeBand], ...] = tuple(product(Priority, Impact, TimeBand))


class SlaMatrix:
    """Exactly one cell for each of the 27 priority × impact × band combinations. Immutable."""

    __slots__ = ("_cells",)

    def __init__(self, cells: Iterable[SlaCell]) -> None:
        by_key: dict[tuple[Priority, Impact, TimeBand], SlaCell] = {}
        for cell in cells:
            if cell.key in by_key:
                raise SlaConfigError(f"SLA 单元格 {cell.label} 重复出现", cell=cell.label)
            by_key[cell.key] = cell
        missing = ["×".join(key) for key in _ALL_KEYS if key not in by_key]
        if missing:
            raise SlaConfigError(
                f"SLA 矩阵不完整：缺少 {len(missing)} 个单元格（{'、'.join(missing)}），应有 {len(_ALL_KEYS)} 个",
                missing=missing,
            )
        self._cells = {key: by_key[key] for key in _ALL_KEYS}

    @classmethod
    def default(cls) -> SlaMatrix:
        """The shipped defaults (core/sla_defaults.json)."""
        return cls.from_json(resources.files("core.sla").joinpath("sla_defaults.json").read_text(encoding="utf-8"))

    def cell(self, priority: Priority | str, impact: Impact | str, band: TimeBand | str) -> SlaCell:
        return self._cells[(Priority.parse(priority), Impact.parse(impact), parse_band(band))]

    def __iter__(self) -> Iterator[SlaCell]:
        return iter(self._cells.values())

    def __len__(self) -> int:
        return len(self._cells)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SlaMatrix) and self._cells == other._cells

    def __hash__(self) -> int:
        return hash(tuple(self._cells.values()))

    def __repr__(self) -> str:
        return f"SlaMatrix({len(self._cells)} cells)"

    def with_cell(
        self,
        priority: Priority | str,
        impact: Impact | str,
        band: TimeBand | str,
        *,
        response: timedelta | None = None,
        resolution: timedelta | None = None,
        clock: ClockMode | str | None = None,
    ) -> SlaMatrix:
        """A new matrix with one cell changed; this one is untouched."""
        old = self.cell(priority, impact, band)
        new = replace(
            old,
            response=old.response if response is None else response,
            resolution=old.resolution if resolution is None else resolution,
            clock=old.clock if clock is None else ClockMode.parse(clock),
        )
        return SlaMatrix(new if cell.key == new.key else cell for cell in self)

    def to_dict(self) -> dict[str, Any]:
        return {"format": MATRIX_FORMAT, "cells": [cell.to_dict() for cell in self]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlaMatrix:
        if not isinstance(data, Mapping) or not isinstance(data.get("cells"), list):
            raise SlaConfigError("SLA 矩阵格式错误：需要一个包含 cells 列表的对象")
        if data.get("format", MATRIX_FORMAT) != MATRIX_FORMAT:
            raise SlaConfigError(f"不支持的 SLA 矩阵格式：{data.get('format')}", format=data.get("format"))
        return cls(SlaCell.from_dict(item, f"第 {n} 个单元格") for n, item in enumerate(data["cells"], 1))

    def to_json(self) -> str:
        """One cell per line, so a diff of two versions shows the changed cells."""
        lines = ",\n".join("    " + json.dumps(cell.to_dict(), ensure_ascii=False) for cell in self)
        return f'{{\n  "format": "{MATRIX_FORMAT}",\n  "cells": [\n{lines}\n  ]\n}}\n'

    @classmethod
    def from_json(cls, text: str) -> SlaMatrix:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SlaConfigError(f"SLA 矩阵不是合法的 JSON：第 {exc.lineno} 行 {exc.msg}") from None
        return cls.from_dict(data)


# --- deadlines ---


@dataclass(frozen=True, slots=True)
class SlaDeadlines:
    cell: SlaCell
    clock: ClockMode
    band: TimeBand
    reported_at: datetime  # UTC
    clock_starts_at: datetime  # UTC; the next business moment for a business clock
    response_due: datetime  # UTC
    resolution_due: datetime  # UTC


def _add(clock: ClockMode, calendar: BusinessCalendar, start: datetime, delta: timedelta) -> datetime:
    if clock is ClockMode.BUSINESS:
        return calendar.add_business_time(start, delta)
    return start + delta


def _between(clock: ClockMode, calendar: BusinessCalendar, a: datetime, b: datetime) -> timedelta:
    if clock is ClockMode.BUSINESS:
        return calendar.business_time_between(a, b)
    return b - a


def deadline_for(
    priority: Priority | str,
    impact: Impact | str,
    reported_at: datetime,
    calendar: BusinessCalendar,
    matrix: SlaMatrix,
) -> SlaDeadlines:
    """The cell is chosen by the band at `reported_at`; it stays with the ticket."""
    reported = require_aware(reported_at, "报修时间")
    band = calendar.time_band(reported)
    cell = matrix.cell(Priority.parse(priority), Impact.parse(impact), band)
    starts = calendar.next_business_moment(reported) if cell.clock is ClockMode.BUSINESS else reported
    return SlaDeadlines(
        cell=cell,
        clock=cell.clock,
        band=band,
        reported_at=reported,
        clock_starts_at=starts,
        response_due=_add(cell.clock, calendar, reported, cell.response),
        resolution_due=_add(cell.clock, calendar, reported, cell.resolution),
    )


# --- pausing ---


@dataclass(frozen=True, slots=True)
class Pause:
    """An interval in which the SLA clock stood still (a waiting state)."""

    start: datetime
    end: datetime | None = None  # None: still paused
    state: str = ""


def pauses_from_states(
    transitions: Iterable[tuple[datetime, str]],
    pausing_states: Iterable[str] = DEFAULT_PAUSING_STATES,
) -> list[Pause]:
    """Turn a ticket's state history [(entered_at, state), ...] into pause intervals.

    Consecutive waiting states (等待备件 → 等待客户确认) make one continuous pause each.
    """
    waiting = frozenset(pausing_states)
    pauses: list[Pause] = []
    open_since: datetime | None = None
    open_state = ""
    for at, state in sorted(
        ((require_aware(at, "状态变更时间"), state) for at, state in transitions), key=lambda item: item[0]
    ):
        if state in waiting:
            if open_since is not None:
                pauses.append(Pause(open_since, at, open_state))
            open_since, open_state = at, state
        elif open_since is not None:
            pauses.append(Pause(open_since, at, open_state))
            open_since = None
    if open_since is not None:
        pauses.append(Pause(open_since, None, open_state))
    return pauses


def _merged(pauses: Iterable[Pause]) -> list[tuple[datetime, datetime | None]]:
    spans = sorted(
        (
            (require_aware(p.start, "暂停开始时间"), None if p.end is None else require_aware(p.end, "暂停结束时间"))
            for p in pauses
        ),
        key=lambda span: span[0],
    )
    merged: list[tuple[datetime, datetime | None]] = []
    for start, end in spans:
        if end is not None and end < start:
            raise InvalidInput(f"暂停区间结束早于开始：{start.isoformat()} → {end.isoformat()}")
        if merged:
            last_start, last_end = merged[-1]
            if last_end is None:  # an open pause swallows everything after it
                continue
            if start <= last_end:
                merged[-1] = (last_start, None if end is None else max(last_end, end))
                continue
        merged.append((start, end))
    return merged


def due_with_pauses(
    start: datetime,
    target: timedelta,
    clock: ClockMode,
    calendar: BusinessCalendar,
    pauses: Iterable[Pause],
) -> datetime | None:
    """When `target` of running time (business or wall, per `clock`) has passed after `start`,
    not counting the pauses. None while a pause that matters is still open: the clock stands."""
    cursor = require_aware(start, "开始时间")
    remaining = target
    for pause_start, pause_end in _merged(pauses):
        if pause_end is not None and pause_end <= cursor:
            continue
        pause_start = max(pause_start, cursor)
        candidate = _add(clock, calendar, cursor, remaining)
        if candidate <= pause_start:
            return candidate
        remaining -= _between(clock, calendar, cursor, pause_start)
        if pause_end is None:
            return None
        cursor = pause_end
    return _add(clock, calendar, cursor, remaining)


def resolution_due_with_pauses(
    deadlines: SlaDeadlines, pauses: Iterable[Pause], calendar: BusinessCalendar
) -> datetime | None:
    """The resolution deadline shifted by the pauses, in the cell's own clock."""
    return due_with_pauses(deadlines.reported_at, deadlines.cell.resolution, deadlines.clock, calendar, pauses)


def running_time(
    start: datetime,
    until: datetime,
    clock: ClockMode,
    calendar: BusinessCalendar,
    pauses: Iterable[Pause] = (),
) -> timedelta:
    """SLA time used between `start` and `until`, pauses excluded (for reports)."""
    begin, end = require_aware(start, "开始时间"), require_aware(until, "结束时间")
    total = timedelta(0)
    cursor = begin
    for pause_start, pause_end in _merged(pauses):
        if cursor >= end:
            break
        if pause_end is not None and pause_end <= cursor:
            continue
        total += max(_between(clock, calendar, cursor, min(max(pause_start, cursor), end)), timedelta(0))
        cursor = end if pause_end is None else max(cursor, pause_end)
    if cursor < end:
        total += _between(clock, calendar, cursor, end)
    return total


# --- reminders ---


def reminder_at(
    due: datetime, lead: timedelta = DEFAULT_REMINDER_LEAD, *, not_before: datetime | None = None
) -> datetime:
    """When the strong reminder fires: `lead` of wall time before `due`, never before `not_before`.

    Wall time even in business-time cells, because the reminder promises "escalation to your
    supervisor in 15 minutes" and the escalation fires at the wall instant `due`. A business-time
    lead would, for a deadline at Monday 08:05, fire on Friday at 17:50 — a stale alarm at
    home-time instead of one when the handler starts work.
    """
    fire = require_aware(due, "截止时间") - lead
    if not_before is not None:
        fire = max(fire, require_aware(not_before, "提醒下限"))
    return fire


# --- explanation (the `ticketbot sla explain` payload) ---


def explain(
    priority: Priority | str,
    impact: Impact | str,
    at: datetime,
    calendar: BusinessCalendar,
    matrix: SlaMatrix,
    *,
    reminder_lead: timedelta = DEFAULT_REMINDER_LEAD,
) -> dict[str, Any]:
    """JSON-ready explanation; `cell`, `clock`, `response_due`, `resolution_due` are a CLI contract.

    Times are ISO 8601 with the offset of the tenant's zone.
    """
    d = deadline_for(priority, impact, at, calendar, matrix)

    def iso(value: datetime) -> str:
        return value.astimezone(calendar.zone).isoformat(timespec="seconds")

    years = range(calendar.local(d.reported_at).year, calendar.local(d.resolution_due).year + 1)
    return {
        "cell": d.cell.label,
        "clock": d.clock.value,
        "response_due": iso(d.response_due),
        "resolution_due": iso(d.resolution_due),
        "priority": d.cell.priority.value,
        "impact": d.cell.impact.value,
        "band": d.band.value,
        "at": iso(d.reported_at),
        "zone": calendar.zone.key,
        "working_hours": calendar.hours.describe(),
        "clock_starts_at": iso(d.clock_starts_at),
        "response_target_minutes": _minutes(d.cell.response),
        "resolution_target_minutes": _minutes(d.cell.resolution),
        "response_reminder_at": iso(reminder_at(d.response_due, reminder_lead, not_before=d.reported_at)),
        "resolution_reminder_at": iso(reminder_at(d.resolution_due, reminder_lead, not_before=d.reported_at)),
        "warnings": [w for w in (calendar.schedule_warning(year) for year in years) if w],
    }


_WEEKDAYS = "一二三四五六日"


def _local_text(iso_text: str) -> str:
    value = datetime.fromisoformat(iso_text)
    return f"{value:%Y-%m-%d %H:%M}（周{_WEEKDAYS[value.weekday()]}）"


def explain_text(explanation: Mapping[str, Any]) -> str:
    """Chinese rendering of an `explain` payload, for the CLI and the bot."""
    e = explanation
    clock = ClockMode(e["clock"])
    unit = "工作时间" if clock is ClockMode.BUSINESS else "自然时间"
    lines = [
        f"SLA 单元格：{e['priority']} × {e['impact']} × {e['band']}（{clock.label}）",
        f"报修时间：{_local_text(e['at'])}  时区 {e['zone']}，工作时间 {e['working_hours']}",
    ]
    if clock is ClockMode.BUSINESS and e["clock_starts_at"] != e["at"]:
        lines.append(f"非工作时间报修，计时从 {_local_text(e['clock_starts_at'])} 开始")
    response = timedelta(minutes=e["response_target_minutes"])
    resolution = timedelta(minutes=e["resolution_target_minutes"])
    lines += [
        f"响应时限：{format_duration(response)}（{unit}）→ 截止 {_local_text(e['response_due'])}",
        f"解决时限：{format_duration(resolution)}（{unit}）→ 截止 {_local_text(e['resolution_due'])}",
        f"强提醒：{_local_text(e['response_reminder_at'])}（响应）、{_local_text(e['resolution_reminder_at'])}（解决）",
    ]
    lines += [f"注意：{w}" for w in e.get("warnings", ())]
    return "\n".join(lines)
