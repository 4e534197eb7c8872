"""`报表`: the supervisors' report in chat (computation in core/reports/metrics.py).

    报表                      the last 7 days
    报表 7天 / 报表 30天 / 报表 今天 / 报表 本月
    报表 2026-11-01 2026-11-21    both days included
    报表 7天 等待备件              the blocked-duration TOP10 of one state

A read model: it queries the tables directly (no transaction, nothing changes) and answers
through the service like every other reply. The whole report — reads, arithmetic, text — is one job
run off the event loop (bot/chat/report_reads.py: a worker process on SQLite): at a million tickets a
30-day report walks ~80,000 tickets, and intake, /healthz and the timers must not wait for it. Other
features add sections with `@report_section`, run in the same job (the lifecycle's first-time-fix
rate goes there): `section(execute, period, tickets) -> lines`, `execute` giving a statement's rows.
The job runs after the message's transaction (`Conversation.answer_later`), not inside it: the
playground's answer still waits for it; a platform gets the report as an outbox message once it is ready.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import String, case, or_, select
from sqlmodel import col

from bot.chat.conversation import Conversation, Incoming, text_command
from bot.chat.report_reads import Execute, report_reads
from core.errors import InvalidInput
from core.model import Role, Ticket, TicketStatus
from core.reports.metrics import Period, render_figures, render_report
from storage.report_aggregates import report_figures
from storage.tables import AuditEventRow, TicketRow
from storage.unit_of_work import ticket_from_row

MAX_DAYS = 366
CHUNK = 500
USAGE = "用法：报表｜报表 7天｜报表 30天｜报表 今天｜报表 本月｜报表 2026-11-01 2026-11-21｜报表 7天 等待备件"
_STATUS = {s.value: s for s in TicketStatus}
OPEN_STATES = sorted(s.value for s in TicketStatus if s.is_open)
_TICKETS = select(*TicketRow.__table__.columns)  # type: ignore[attr-defined]  # Core rows: no ORM identity map
_PAYLOAD = col(AuditEventRow.payload)
_TRAIL = (select(col(AuditEventRow.ticket_number), col(AuditEventRow.at),
                 case((col(AuditEventRow.kind) == "ticket_created", _PAYLOAD["status"].as_string()),
                      else_=_PAYLOAD["to"].as_string()).cast(String))
          .where(col(AuditEventRow.kind).in_(["ticket_created", "status_changed"]))
          .order_by(col(AuditEventRow.seq)))
_DAYS = re.compile(r"^(?:近|最近)?(\d{1,3})(?:天|日|d)$", re.IGNORECASE)

# (execute, period, tickets reported in it) -> lines, e.g. the first-time-fix rate. Runs in the report
# job (another process on SQLite): a module-level function (pickled by reference).
ReportSection = Callable[[Execute, Period, Sequence[Ticket]], list[str]]
_SECTIONS: list[ReportSection] = []


def report_section(fn: ReportSection) -> ReportSection:
    _SECTIONS.append(fn)
    return fn


def _day_start(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def parse_period(args: list[str], now: datetime, zone: ZoneInfo) -> tuple[Period, TicketStatus | None]:
    """The period and an optional state filter from the words after 报表."""
    words = list(args)
    state: TicketStatus | None = None
    labels = {s.label: s for s in TicketStatus}
    if words and (words[-1] in labels or words[-1] in {s.value for s in TicketStatus}):
        name = words.pop()
        state = labels.get(name) or TicketStatus(name)
    today = now.astimezone(zone).date()
    if not words:
        return Period(_day_start(today - timedelta(days=6), zone), _day_start(today + timedelta(days=1), zone),
                      "近7天"), state
    if len(words) == 1:
        word = words[0]
        if word in {"今天", "今日"}:
            return Period(_day_start(today, zone), _day_start(today + timedelta(days=1), zone), "今天"), state
        if word in {"本月", "这个月"}:
            return Period(_day_start(today.replace(day=1), zone), _day_start(today + timedelta(days=1), zone),
                          "本月"), state
        match = _DAYS.match(word)
        if match:
            days = int(match.group(1))
            if not 1 <= days <= MAX_DAYS:
                raise InvalidInput(f"天数必须在 1–{MAX_DAYS} 之间。{USAGE}")
            return Period(_day_start(today - timedelta(days=days - 1), zone),
                          _day_start(today + timedelta(days=1), zone), f"近{days}天"), state
    if len(words) == 2:
        try:
            first, last = (date.fromisoformat(word.replace("/", "-")) for word in words)
        except ValueError:
            raise InvalidInput(f"无法识别的日期：{' '.join(words)}。{USAGE}") from None
        if last < first:
            raise InvalidInput(f"结束日期 {last} 早于开始日期 {first}。{USAGE}")
        if (last - first).days + 1 > MAX_DAYS:
            raise InvalidInput(f"时间段最长 {MAX_DAYS} 天。{USAGE}")
        return Period(_day_start(first, zone), _day_start(last + timedelta(days=1), zone),
                      f"{first.isoformat()} 至 {last.isoformat()}"), state
    raise InvalidInput(f"看不懂报表的时间段「{' '.join(args)}」。{USAGE}")


def read_report_data(execute: Execute, period: Period, now: datetime
                     ) -> tuple[list[Ticket], list[Ticket], dict[str, list[tuple[datetime, TicketStatus]]]]:
    """The period's tickets, the open tickets past a deadline, and the status trail of the period's
    tickets. Runs off the event loop (`ReportReads`): every statement is bounded by an index — the
    period by `created_at`, open tickets by `status` (listed, not NOT IN: a NOT IN reads every
    ticket), the trail by `(ticket_number, kind)`, its state taken out of the payload by the database."""
    rows = execute(_TICKETS.where(col(TicketRow.created_at) >= period.start, col(TicketRow.created_at) < period.end)
                   .order_by(col(TicketRow.id)))
    tickets = [ticket_from_row(r) for r in rows]
    del rows
    open_tickets = [ticket_from_row(r) for r in execute(_TICKETS.where(
        col(TicketRow.status).in_(OPEN_STATES), or_(col(TicketRow.response_due) < now,
                                                    col(TicketRow.resolution_due) < now))
        .order_by(col(TicketRow.number)))]  # by number: the aggregates list them in the same order
    history: dict[str, list[tuple[datetime, TicketStatus]]] = {t.number: [] for t in tickets}
    numbers = list(history)
    for start in range(0, len(numbers), CHUNK):
        for row in execute(_TRAIL.where(col(AuditEventRow.ticket_number).in_(numbers[start:start + CHUNK]))):
            state = _STATUS.get(row[2])  # a dict, not TicketStatus(...): ~500,000 of them at a million tickets
            if state is not None:
                history[row[0]].append((row[1], state))
    for t in tickets:
        if not history[t.number]:  # no trail (imported data): one stay in the current state
            history[t.number].append((t.created_at, t.status))
    return tickets, open_tickets, history


def report_job(execute: Execute, period: Period, now: datetime, zone: ZoneInfo, state: TicketStatus | None,
               sections: Sequence[ReportSection]) -> str:
    """The report's text (run by `report_reads(...).run`, off the loop). `sections`: the registered ones,
    passed (by reference: module and name) rather than read from the registry of the worker process.
    From the maintained aggregates when they are ready (storage/report_aggregates.py), else from the
    tickets (`raw_report_job`): the same text."""
    found = report_figures(execute, period.start, period.end, now, zone, zone.key, state)
    if found is None:
        return raw_report_job(execute, period, now, zone, state, sections)
    lines: list[str] = []
    tickets = PeriodTickets(execute, period)
    for section in sections:
        if section.__name__ == FTF_SECTION:  # counted by the aggregates: the same line, without the scan
            lines.append(first_time_fix_line(period, found.closed, found.ftf_failed))
        else:
            lines.extend(section(execute, period, tickets))
    return render_figures(period, found.figures, zone=zone, state_filter=state, extra_sections=lines)


class PeriodTickets(Sequence[Ticket]):
    """The period's tickets for a section that reads them, loaded on first use (none does but a few)."""

    def __init__(self, execute: Execute, period: Period) -> None:
        self._execute, self._period = execute, period
        self._loaded: list[Ticket] | None = None

    def _tickets(self) -> list[Ticket]:
        if self._loaded is None:
            rows = self._execute(_TICKETS.where(col(TicketRow.created_at) >= self._period.start,
                                                col(TicketRow.created_at) < self._period.end)
                                 .order_by(col(TicketRow.id)))
            self._loaded = [ticket_from_row(r) for r in rows]
        return self._loaded

    def __len__(self) -> int:
        return len(self._tickets())

    def __getitem__(self, index: Any) -> Any:
        return self._tickets()[index]


