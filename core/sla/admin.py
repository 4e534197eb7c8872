"""Supervisors and admins view and change the SLA matrix and the holiday overrides.

Both are versioned configuration (kinds "sla" and "calendar"): every change is a new version with
actor and note, audited as "config_changed"; the history lists versions and a rollback stores an
old version again as the newest. A change applies to tickets reported afterwards (a ticket keeps
the cell it was reported under); holiday overrides apply to every deadline computed afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from core.errors import InvalidInput, NotFound
from core.model import Role
from core.service import Context, handles
from core.sla.calendar import BusinessCalendar, DayOverride, TimeBand
from core.sla.calendar_watch import schedule_warning
from core.sla.matrix import (
    ClockMode,
    Impact,
    Priority,
    SlaCell,
    SlaMatrix,
    explain,
    explain_text,
    format_duration,
    parse_band,
)
from core.sla.stored_config import (
    CALENDAR_KIND,
    SLA_KIND,
    CalendarConfig,
    build_calendar,
    load_calendar_config,
    load_matrix,
)

STAFF = (Role.SUPERVISOR, Role.ADMIN)
MAX_TARGET_MINUTES = 60 * 24 * 60  # 60 days: anything longer is a typo


@dataclass(frozen=True, slots=True)
class ShowSla:
    pass


@dataclass(frozen=True, slots=True)
class ShowSlaCell:
    priority: str
    impact: str
    band: str


@dataclass(frozen=True, slots=True)
class SetSlaCell:
    priority: str
    impact: str
    band: str
    response_minutes: float | None = None
    resolution_minutes: float | None = None
    clock: str | None = None


@dataclass(frozen=True, slots=True)
class ShowSlaHistory:
    pass


@dataclass(frozen=True, slots=True)
class RollbackSla:
    version: int


@dataclass(frozen=True, slots=True)
class ExplainSla:
    priority: str
    impact: str
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ShowCalendar:
    pass


@dataclass(frozen=True, slots=True)
class SetCalendarDay:
    day: date
    working: bool
    note: str = ""


@dataclass(frozen=True, slots=True)
class RemoveCalendarDay:
    day: date


@dataclass(frozen=True, slots=True)
class ConfirmCalendarYear:
    year: int


# --- rendering ---

_CLOCK_SHORT = {ClockMode.BUSINESS: "工作时间计", ClockMode.WALL: "自然时间计"}


def cell_text(cell: SlaCell) -> str:
    return f"{format_duration(cell.response)}/{format_duration(cell.resolution)}（{_CLOCK_SHORT[cell.clock]}）"


def matrix_text(matrix: SlaMatrix) -> list[str]:
    lines = []
    for priority in Priority:
        for impact in Impact:
            parts = [f"{band.value} {cell_text(matrix.cell(priority, impact, band))}" for band in TimeBand]
            lines.append(f"{priority.value}×{impact.value}：" + "｜".join(parts))
    return lines


async def _calendar(ctx: Context) -> tuple[int, CalendarConfig, BusinessCalendar]:
    version, config = await load_calendar_config(ctx.uow)
    return version, config, build_calendar(ctx.config.timezone, ctx.config.sla, config)


@handles(ShowSla)
async def show_sla(ctx: Context, _cmd: ShowSla) -> str:
    ctx.require_role(*STAFF)
    version, matrix = await load_matrix(ctx.uow)
    _, _, calendar = await _calendar(ctx)
    settings = ctx.config.sla
    lines = [
        f"SLA 矩阵（版本 {version}{'，出厂默认' if version == 0 else ''}）格式：响应/解决",
        f"时区 {calendar.zone.key}｜工作时间 {calendar.hours.describe()}"
        f"｜强提醒提前 {format_duration(settings.reminder_lead)}"
        f"｜二级升级 超时后 {format_duration(settings.second_level_after)}",
        *matrix_text(matrix),
        "修改：SLA 设置 紧急 全厂 工作时间 响应 15 解决 120 [计时 自然时间]",
        "其他：SLA 查看 <优先级> <影响> <时段>｜SLA 历史｜SLA 回滚 <版本>｜SLA 解释 紧急 全厂 [时间]｜节假日",
    ]
    warning = calendar.coming_year_warning(ctx.now)
    if warning:
        lines.append(f"⚠ {warning}")
    text = "\n".join(lines)
    await ctx.tell(ctx.actor.id, text)
    return text


@handles(ShowSlaCell)
async def show_sla_cell(ctx: Context, cmd: ShowSlaCell) -> str:
    ctx.require_role(*STAFF)
    version, matrix = await load_matrix(ctx.uow)
    cell = matrix.cell(Priority.parse(cmd.priority), Impact.parse(cmd.impact), parse_band(cmd.band))
    text = (f"SLA {cell.label}（版本 {version}）：响应 {format_duration(cell.response)}，"
            f"解决 {format_duration(cell.resolution)}，{cell.clock.label}")
    await ctx.tell(ctx.actor.id, text)
    return text


def _minutes(value: float | None, what: str) -> timedelta | None:
    if value is None:
        return None
    if value <= 0:
        raise InvalidInput(f"{what}必须是正的分钟数，收到 {value:g}。例：SLA 设置 紧急 全厂 工作时间 响应 15 解决 120")
    if value > MAX_TARGET_MINUTES:
        raise InvalidInput(f"{what}太长（{value:g} 分钟），最多 {MAX_TARGET_MINUTES} 分钟（60 天）。")
    return timedelta(minutes=value)


@handles(SetSlaCell)
async def set_sla_cell(ctx: Context, cmd: SetSlaCell) -> int:
    ctx.require_role(*STAFF)
    priority, impact, band = Priority.parse(cmd.priority), Impact.parse(cmd.impact), parse_band(cmd.band)
    response = _minutes(cmd.response_minutes, "响应时限")
    resolution = _minutes(cmd.resolution_minutes, "解决时限")
    clock = ClockMode.parse(cmd.clock) if cmd.clock else None
    if response is None and resolution is None and clock is None:
        raise InvalidInput("请写明要修改的内容：响应 <分钟>、解决 <分钟> 或 计时 工作时间/自然时间。")
    version, matrix = await load_matrix(ctx.uow)
    before = matrix.cell(priority, impact, band)
    changed = matrix.with_cell(priority, impact, band, response=response, resolution=resolution, clock=clock)
    after = changed.cell(priority, impact, band)
    if after == before:
        text = f"SLA {before.label} 没有变化（仍为 {cell_text(before)}），未生成新版本。"
        await ctx.tell(ctx.actor.id, text)
        return version
    new_version = await ctx.uow.save_config(SLA_KIND, changed.to_dict(), actor_id=ctx.actor.id,
                                            note=f"修改 {after.label}：{cell_text(before)} → {cell_text(after)}",
                                            at=ctx.now, based_on=version)
    await ctx.audit("config_changed", {"kind": SLA_KIND, "version": new_version, "previous_version": version,
                                       "cell": after.label, "before": before.to_dict(), "after": after.to_dict()})
    await ctx.tell(ctx.actor.id, f"已更新 SLA {after.label}：{cell_text(before)} → {cell_text(after)}"
                                 f"（版本 {new_version}，对之后新报修的工单生效）。")
    return new_version


@handles(ShowSlaHistory)
async def show_sla_history(ctx: Context, _cmd: ShowSlaHistory) -> str:
    ctx.require_role(*STAFF)
    history = await ctx.uow.config_history(SLA_KIND, limit=20)
    if not history:
        text = "SLA 矩阵尚未修改过，当前为出厂默认（版本 0）。"
    else:
        lines = []
        for item in history:
            when = datetime.fromisoformat(item["created_at"]).astimezone(ctx.config.timezone)
            lines.append(f"版本 {item['version']}｜{when:%Y-%m-%d %H:%M}｜{item['actor_id']}｜{item['note']}")
        text = "SLA 矩阵版本记录（最近 20 个）：\n" + "\n".join(lines) + "\n回滚：SLA 回滚 <版本>（0 = 出厂默认）"
    await ctx.tell(ctx.actor.id, text)
    return text


@handles(RollbackSla)
async def rollback_sla(ctx: Context, cmd: RollbackSla) -> int:
    ctx.require_role(*STAFF)
    if cmd.version < 0:
        raise InvalidInput("版本号必须是 0 或正整数。")
    current, _ = await load_matrix(ctx.uow)
    if cmd.version == 0:
        target = SlaMatrix.default()
    else:
        payload = await ctx.uow.config_version(SLA_KIND, cmd.version)
        if payload is None:
            raise NotFound(f"没有 SLA 版本 {cmd.version}。发送「SLA 历史」查看所有版本。", version=cmd.version)
        target = SlaMatrix.from_dict(payload)
    if cmd.version == current:
        raise InvalidInput(f"当前已经是版本 {current}，无需回滚。")
    new_version = await ctx.uow.save_config(SLA_KIND, target.to_dict(), actor_id=ctx.actor.id,
                                            note=f"回滚到版本 {cmd.version}", at=ctx.now,
                                            based_on=current)
    await ctx.audit("config_changed", {"kind": SLA_KIND, "version": new_version, "previous_version": current,
                                       "rollback_to": cmd.version})
    await ctx.tell(ctx.actor.id, f"已将 SLA 矩阵回滚到版本 {cmd.version} 的内容（新版本 {new_version}）。")
    return new_version


@handles(ExplainSla)
async def explain_sla(ctx: Context, cmd: ExplainSla) -> str:
    ctx.require_role(*STAFF)
    _, matrix = await load_matrix(ctx.uow)
    _, _, calendar = await _calendar(ctx)
    text = explain_text(explain(cmd.priority, cmd.impact, cmd.at or ctx.now, calendar, matrix,
                                reminder_lead=ctx.config.sla.reminder_lead))
    await ctx.tell(ctx.actor.id, text)
    return text


# --- holiday overrides ---


@handles(ShowCalendar)
async def show_calendar(ctx: Context, _cmd: ShowCalendar) -> str:
    ctx.require_role(*STAFF)
    version, config, calendar = await _calendar(ctx)
    lines = [f"节假日覆盖（版本 {version}）｜时区 {calendar.zone.key}｜工作时间 {calendar.hours.describe()}"]
    if config.overrides:
        for o in sorted(config.overrides, key=lambda o: o.day):
            lines.append(f"{o.day.isoformat()} {'上班' if o.working else '休息'} {o.note}".rstrip())
    else:
        lines.append("（暂无覆盖，全部按 holidays 数据包中的国务院安排）")
    year = ctx.now.astimezone(ctx.config.timezone).year
    for y in (year, year + 1):
        lines.append(f"{y} 年放假调休安排：{'已知' if calendar.schedule_known(y) else '未收录'}")
    warning = await schedule_warning(ctx)
    if warning:
        lines.append(f"⚠ {warning}")
    lines.append("管理员录入：节假日 设置 2027-02-05 休息 春节｜节假日 设置 2027-02-07 上班 调休｜"
                 "节假日 删除 2027-02-05｜节假日 确认 2027")
    text = "\n".join(lines)
    await ctx.tell(ctx.actor.id, text)
    return text


async def _save_calendar(ctx: Context, before: int, config: CalendarConfig, note: str) -> int:
    version = await ctx.uow.save_config(CALENDAR_KIND, config.to_dict(), actor_id=ctx.actor.id, note=note, at=ctx.now,
                                        based_on=before)
    await ctx.audit("config_changed", {"kind": CALENDAR_KIND, "version": version, "previous_version": before,
                                       "change": note})
    return version


def _check_year(ctx: Context, year: int) -> None:
    current = ctx.now.astimezone(ctx.config.timezone).year
    if not current - 1 <= year <= current + 5:
        raise InvalidInput(f"年份 {year} 超出可设置范围（{current - 1}–{current + 5}）。")


@handles(SetCalendarDay)
async def set_calendar_day(ctx: Context, cmd: SetCalendarDay) -> int:
    ctx.require_role(Role.ADMIN)
    _check_year(ctx, cmd.day.year)
    version, config = await load_calendar_config(ctx.uow)
    changed = config.with_day(DayOverride(cmd.day, cmd.working, cmd.note[:40]))
    kind = "上班" if cmd.working else "休息"
    new_version = await _save_calendar(ctx, version, changed, f"{cmd.day.isoformat()} {kind} {cmd.note[:40]}".rstrip())
    await ctx.tell(ctx.actor.id, f"已设置 {cmd.day.isoformat()} 为{kind}日（版本 {new_version}）。"
                                 f"录入完一整年后发送「节假日 确认 {cmd.day.year}」关闭提醒。")
    return new_version


@handles(RemoveCalendarDay)
async def remove_calendar_day(ctx: Context, cmd: RemoveCalendarDay) -> int:
    ctx.require_role(Role.ADMIN)
    version, config = await load_calendar_config(ctx.uow)
    if all(o.day != cmd.day for o in config.overrides):
        raise NotFound(f"{cmd.day.isoformat()} 没有设置过覆盖。发送「节假日」查看现有覆盖。", day=cmd.day.isoformat())
    new_version = await _save_calendar(ctx, version, config.without_day(cmd.day), f"删除 {cmd.day.isoformat()}")
    await ctx.tell(ctx.actor.id, f"已删除 {cmd.day.isoformat()} 的覆盖（版本 {new_version}），恢复为数据包中的安排。")
    return new_version


@handles(ConfirmCalendarYear)
async def confirm_calendar_year(ctx: Context, cmd: ConfirmCalendarYear) -> int:
    ctx.require_role(Role.ADMIN)
    _check_year(ctx, cmd.year)
    version, config = await load_calendar_config(ctx.uow)
    if cmd.year in config.confirmed_years:
        raise InvalidInput(f"{cmd.year} 年的安排已经确认过了。")
    entered = [o for o in config.overrides if o.day.year == cmd.year]
    new_version = await _save_calendar(ctx, version, config.with_confirmed_year(cmd.year), f"确认 {cmd.year} 年安排")
    await ctx.tell(ctx.actor.id, f"已确认 {cmd.year} 年放假调休安排（含 {len(entered)} 条覆盖，版本 {new_version}），"
                                 f"不再提醒。")
    return new_version
