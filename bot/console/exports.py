"""Exports from the staff console (issue 22, docs/exports.md).

    GET /console/tickets.xlsx   the ticket list (same query parameters as the queue page)
    GET /console/tickets.csv    the same as CSV (UTF-8 with BOM, so that Excel reads the Chinese)
    GET /console/reports.xlsx   the 报表 figures of a period (`from`, `to`, `store`, `category`), one sheet
                                per report (概览, SLA达成率, 阻塞时长TOP10, 阻塞时长合计, 超时未结)
    GET /console/dashboards.xlsx  the dashboards' figures (storage/report_dashboard.py), one sheet per chart
    GET /console/traceability.zip   bot/console/traceability.py

Every export: a console session (no session: the gate answers 302), the person's store scope applied
(a store outside it asked for by name: an audited 403), nonsense filters → 400 naming the field, and
one `console_export` audit event saying who exported what (format, filter, scope) before any byte goes.

Nothing holds the whole list: the xlsx is written by openpyxl's write-only workbook from keyset batches,
in a job off the event loop — on SQLite in a worker process of its own (like 报表, bot/chat/report_reads.py:
a thread would share the interpreter lock with the loop for the seconds a 100,000-row workbook takes),
on PostgreSQL in the report thread — into a temporary file that is then streamed in chunks and deleted.
The CSV is streamed batch by batch, each batch read and encoded by a job off the loop in the same way
(issue 24: inline, a batch's statement froze the service for up to a second at 100,000 tickets). At most
EXPORT_SLOTS exports run at once per process, each with a worker process of its own; others wait their turn.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar

from aiohttp import web

from bot.background_processes import background_pool
from bot.chat.report_reads import Execute, report_reads
from bot.console.auth import StaffSession, forbidden, runtime_of, staff
from bot.console.export_workbooks import (
    LIST_HEADERS,
    DashboardExport,
    ListExport,
    NotReady,
    ReportExport,
    csv_batch,
    csv_lines,
    run_in_worker,
    write_dashboard_workbook,
    write_report_workbook,
    write_ticket_workbook,
)
from bot.console.ticket_query import FilterError, TicketFilter
from bot.runtime import Runtime
from core.model import Role

T = TypeVar("T")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CHUNK = 256 * 1024
EXPORT_SLOTS = 2
REPORT_ROLES = (Role.SUPERVISOR, Role.ADMIN, Role.QUALITY)
MAX_REPORT_DAYS = 366
DEFAULT_REPORT_DAYS = 7
DEFAULT_DASHBOARD_DAYS = 30
_SLOTS = web.AppKey("console_export_slots", asyncio.Semaphore)


# --- the request's filter, scope and audit ---


def bad_filter(error: FilterError) -> web.HTTPBadRequest:
    """400 naming the field (the message is Chinese and names it too)."""
    return web.HTTPBadRequest(text=f"筛选条件有误：{error.message}\n", content_type="text/plain",
                              headers={"X-Filter-Field": error.field})


async def checked_filter(request: web.Request, session: StaffSession) -> TicketFilter:
    """The query's filter; 400 for nonsense, an audited 403 for a store outside the person's scope."""
    try:
        f = TicketFilter.parse(request.query)
    except FilterError as error:
        raise bad_filter(error) from None
    outside = f.stores_outside(session.store_ids)
    if outside:
        raise await forbidden(request, session, f"导出门店 {'、'.join(sorted(outside))} 的工单")
    return f


async def audit_export(request: web.Request, session: StaffSession, what: str, payload: dict[str, Any]) -> None:
    """`console_export`: who exported what, with which filter, within which scope."""
    runtime = runtime_of(request)
    scope = sorted(session.store_ids) if session.store_ids is not None else None
    async with runtime.uow() as uow:
        await uow.append_audit(kind="console_export", actor_id=session.person.id, at=runtime.clock.now(),
                               payload={"what": what, "scope": scope, "role": session.person.role.value, **payload},
                               ticket_number=None)
        await uow.commit()


def list_spec(runtime: Runtime, session: StaffSession, f: TicketFilter) -> ListExport:
    config = runtime.service.config
    return ListExport(filter=f, store_ids=session.store_ids, now=runtime.clock.now(),
                      reminder_lead=config.sla.reminder_lead, zone=config.timezone,
                      pause_states=frozenset(config.sla.pause_states), exported_by=session.person.name)


def attachment(filename: str) -> str:
    return f"attachment; filename=\"{filename}\"; filename*=UTF-8''{urllib.parse.quote(filename)}"


def stamp(runtime: Runtime) -> str:
    return runtime.clock.now().astimezone(runtime.service.config.timezone).strftime("%Y%m%d-%H%M")


# --- jobs off the loop ---

_POOL: ProcessPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ProcessPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:  # spawned, at the background priority (bot/background_processes.py)
            # One process per export slot (a second one is spawned only when two exports run at once):
            # a CSV's batches do not wait behind another export's whole workbook.
            _POOL = background_pool(max_workers=EXPORT_SLOTS)
        return _POOL


def shutdown_export_worker() -> None:
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.shutdown(wait=False, cancel_futures=True)
        _POOL = None


def export_worker_pids() -> list[int]:
    """The worker process's id (for the benchmark's memory figures)."""
    processes = getattr(_POOL, "_processes", None) or {}
    return list(processes)


async def run_job(runtime: Runtime, job: Callable[..., T], *args: Any) -> T:
    """`job(execute, *args)` off the loop: SQLite → the export worker process (its own read-only
    connection); PostgreSQL / in-memory SQLite → the report thread, statements awaited on the loop."""
    reads = report_reads(runtime)
    if reads.path is None:
        return await reads.run(job, *args)
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(_pool(), run_in_worker, str(reads.path.resolve()), job, args)
    except BrokenProcessPool:  # the worker died (killed, out of memory): a new one, once
        await asyncio.to_thread(shutdown_export_worker)
        return await loop.run_in_executor(_pool(), run_in_worker, str(reads.path.resolve()), job, args)


async def send_file(request: web.Request, path: str, filename: str, content_type: str) -> web.StreamResponse:
    """Stream a finished file in chunks (the caller deletes it afterwards)."""
    response = web.StreamResponse(headers={"Content-Type": content_type,
                                           "Content-Disposition": attachment(filename),
                                           "Content-Length": str(os.path.getsize(path))})
    await response.prepare(request)
    with open(path, "rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            await response.write(chunk)
    await response.write_eof()
    return response


async def workbook_response(request: web.Request, job: Callable[[Execute, Any, str], int], spec: Any,
                            filename: str) -> web.StreamResponse:
    runtime = runtime_of(request)
    async with request.app[_SLOTS]:
        with tempfile.TemporaryDirectory(prefix="ticketbot-export-") as folder:
            path = os.path.join(folder, "export.xlsx")
            await run_job(runtime, job, spec, path)
            return await send_file(request, path, filename, XLSX)


# --- the ticket list ---


async def tickets_xlsx(request: web.Request) -> web.StreamResponse:
    session = await staff(request)
    f = await checked_filter(request, session)
    runtime = runtime_of(request)
    await audit_export(request, session, "tickets.xlsx", {"query": f.to_query(page=None, per=None)})
    return await workbook_response(request, write_ticket_workbook, list_spec(runtime, session, f),
                                   f"tickets-{stamp(runtime)}.xlsx")


async def tickets_csv(request: web.Request) -> web.StreamResponse:
    session = await staff(request)
    f = await checked_filter(request, session)
    runtime = runtime_of(request)
    spec = list_spec(runtime, session, f)
    await audit_export(request, session, "tickets.csv", {"query": f.to_query(page=None, per=None)})
    response = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8",
                                           "Content-Disposition": attachment(f"tickets-{stamp(runtime)}.csv")})
    async with request.app[_SLOTS]:
        await response.prepare(request)
        await response.write(b"\xef\xbb\xbf" + csv_lines([LIST_HEADERS]))
        last: tuple[Any, str] | None = None
        while True:
            # Each batch read and encoded off the loop (issue 24): on SQLite its statement may sort the
            # whole filtered list (0.1–1 s at 100,000 tickets), which inline on the loop froze the service.
            data, last = await run_job(runtime, csv_batch, spec, last)
            if data:
                await response.write(data)
            if last is None:
                break
        await response.write_eof()
    return response


# --- the 报表 workbook ---


def report_spec(runtime: Runtime, session: StaffSession, f: TicketFilter) -> ReportExport:
    """The period from `from`/`to` (days in the tenant's zone, both included; default the last 7 days)."""
    zone = runtime.service.config.timezone
    first, last = period_of(runtime, f, DEFAULT_REPORT_DAYS)
    label = f"{first.isoformat()} 至 {last.isoformat()}"
    return ReportExport(start=datetime.combine(first, time.min, tzinfo=zone),
                        end=datetime.combine(last + timedelta(days=1), time.min, tzinfo=zone), label=label,
                        store_ids=session.store_ids, stores=f.stores, categories=f.categories,
                        now=runtime.clock.now(), zone=zone, exported_by=session.person.name)


async def reports_xlsx(request: web.Request) -> web.StreamResponse:
    session = await staff(request, *REPORT_ROLES)
    f = await checked_filter(request, session)
    runtime = runtime_of(request)
    spec = report_spec(runtime, session, f)
    await audit_export(request, session, "reports.xlsx", {"query": f.to_query(page=None, per=None, sort=None),
                                                          "period": spec.label})
    return await workbook_response(request, write_report_workbook, spec, f"report-{stamp(runtime)}.xlsx")


def period_of(runtime: Runtime, f: TicketFilter, default_days: int) -> tuple[date, date]:
    """`from`/`to` as local days (both included); default the last `default_days`; at most MAX_REPORT_DAYS."""
    today = runtime.clock.now().astimezone(runtime.service.config.timezone).date()
    last: date = f.to or today
    first: date = f.from_ or (last - timedelta(days=default_days - 1))
    if first > last:
        raise bad_filter(FilterError("from", "开始日期（from）晚于结束日期（to）。"))
    if (last - first).days + 1 > MAX_REPORT_DAYS:
        raise bad_filter(FilterError("to", f"报表时间段最长 {MAX_REPORT_DAYS} 天（from 至 to）。"))
    return first, last


async def dashboards_xlsx(request: web.Request) -> web.StreamResponse:
    """The dashboards' figures (`from`, `to` default the last 30 days; one `store`, `category`, `assignee`)."""
    session = await staff(request, *REPORT_ROLES)
    f = await checked_filter(request, session)
    for name, values in (("category", f.categories), ("assignee", f.assignees), ("store", f.stores)):
        if len(values) > 1 or "" in values:
            raise bad_filter(FilterError(name, f"看板导出的（{name}）只能选一个值。"))
    runtime = runtime_of(request)
    first, last = period_of(runtime, f, DEFAULT_DASHBOARD_DAYS)
    stores = session.store_ids
    if f.stores:
        stores = frozenset(f.stores)  # inside the scope: checked_filter refused the others
    spec = DashboardExport(first=first, last=last, store_ids=stores, category=f.categories[0] if f.categories else None,
                           technician=f.assignees[0] if f.assignees else None, now=runtime.clock.now(),
                           zone_name=str(runtime.service.config.timezone), exported_by=session.person.name)
    await audit_export(request, session, "dashboards.xlsx", {"query": f.to_query(page=None, per=None, sort=None),
                                                             "period": f"{first.isoformat()} 至 {last.isoformat()}"})
    try:
        return await workbook_response(request, write_dashboard_workbook, spec, f"dashboards-{stamp(runtime)}.xlsx")
    except NotReady as waiting:
        share = f"（已完成 {waiting.progress * 100:.0f}%）" if waiting.progress is not None else ""
        raise web.HTTPServiceUnavailable(text=f"看板汇总正在生成{share}，请稍后再导出。\n", content_type="text/plain",
                                         headers={"Retry-After": "30"}) from None


async def _stop_worker(_app: web.Application) -> None:
    await asyncio.to_thread(shutdown_export_worker)


def add_routes(app: web.Application) -> None:
    from bot.console.traceability import traceability_zip  # it imports this module

    app[_SLOTS] = asyncio.Semaphore(EXPORT_SLOTS)
    app.router.add_get("/console/tickets.xlsx", tickets_xlsx)
    app.router.add_get("/console/tickets.csv", tickets_csv)
    app.router.add_get("/console/reports.xlsx", reports_xlsx)
    app.router.add_get("/console/dashboards.xlsx", dashboards_xlsx)
    app.router.add_get("/console/traceability.zip", traceability_zip)
    app.on_cleanup.append(_stop_worker)