FTF_SECTION = "first_time_fix_section"  # bot/chat/lifecycle.py's section, which the aggregates replace


def first_time_fix_line(period: Period, closed: int, failed: int) -> str:
    """core/lifecycle/rework.py FirstTimeFix.text() for counts (its `failed` holds the numbers)."""
    from core.lifecycle.rework import FirstTimeFix

    return FirstTimeFix(period.start, period.end, closed, closed - failed, ("",) * failed, ()).text()


def raw_report_job(execute: Execute, period: Period, now: datetime, zone: ZoneInfo, state: TicketStatus | None,
                   sections: Sequence[ReportSection]) -> str:
    """The report computed from the tickets and their trail (before the aggregates are ready)."""
    tickets, open_tickets, history = read_report_data(execute, period, now)
    lines: list[str] = []
    for section in sections:
        lines.extend(section(execute, period, tickets))
    return render_report(period, tickets, open_tickets, history, now, zone=zone, state_filter=state,
                         extra_sections=lines)


async def load_report_data(runtime: Any, period: Period, now: datetime
                           ) -> tuple[list[Ticket], list[Ticket], dict[str, list[tuple[datetime, TicketStatus]]]]:
    return await report_reads(runtime).run(read_report_data, period, now)


@text_command("报表", roles={Role.SUPERVISOR, Role.ADMIN}, usage="报表 [7天/30天/今天/本月/起止日期]",
              summary="首响、SLA 达成率、超时与阻塞时长")
async def _report(conv: Conversation, inc: Incoming) -> None:
    runtime = conv.extra["runtime"]
    zone: ZoneInfo = conv.service.config.timezone
    now = conv.service.clock.now()
    period, state = parse_period(inc.args, now, zone)

    async def read() -> str:
        return await report_reads(runtime).run(report_job, period, now, zone, state, list(_SECTIONS))

    async def answer(text: str) -> None:
        await conv.reply(inc.person, inc.message, text)

    # The job takes 0.1–1 s off the loop: awaited inside the message's transaction, it would hold the
    # group commit and the processing slot, and every message behind it would wait (issue 24).
    conv.answer_later(inc.message, read, answer)
