"""What the console exports hold, and the workbooks written from it (jobs run off the event loop).

The ticket list: one row per ticket in the list's order, read in keyset batches of BATCH short
statements (bot/console/ticket_query.py `after`), never all at once. The xlsx is written with
openpyxl's write-only workbook (rows go to a temporary file as they come; memory stays flat) and the
route streams the finished file; the CSV is streamed batch by batch as the jobs here read and encode
each batch (`csv_batch`), each one job off the loop.

Cells are typed: times are datetimes in the tenant's zone (Excel has no zones: the header says which),
durations and counts are numbers, text is text — never a formula (a description starting with "=" stays
text; in the CSV such cells get a leading apostrophe, OWASP's advice against formula injection).

The jobs here are module-level functions `job(execute, spec, path)` in a module with light imports: on
SQLite they run in a worker process of their own (bot/console/exports.py), on PostgreSQL in a thread.
"""

from __future__ import annotations

import csv
import io
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Select, case, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import aliased
from sqlmodel import col

from bot.chat.report_reads import Execute, direct, read_only_sqlite
from bot.console.ticket_query import (
    SLA_LABELS,
    TicketFilter,
    after,
    order_by,
    sla_conditions,
    sort_key,
    ticket_where,
)
from core.model import STATUS_LABELS, TicketStatus
from storage.tables import PersonRow, StoreRow, TicketRow

if TYPE_CHECKING:
    # openpyxl (with the lxml and Pillow it loads: ~12 MB of RSS) is imported by the export jobs, which run in
    # the export worker process, not by the web process that only names them (issue 24: idle RSS).
    from openpyxl import Workbook
    from openpyxl.worksheet._write_only import WriteOnlyWorksheet

T = TypeVar("T")
BATCH = 2000  # rows per statement: ~2 ms each on SQLite, a few hundred kB in memory

_STATUS_WORDS = {status.value: label for status, label in STATUS_LABELS.items()}
_ILLEGAL = re.compile(r"[\000-\010]|[\013-\014]|[\016-\037]")  # what XML (and so xlsx) cannot hold
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class ListExport:
    """Everything a list export job needs (pickled to the worker process)."""

    filter: TicketFilter
    store_ids: frozenset[str] | None
    now: datetime
    reminder_lead: timedelta
    zone: tzinfo
    pause_states: frozenset[TicketStatus]
    exported_by: str = ""  # the staff member's name, for the 说明 sheet


_ENGINES: dict[str, Engine] = {}  # in the export worker process: one read-only engine per database file


def run_in_worker(path: str, job: Callable[..., T], args: tuple[Any, ...]) -> T:
    """In the export worker process (bot/console/exports.py): `job(execute, *args)` on a read-only
    connection to the SQLite file at `path`. Here, not there: the worker imports only this module's needs."""
    engine = _ENGINES.get(path)
    if engine is None:
        engine = _ENGINES[path] = read_only_sqlite(Path(path))
    with engine.connect() as connection:
        return job(direct(connection), *args)


# --- the ticket list's columns ---

_customer = aliased(PersonRow, name="customer")
_technician = aliased(PersonRow, name="technician")
_T = TicketRow

LIST_SELECT: tuple[Any, ...] = (
    col(_T.number), col(_T.status), col(_T.store_id), col(StoreRow.name).label("store_name"), col(_T.category),
    col(_T.priority), col(_T.impact), col(_T.subject), col(_T.description), col(_customer.name).label("customer_name"),
    col(_T.customer_id), col(_technician.name).label("technician_name"), col(_T.assignee_id), col(_T.created_at),
    col(_T.first_response_at), col(_T.response_due), col(_T.resolution_due), col(_T.closed_at), col(_T.needs_review),
)

