"""The tenant's operating settings: working hours, reminder lead, escalation delays, pausing states.

In the kernel because `ServiceConfig` carries them to every capability (the business calendar and the
SLA clock read the working hours, escalation the delays). Plain values (the composition root fills
them from `bot.settings.Settings`); the SLA matrix and the holiday overrides are not here: they are
versioned configuration in the database (kinds "sla" and "calendar"), changed by chat commands.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import time, timedelta

from core.errors import CalendarError, InvalidInput
from core.model import TicketStatus

DEFAULT_REMINDER_LEAD = timedelta(minutes=15)  # seed 001: strong reminder 15 minutes before
DEFAULT_PAUSE_STATES = frozenset({TicketStatus.WAITING_PARTS, TicketStatus.WAITING_CUSTOMER_PLAN})


def _parse_clock_time(text: str) -> time:
    try:
        return time.fromisoformat(text.strip())
    except ValueError:
        raise CalendarError(f"无法识别的钟点：{text}（例如 08:00）", value=text) from None


def _parse_span(text: str) -> tuple[time, time]:
    parts = text.replace("–", "-").replace("~", "-").split("-")
    if len(parts) != 2:
        raise CalendarError(f"无法识别的时间段：{text}（例如 08:00-18:00）", value=text)
    return _parse_clock_time(parts[0]), _parse_clock_time(parts[1])


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """Daily working hours in the tenant's zone, the same on every working day.

    Shifts across midnight are not supported: `start` < `end` within one day.
    """

    start: time = time(8)
    end: time = time(18)
    breaks: tuple[tuple[time, time], ...] = ()  # e.g. ((time(12), time(13)),) for a lunch break

    def __post_init__(self) -> None:
        for t in (self.start, self.end, *(t for span in self.breaks for t in span)):
            if t.tzinfo is not None:
                raise CalendarError("工作时间的钟点不能带时区（时区由日历统一设置）", value=str(t))
        if not self.start < self.end:
            raise CalendarError(f"上班时间 {self.start:%H:%M} 必须早于下班时间 {self.end:%H:%M}")
        previous_end = self.start
        for b_start, b_end in sorted(self.breaks):
            if not self.start < b_start < b_end < self.end:
                raise CalendarError(
                    f"休息时段 {b_start:%H:%M}-{b_end:%H:%M} 必须位于 {self.start:%H:%M}-{self.end:%H:%M} 之内"
                )
            if b_start < previous_end:
                raise CalendarError(f"休息时段 {b_start:%H:%M}-{b_end:%H:%M} 与其他休息时段重叠")
            previous_end = b_end

    @classmethod
    def parse(cls, hours: str = "08:00-18:00", lunch: str | None = None) -> WorkingHours:
        """`WorkingHours.parse("08:00-18:00", lunch="12:00-13:00")`."""
        start, end = _parse_span(hours)
        return cls(start, end, (_parse_span(lunch),) if lunch else ())

    @property
    def periods(self) -> tuple[tuple[time, time], ...]:
        """The working periods of a day, i.e. the hours minus the breaks."""
        result: list[tuple[time, time]] = []
        cursor = self.start
        for b_start, b_end in sorted(self.breaks):
            result.append((cursor, b_start))
            cursor = b_end
        result.append((cursor, self.end))
        return tuple(result)

    def describe(self) -> str:
        text = f"{self.start:%H:%M}-{self.end:%H:%M}"
        if self.breaks:
            text += "（午休 " + "、".join(f"{s:%H:%M}-{e:%H:%M}" for s, e in sorted(self.breaks)) + "）"
        return text


def parse_pause_states(text: str | Iterable[str]) -> frozenset[TicketStatus]:
    """`"waiting_parts,等待客户确认方案"` → statuses; codes and Chinese labels both work."""
    items = text.replace("，", ",").split(",") if isinstance(text, str) else list(text)
    by_label = {status.label: status for status in TicketStatus}
    states: set[TicketStatus] = set()
    for raw in items:
        name = raw.strip()
        if not name:
            continue
        status = by_label.get(name)
        if status is None:
            try:
                status = TicketStatus(name)
            except ValueError:
                raise InvalidInput(f"未知的工单状态：{name}", state=name) from None
        if not status.is_open:
            raise InvalidInput(f"状态「{status.label}」已结束，不能作为暂停状态", state=name)
        states.add(status)
    return frozenset(states)


def _positive(value: timedelta, what: str) -> timedelta:
    if value <= timedelta(0):
        raise InvalidInput(f"{what}必须为正数，收到 {value}")
    return value


@dataclass(frozen=True, slots=True)
class SlaSettings:
    hours: WorkingHours = field(default_factory=WorkingHours)
    # Strong reminder this long (wall time) before each deadline.
    reminder_lead: timedelta = DEFAULT_REMINDER_LEAD
    # Second-level escalation (to the director, Role.ADMIN) when a breach is not acknowledged.
    second_level_after: timedelta = timedelta(minutes=60)
    # Remind the owner of an unfinished 超时根因分析 task this often.
    root_cause_remind_after: timedelta = timedelta(hours=4)
    # Reminders to one person within this window go out as one message (WeCom: ≤ 30 msgs/min/user).
    digest_window: timedelta = timedelta(seconds=60)
    # The resolution clock stands still in these states.
    pause_states: frozenset[TicketStatus] = DEFAULT_PAUSE_STATES
    # Local hour of the daily holiday-schedule check for admins.
    daily_check_hour: int = 9

    def __post_init__(self) -> None:
        _positive(self.second_level_after, "二级升级时间")
        _positive(self.root_cause_remind_after, "根因分析提醒间隔")
        if self.reminder_lead < timedelta(0):
            raise InvalidInput("强提醒提前量不能为负数")
        if self.digest_window < timedelta(0):
            raise InvalidInput("提醒合并窗口不能为负数")
        if not 0 <= self.daily_check_hour <= 23:
            raise InvalidInput(f"每日检查钟点必须在 0-23 之间，收到 {self.daily_check_hour}")

    @classmethod
    def from_values(
        cls,
        *,
        business_hours: str = "08:00-18:00",
        lunch_break: str | None = None,
        reminder_lead_minutes: float = 15,
        second_level_minutes: float = 60,
        root_cause_remind_minutes: float = 240,
        digest_seconds: float = 60,
        pause_states: str | Iterable[str] = ("waiting_parts", "waiting_customer_plan"),
        daily_check_hour: int = 9,
    ) -> SlaSettings:
        return cls(
            hours=WorkingHours.parse(business_hours, lunch=lunch_break or None),
            reminder_lead=timedelta(minutes=reminder_lead_minutes),
            second_level_after=timedelta(minutes=second_level_minutes),
            root_cause_remind_after=timedelta(minutes=root_cause_remind_minutes),
            digest_window=timedelta(seconds=digest_seconds),
            pause_states=parse_pause_states(pause_states),
            daily_check_hour=daily_check_hour,
        )