# (header, width in characters) in the order of `list_values`. Each cell costs ~10 µs in openpyxl (with
# lxml; ~25 µs without): 100,000 rows × 18 columns is most of an export's time, so no column is idle.
LIST_COLUMNS: tuple[tuple[str, int], ...] = (
    ("工单号", 20), ("状态", 12), ("SLA 状态", 10), ("门店", 16), ("类别", 10), ("优先级", 8), ("影响范围", 10),
    ("报修对象", 16), ("故障描述", 48), ("客户", 12), ("技师", 12), ("报修时间", 18), ("首次响应用时（秒）", 12),
    ("响应截止", 18), ("解决截止", 18), ("结案时间", 18), ("处理时长（小时）", 12), ("待复核", 8),
)
LIST_HEADERS = tuple(name for name, _ in LIST_COLUMNS)


def list_statement(spec: ListExport, last: tuple[Any, str] | None, batch: int = BATCH) -> Select[Any]:
    """One batch of the list: the BATCH tickets after `last` (sort value, number) in the list's order."""
    f = spec.filter
    sla = sla_conditions(spec.now, spec.reminder_lead, spec.pause_states)  # computed by the database, per row
    sla_state = case((sla["breached"], "breached"), (sla["at_risk"], "at_risk"), else_="ok").label("sla_state")
    stmt = (select(*LIST_SELECT, sla_state, sort_key(f).label("sort_key"))
            .select_from(_T)
            .outerjoin(StoreRow, col(StoreRow.id) == col(_T.store_id))
            .outerjoin(_customer, col(_customer.id) == col(_T.customer_id))
            .outerjoin(_technician, col(_technician.id) == col(_T.assignee_id))
            .where(*ticket_where(f, spec.store_ids, now=spec.now, reminder_lead=spec.reminder_lead, tz=spec.zone,
                                 pause_states=spec.pause_states))
            .order_by(*order_by(f))
            .limit(batch))
    return stmt.where(after(f, *last)) if last is not None else stmt


def list_rows(execute: Execute, spec: ListExport, batch: int = BATCH) -> Iterator[Any]:
    """Every row of the list, a batch at a time (each batch one short statement)."""
    last: tuple[Any, str] | None = None
    while True:
        rows = execute(list_statement(spec, last, batch))
        yield from rows
        if len(rows) < batch:
            return
        last = (rows[-1].sort_key, rows[-1].number)


def local(moment: datetime | None, zone: tzinfo) -> datetime | None:
    """Aware → naive in the tenant's zone (what a spreadsheet cell can hold)."""
    return moment.astimezone(zone).replace(tzinfo=None, microsecond=0) if moment is not None else None


def clean(text: str | None) -> str:
    return _ILLEGAL.sub("", text) if text else ""


def list_values(row: Any, spec: ListExport) -> list[Any]:
    """The cells of one ticket (typed: str, datetime, int/float, None for empty)."""
    zone = spec.zone
    created = row.created_at
    first_seconds = (round((row.first_response_at - created).total_seconds())
                     if row.first_response_at is not None else None)
    hours = round((row.closed_at - created).total_seconds() / 3600, 2) if row.closed_at is not None else None
    return [
        row.number, _STATUS_WORDS.get(row.status, row.status), SLA_LABELS[row.sla_state],
        clean(row.store_name or row.store_id), clean(row.category), row.priority, row.impact, clean(row.subject),
        clean(row.description), clean(row.customer_name or row.customer_id),
        clean(row.technician_name or row.assignee_id), local(created, zone), first_seconds,
        local(row.response_due, zone), local(row.resolution_due, zone), local(row.closed_at, zone), hours,
        "是" if row.needs_review else "否",
    ]


def csv_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else value


def csv_lines(rows: Sequence[Sequence[Any]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


def csv_batch(execute: Execute, spec: ListExport, last: tuple[Any, str] | None,
              batch: int = BATCH) -> tuple[bytes, tuple[Any, str] | None]:
    """One batch of the CSV after `last`, read and encoded (a job: off the event loop — the batch's
    statement sorts the whole filtered list on SQLite when the filter's index is not the order's, ~0.1 s
    at 100,000 tickets, and encoding 2,000 rows takes tens of ms); the key of the next batch, None at the end."""
    rows = execute(list_statement(spec, last, batch))
    data = csv_lines([[csv_safe(csv_cell(v)) for v in list_values(row, spec)] for row in rows]) if rows else b""
    return data, ((rows[-1].sort_key, rows[-1].number) if len(rows) >= batch else None)


# --- xlsx ---


def _header(ws: WriteOnlyWorksheet, columns: Sequence[tuple[str, int]]) -> None:
    """Widths, the frozen header row (set before any row: write-only sheets need it first)."""
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    bold = Font(bold=True)
    for index, (_, width) in enumerate(columns, start=1):
        ws.column_dimensions[get_column_letter(index)].width = width
    ws.freeze_panes = "A2"
    cells = []
    for name, _ in columns:
        cell = WriteOnlyCell(ws, name)
        cell.font = bold
        cells.append(cell)
    ws.append(cells)


def _cells(ws: WriteOnlyWorksheet, values: Sequence[Any]) -> list[Any]:
    from openpyxl.cell import WriteOnlyCell  # imported once: later calls find it in sys.modules

    out: list[Any] = []
    for value in values:
        if type(value) is str:
            if value[:1] == "=" and len(value) > 1:
                cell = WriteOnlyCell(ws, value)
                cell.data_type = "s"  # openpyxl would store it as a formula
                out.append(cell)
            else:
                out.append(value)
        elif isinstance(value, Percent):
            cell = WriteOnlyCell(ws, value.value)
            cell.number_format = "0.0%"
            out.append(cell)
        else:
            out.append(value)
    return out


def add_sheet(wb: Workbook, title: str, columns: Sequence[tuple[str, int]], rows: Iterator[Sequence[Any]]) -> int:
    """A sheet with a frozen bold header; returns the number of data rows."""
    ws = wb.create_sheet(title)
    _header(ws, columns)
    count = 0
    for values in rows:
        ws.append(_cells(ws, values))
        count += 1
    return count


def _about_sheet(wb: Workbook, title: str, facts: Sequence[tuple[str, Any]]) -> None:
    add_sheet(wb, "说明", (("项目", 18), ("内容", 60)), iter([(title, ""), *facts]))


def filter_words(f: TicketFilter) -> str:
    query = f.to_query(page=None, per=None)
    return "；".join(f"{k}={v}" for k, v in query.items()) or "无（全部）"


def write_ticket_workbook(execute: Execute, spec: ListExport, path: str) -> int:
    """Job: the ticket list as an xlsx at `path`; returns the number of tickets."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    count = add_sheet(wb, "工单列表", LIST_COLUMNS,
                      (list_values(row, spec) for row in list_rows(execute, spec)))
    _about_sheet(wb, "工单列表导出", (
        ("导出时间", local(spec.now, spec.zone)), ("导出人", spec.exported_by), ("时区", str(spec.zone)),
        ("筛选条件", filter_words(spec.filter)), ("工单数", count)))
    wb.save(path)
    return count


# --- the 报表 figures as a workbook ---


@dataclass(frozen=True, slots=True)
class Percent:
    """A share 0..1 shown as a percentage (a number in the cell)."""

    value: float


@dataclass(frozen=True, slots=True)
class ReportExport:
    start: datetime  # inclusive, aware
    end: datetime  # exclusive, aware
    label: str
    store_ids: frozenset[str] | None  # the person's scope (None: every store)
    stores: tuple[str, ...]  # the filter's stores (empty: all in scope)
    categories: tuple[str, ...]
    now: datetime
    zone: tzinfo
    exported_by: str = ""

    def keeps(self, store_id: str | None, category: str | None) -> bool:
        if self.store_ids is not None and store_id not in self.store_ids:
            return False
        if self.stores and store_id not in self.stores:
            return False
        return not self.categories or category in self.categories


def _hours(value: timedelta | None) -> float | None:
    return round(value.total_seconds() / 3600, 2) if value is not None else None


def _secs(value: timedelta | None) -> float | None:
    return round(value.total_seconds(), 1) if value is not None else None


def write_report_workbook(execute: Execute, spec: ReportExport, path: str) -> int:
    """Job: the 报表 figures of a period (bot/chat/reports.py reads them, core/reports/metrics.py computes
    them) as one sheet per report; returns the number of tickets reported in the period."""
    from bot.chat.reports import read_report_data  # the chat's report reads (heavy imports: only here)
    from core.reports.metrics import (
        TRACK_LABELS,
        Period,
        acceptance_stats,
        blocked_top,
        blocked_totals,
        compliance_by_priority,
        first_response_stats,
        open_breaches,
        waits,
    )

    all_tickets, all_open, all_history = read_report_data(execute, Period(spec.start, spec.end, spec.label), spec.now)
    tickets = [t for t in all_tickets if spec.keeps(t.store_id, t.category)]
    open_tickets = [t for t in all_open if spec.keeps(t.store_id, t.category)]
    numbers = {t.number for t in tickets}
    history = {n: h for n, h in all_history.items() if n in numbers}
    del all_tickets, all_open, all_history
    now, zone = spec.now, spec.zone
    found_waits = waits(history, now)
    from openpyxl import Workbook

    wb = Workbook(write_only=True)

    fr, accepted = first_response_stats(tickets), acceptance_stats(tickets)
    breaches = open_breaches(open_tickets, now)
    overview: list[tuple[str, Any, str]] = [
        ("报修工单数", len(tickets), "张"),
        ("首次响应（报修→派单送达）中位数", _secs(fr.median), "秒"),
        ("首次响应 P90", _secs(fr.p90), "秒"),
        ("首次响应 ≤90 秒占比", Percent(fr.share_within_target) if fr.share_within_target is not None else None, ""),
        ("首次响应已计入", fr.count, "张"),
        ("尚未送达派单（未计入）", fr.skipped, "张"),
        ("接单（报修→技师接单）中位数", _secs(accepted.median), "秒"),
        ("接单 P90", _secs(accepted.p90), "秒"),
        ("接单 ≤90 秒占比", Percent(accepted.share_within_target) if accepted.share_within_target is not None
         else None, ""),
        ("超时未结（当前）", len(breaches), "项"),
    ]
    add_sheet(wb, "概览", (("指标", 34), ("数值", 14), ("单位", 8)), iter(overview))

    def compliance_rows() -> Iterator[list[Any]]:
        for priority, c in compliance_by_priority(tickets, now).items():
            row: list[Any] = [priority]
            for track in ("response", "resolution"):
                rate = c.rate(track)
                row += [c.met[track], c.breached[track], c.running[track], Percent(rate) if rate is not None else None]
            yield row

    columns = [("优先级", 10)]
    for track in ("response", "resolution"):
        label = TRACK_LABELS[track]
        columns += [(f"{label}达成", 10), (f"{label}超时", 10), (f"{label}进行中", 10), (f"{label}达成率", 12)]
    add_sheet(wb, "SLA达成率", columns, compliance_rows())

    top = blocked_top(history, now, found_waits=found_waits)
    add_sheet(wb, "阻塞时长TOP10", (("排名", 6), ("工单号", 20), ("状态", 16), ("进入时间", 18), ("时长（小时）", 12),
                                 ("仍在此状态", 10)),
              ([rank, s.number, s.state.label, local(s.entered_at, zone), _hours(s.duration),
                "是" if s.ongoing else "否"] for rank, s in enumerate(top, start=1)))
    add_sheet(wb, "阻塞时长合计", (("状态", 16), ("总时长（小时）", 14), ("次数", 8), ("平均（小时）", 12)),
              ([state.label, _hours(total), count, _hours(total / count) if count else None]
               for state, total, count in blocked_totals(history, now, found_waits=found_waits)))
    add_sheet(wb, "超时未结", (("工单号", 20), ("时限", 8), ("截止时间", 18), ("已超时（小时）", 14), ("技师", 14),
                           ("已确认", 14)),
              ([b.number, TRACK_LABELS.get(b.track, b.track), local(b.due, zone), _hours(b.overdue),
                b.assignee_id or "", b.acknowledged_by or ""] for b in breaches))
    _about_sheet(wb, "报表导出", (
        ("时间段", f"{spec.label}（{local(spec.start, zone)} 至 {local(spec.end, zone)}，不含结束时刻）"),
        ("导出时间", local(now, zone)), ("导出人", spec.exported_by), ("时区", str(zone)),
        ("门店", "、".join(spec.stores) or ("可见的全部门店" if spec.store_ids is not None else "全部")),
        ("类别", "、".join(spec.categories) or "全部"),
        ("口径", "与聊天中「报表」相同（core/reports/metrics.py）：首次响应=报修到派单送达技师；"
                 "阻塞=在某一非终态停留至少 1 分钟，仍在进行的计到导出时刻。")))
    wb.save(path)
    return len(tickets)


# --- the dashboards' figures as a workbook ---


@dataclass(frozen=True, slots=True)
class DashboardExport:
    first: date  # local days, both included
    last: date
    store_ids: frozenset[str] | None  # the scope and/or the chosen store
    category: str | None
    technician: str | None
    now: datetime
    zone_name: str
    exported_by: str = ""


class NotReady(Exception):
    """The dashboards' aggregates are still being built (their backfill); `progress` 0..1 when known."""

    def __init__(self, progress: float | None) -> None:
        super().__init__(progress)
        self.progress = progress


def _share(value: Any) -> Percent | None:
    return Percent(float(value)) if isinstance(value, int | float) else None


def write_dashboard_workbook(execute: Execute, spec: DashboardExport, path: str) -> int:
    """Job: the console dashboards' figures (storage/report_dashboard.py, the same job as the page) as one
    sheet per chart; returns the number of days. NotReady while the aggregates are being built."""
    from storage.report_aggregates import Filters
    from storage.report_dashboard import dashboard_job

    figures = dashboard_job(execute, spec.first, spec.last, spec.now, spec.zone_name,
                            Filters(store_ids=spec.store_ids, category=spec.category, technician=spec.technician))
    if not figures.ready:
        raise NotReady(figures.progress)
    zone = ZoneInfo(spec.zone_name)
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    fr, acc = figures.first_response, figures.acceptance
    add_sheet(wb, "首响", (("指标", 30), ("首次响应（报修→派单送达）", 24), ("接单（报修→技师接单）", 22)), iter([
        ("计入工单数", fr.count if fr else None, acc.count if acc else None),
        ("未计入（尚无）", fr.skipped if fr else None, acc.skipped if acc else None),
        ("中位数（秒）", fr.median_s if fr else None, acc.median_s if acc else None),
        ("P90（秒）", fr.p90_s if fr else None, acc.p90_s if acc else None),
        ("≤90 秒占比", _share(fr.within) if fr else None, _share(acc.within) if acc else None),
    ]))
    add_sheet(wb, "每日指标", (("日期", 12), ("报修", 8), ("结案", 8), ("100%可追溯率", 14), ("一次修复率", 12),
                           ("≤90秒首响占比", 14)),
              ([date.fromisoformat(d["day"]), d.get("reported"), d.get("closed"), _share(d.get("traceability")),
                _share(d.get("ftf")), _share(d.get("within90"))] for d in figures.per_day))
    columns = [("优先级", 10)]
    for label in ("响应", "解决"):
        columns += [(f"{label}达成", 10), (f"{label}超时", 10), (f"{label}进行中", 10), (f"{label}达成率", 12)]
    add_sheet(wb, "SLA达成率", columns, (
        [c.get("priority")] + [v for track in ("response", "resolution") for v in (
            (c.get(track) or {}).get("met"), (c.get(track) or {}).get("breached"),
            (c.get(track) or {}).get("running"), _share((c.get(track) or {}).get("rate")))]
        for c in figures.compliance))
    age_labels = list((figures.backlog[0].get("ages") or {}).keys()) if figures.backlog else []
    add_sheet(wb, "积压", [("状态", 16), ("数量", 8)] + [(label, 10) for label in age_labels],
              ([b.get("label"), b.get("count"), *((b.get("ages") or {}).get(label) for label in age_labels)]
               for b in figures.backlog))
    add_sheet(wb, "阻塞时长TOP10", (("排名", 6), ("工单号", 20), ("状态", 16), ("进入时间", 18), ("时长（小时）", 12),
                                 ("仍在此状态", 10)),
              ([rank, b.get("number"), b.get("label"),
                local(b["entered"], zone) if isinstance(b.get("entered"), datetime) else None, b.get("hours"),
                "是" if b.get("ongoing") else "否"] for rank, b in enumerate(figures.blocked_top, start=1)))
    add_sheet(wb, "技师", (("技师", 16), ("结案", 8), ("在办", 8), ("平均评分", 10), ("评分数", 8)),
              ([t.get("name"), t.get("closed"), t.get("open"), t.get("rating"), t.get("ratings")]
               for t in figures.technicians))
    add_sheet(wb, "门店", (("门店", 18), ("报修", 8), ("结案", 8), ("100%可追溯率", 14), ("纬度", 10), ("经度", 10)),
              ([s.get("name"), s.get("reported"), s.get("closed"), _share(s.get("traceability")), s.get("lat"),
                s.get("lng")] for s in figures.stores))
    add_sheet(wb, "照片与评分", (("照片数", 12), ("工单数", 8), ("平均评分", 10)),
              ([p.get("photos"), p.get("tickets"), p.get("rating")] for p in figures.photo_rating))
    _about_sheet(wb, "看板导出", (
        ("时间段", f"{spec.first.isoformat()} 至 {spec.last.isoformat()}（含首尾两天）"),
        ("导出时间", local(spec.now, zone)), ("导出人", spec.exported_by), ("时区", spec.zone_name),
        ("门店", "、".join(sorted(spec.store_ids)) if spec.store_ids is not None else "全部"),
        ("类别", spec.category or "全部"), ("技师", spec.technician or "全部"),
        ("照片与评分相关系数 r", figures.photo_rating_r),
        ("口径", "与后台看板相同（storage/report_dashboard.py、docs/dashboards.md）。")))
    wb.save(path)
    return len(figures.per_day)


# --- the traceability sample's draw (bot/console/traceability.py) ---

ID_BATCH = 20_000  # (id, number) pairs per statement: ~80 ms at a million tickets, off the loop


@dataclass(frozen=True, slots=True)
class SampleDraw:
    filter: TicketFilter  # its status is 已结案
    n: int
    seed: int
    store_ids: frozenset[str] | None
    now: datetime
    reminder_lead: timedelta
    zone: tzinfo
    pause_states: frozenset[TicketStatus]


def draw_sample(execute: Execute, spec: SampleDraw) -> list[str]:
    """Job: `n` ticket numbers drawn uniformly from the filter's tickets (reservoir sampling over (id,
    number) read in id order: memory for `n`, whatever the number of tickets); the same seed on the same
    data draws the same tickets. Sorted."""
    where = ticket_where(spec.filter, spec.store_ids, now=spec.now, reminder_lead=spec.reminder_lead, tz=spec.zone,
                         pause_states=spec.pause_states)
    rng = random.Random(spec.seed)
    chosen: list[str] = []
    seen = 0
    last_id = 0
    while True:
        rows = execute(select(col(_T.id), col(_T.number)).where(*where, col(_T.id) > last_id)
                       .order_by(col(_T.id)).limit(ID_BATCH))
        for ticket_id, number in rows:
            seen += 1
            last_id = ticket_id
            if len(chosen) < spec.n:
                chosen.append(number)
            else:
                slot = rng.randrange(seen)
                if slot < spec.n:
                    chosen[slot] = number
        if len(rows) < ID_BATCH:
            return sorted(chosen)
