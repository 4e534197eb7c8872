"""The queue page /console/ (and /console/tickets): open tickets, filtered, sorted, paged (issue 22).

The filter is bot/console/ticket_query.py's (the exports use the same one, so a list and its export hold
the same tickets). Without a `status` parameter the page shows the open tickets. On top: the breached and
the at-risk tickets (a running SLA clock within SLA_REMINDER_LEAD_MINUTES of its deadline) of the same
filter, then counts per open state, then the page. Live: the results region re-reads itself every
POLL_SECONDS through htmx (vendored); without JavaScript the page is complete, and reloading refreshes it.

Speed (bench/console_queue_bench.py, 1 M tickets): every query is index-backed for the filters the docs
list; the counts are per OPEN state only (closed tickets are the bulk and nobody works them from a queue),
and the pager fetches one row more than a page instead of counting the whole result. A filter over the
history (closed / cancelled tickets) or with a text search has no such bound: its reads run off the event
loop, in the report worker (bot/console/queue_reads.py; issue 24).
"""

from __future__ import annotations

import dataclasses
import re
import time
import weakref
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp_jinja2
from aiohttp import web
from multidict import MultiDict
from sqlalchemy import select
from sqlalchemy.dialects.sqlite.base import SQLiteCompiler
from sqlmodel import col

from bot.chat.report_reads import report_reads
from bot.console.auth import console_store, forbidden, page_context, posted_form, runtime_of, staff
from bot.console.queue_reads import (
    RESPONSE_STATES,
    PageReads,
    needs_worker,
    page_reads,
    urgent_base,
    urgent_counts,
    urgent_statements,
)
from bot.console.ticket_query import (
    FIELD_LABELS,
    SLA_LABELS,
    FilterError,
    TicketFilter,
    count_select,
    sla_state_of,
    ticket_select,
)
from bot.web.api import RUNTIME
from core.model import STATUS_LABELS, Role, TicketStatus
from core.sla.matrix import Priority
from storage.tables import PersonRow, StoreRow, TicketRow

POLL_SECONDS = 10
TICKET_NUMBER = re.compile(r"^[A-Za-z]{0,16}-\d{8}-\d{1,8}$")  # GD-20261206-0001 (core/intake/tickets.py)
# The breached / at-risk counts and the urgent ten of one filter and scope are computed at most every
# URGENT_TTL_S per process (they scan every open ticket of the filter; the page refreshes every POLL_SECONDS,
# and several people watch the same queue): at most this stale.
URGENT_TTL_S = 5.0
_URGENT: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], tuple[float, dict[str, int], list[int]]]] = \
    weakref.WeakKeyDictionary()
OPEN_STATUSES = tuple(s for s in TicketStatus if s.is_open)
OPEN_VALUES = frozenset(s.value for s in OPEN_STATUSES)
SORTABLE = (("number", "工单号"), ("status", "状态"), ("priority", "优先级"), ("store", "门店"),
            ("category", "类别"), ("assignee", "处理人"), ("created_at", "报修时间"), ("resolution_due", "解决截止"))
VIEW_NAME_MAX = 30
# What a row of the queue shows (not the JSON `data`, which can be kilobytes per ticket).
ROW_COLUMNS = (col(TicketRow.number), col(TicketRow.status), col(TicketRow.priority), col(TicketRow.store_id),
               col(TicketRow.category), col(TicketRow.subject), col(TicketRow.description),
               col(TicketRow.assignee_id), col(TicketRow.created_at), col(TicketRow.response_due),
               col(TicketRow.resolution_due))
DIRECTORY_TTL_S = 30.0  # stores and technicians for the filter form: re-read at most this often per process


@dataclasses.dataclass(frozen=True, slots=True)
class QueueRow:
    number: str
    status: str
    status_label: str
    priority: str
    sla: str
    store: str
    category: str
    subject: str
    description: str
    assignee: str
    created_at: datetime
    due: datetime | None  # the deadline of the clock that runs (response, else resolution)


def _query_with_default(query: Mapping[str, str]) -> dict[str, str]:
    """The page's query: open tickets unless a status is asked for."""
    values = {k: v for k, v in query.items() if k not in ("partial",)}
    if not values.get("status", "").strip():
        values["status"] = "open"
    return values


def _sla_settings(request: web.Request) -> tuple[datetime, timedelta, Any, Any]:
    runtime = runtime_of(request)
    config = runtime.service.config
    return runtime.clock.now(), config.sla.reminder_lead, config.timezone, config.sla.pause_states


async def queue_page(request: web.Request) -> web.StreamResponse:
    session = await staff(request)
    query = _query_with_default(request.query)
    try:
        f = TicketFilter.parse(query)
    except FilterError as error:
        context = await _form_context(request, session, query)
        context.update(error=error.message, error_field=error.field, field_label=FIELD_LABELS.get(error.field, ""))
        response = aiohttp_jinja2.render_template("console/queue.html", request, page_context(
            request, session, **context))
        response.set_status(400)
        return response
    outside = f.stores_outside(session.store_ids)
    if outside:
        raise await forbidden(request, session, f"门店 {'、'.join(sorted(outside))} 的工单")
    now, lead, zone, pauses = _sla_settings(request)
    runtime = runtime_of(request)
    if TICKET_NUMBER.match(f.q) and not request.headers.get("HX-Request"):
        # A ticket number typed into the search box: straight to its file (one indexed lookup, where the
        # text search would scan every description); the file checks the scope.
        async with runtime.sessions.transaction() as conn:
            found = (await conn.execute(select(col(TicketRow.number)).where(
                col(TicketRow.number) == f.q.upper()))).scalar()
        if found is not None:
            raise web.HTTPFound(f"/console/tickets/{found}")
    kw: dict[str, Any] = {"now": now, "reminder_lead": lead, "tz": zone, "pause_states": pauses}
    page_filter = dataclasses.replace(f, per=f.per + 1)  # one more row: is there a next page?
    heavy: PageReads | None = None
    if needs_worker(f):  # issue 24: the history or a text search: off the loop, before the transaction
        heavy = await report_reads(runtime).run(page_reads, f, session.store_ids, now, lead, zone, pauses)
    async with runtime.sessions.transaction() as conn:
        # The page's ids first (filter and order read only columns stored before the JSON `data`, or an
        # index), then those rows: reading a ticket's later columns walks its data's overflow pages.
        ids = heavy.ids if heavy is not None else [
            int(i) for i, in await conn.execute(_queue_index(ticket_select(page_filter, session.store_ids, **kw)
                                                             .with_only_columns(col(TicketRow.id))
                                                             .offset((f.page - 1) * f.per), f))]
        rows = await _rows_by_id(conn, ids)
        if heavy is not None:
            counts, sla_counts, urgent = heavy.counts, heavy.sla_counts, await _rows_by_id(conn, heavy.urgent_ids)
        else:
            open_filter = dataclasses.replace(f, statuses=OPEN_STATUSES)
            counts = {str(status): int(n) for status, n in await conn.execute(
                _queue_index(count_select(open_filter, session.store_ids, ignore_status=False, **kw), open_filter))}
            sla_counts, urgent = await _urgent(runtime, conn, f, session.store_ids, kw)
        names = await _names(conn, {r.assignee_id for r in rows[:f.per]} | {r.assignee_id for r in urgent})
    stores = dict(await _directory(runtime, "stores"))
    has_next = len(rows) > f.per
    rows = rows[:f.per]
    to_row = _row_maker(now, lead, pauses, names, stores)
    context = {
        "filter": f, "rows": [to_row(r) for r in rows], "urgent": [to_row(r) for r in urgent],
        "status_counts": [(s.value, s.label, counts.get(s.value, 0)) for s in OPEN_STATUSES],
        "open_total": sum(counts.values()), "sla_counts": sla_counts, "has_next": has_next,
        "page_url": _url_maker(f), "sort_links": _sort_links(f), "current_query": urlencode(f.to_query()),
        "export_query": urlencode(f.to_query(page=None, per=None, sort=None)),
        "poll_seconds": POLL_SECONDS, "sla_labels": SLA_LABELS,
        "current_statuses": {s.value for s in f.statuses},
    }
    if request.headers.get("HX-Request"):  # the live region re-reading itself
        return aiohttp_jinja2.render_template("console/queue_results.html", request,
                                              page_context(request, session, **context))
    context.update(await _form_context(request, session, query))
    return aiohttp_jinja2.render_template("console/queue.html", request, page_context(request, session, **context))


async def _urgent(runtime: Any, conn: Any, f: TicketFilter, store_ids: frozenset[str] | None,
                  kw: dict[str, Any]) -> tuple[dict[str, int], list[Any]]:
    """Counts of breached / at-risk open tickets of the filter (its SLA and status choice aside), and
    the most urgent of them (earliest deadline first)."""
    base = urgent_base(f)
    key = (store_ids, base)
    per_runtime = _URGENT.setdefault(runtime, {})
    cached = per_runtime.get(key)
    if cached is not None and time.monotonic() - cached[0] < URGENT_TTL_S:
        return dict(cached[1]), await _rows_by_id(conn, cached[2])
    counts, ids = await _urgent_ids(conn, base, store_ids, kw)
    if len(per_runtime) > 1000:  # many people, many filters: start over rather than grow
        per_runtime.clear()
    per_runtime[key] = (time.monotonic(), counts, ids)
    return counts, await _rows_by_id(conn, ids)


async def _urgent_ids(conn: Any, base: TicketFilter, store_ids: frozenset[str] | None,
                      kw: dict[str, Any]) -> tuple[dict[str, int], list[int]]:
    counting, first = urgent_statements(base, store_ids, **kw)  # read from ix_tickets_queue, see _queue_index
    row = (await conn.execute(_queue_index(counting, base))).one()
    counts = urgent_counts(row)
    if not row[1]:
        return counts, []
    ids = [int(i) for i, in await conn.execute(_queue_index(first, base))]
    return counts, ids


QUEUE_INDEX = "ix_tickets_queue"


class _HintingSQLiteCompiler(SQLiteCompiler):
    """SQLite's compiler, rendering a table hint (`with_hint`) after the table's name, where SQLite
    reads `INDEXED BY`; SQLAlchemy's own SQLite compiler renders none."""

    def get_from_hint_text(self, table: Any, text: str | None) -> str | None:
        return text


def _queue_index(stmt: Any, f: TicketFilter) -> Any:
    """On SQLite, queries over open tickets only read ix_tickets_queue, which covers every filter and sort of
    the queue (migration 0012): ~1 % of a million tickets, scanned in the index without reading a row. Left
    to itself the planner (no statistics) takes the index of the most specific equality — a technician's or a
    store's tickets of a whole year — and reads each row. The hint is rendered by the engine's compiler
    (install_queue_index); other dialects ignore it."""
    if f.statuses and all(s.is_open for s in f.statuses):
        return stmt.with_hint(TicketRow, f"INDEXED BY {QUEUE_INDEX}", dialect_name="sqlite")
    return stmt


def install_queue_index(engine: Any) -> None:
    """Once per engine (SQLite only): a compiler that renders the hint `_queue_index` asks for. Why not an
    engine event rewriting the SQL (as before): any engine event makes SQLAlchemy dispatch events on every
    BEGIN, SAVEPOINT, RELEASE and COMMIT of the process — ~20 calls per fault report for nothing."""
    dialect = engine.sync_engine.dialect
    if dialect.name == "sqlite" and dialect.statement_compiler is SQLiteCompiler:
        dialect.statement_compiler = _HintingSQLiteCompiler


async def _rows_by_id(conn: Any, ids: list[int]) -> list[Any]:
    """The queue's columns of these tickets, in the order of `ids`."""
    if not ids:
        return []
    found = {r.id: r for r in await conn.execute(select(col(TicketRow.id), *ROW_COLUMNS)
                                                 .where(col(TicketRow.id).in_(ids)))}
    return [found[i] for i in ids if i in found]


async def _names(conn: Any, person_ids: set[str | None]) -> dict[str, str]:
    ids = sorted(p for p in person_ids if p)
    if not ids:
        return {}
    return {str(i): str(n) for i, n in await conn.execute(
        select(col(PersonRow.id), col(PersonRow.name)).where(col(PersonRow.id).in_(ids)))}


_DIRECTORY: weakref.WeakKeyDictionary[Any, dict[str, tuple[float, list[Any]]]] = weakref.WeakKeyDictionary()


async def _directory(runtime: Any, what: str) -> list[Any]:
    """Stores [(id, name)] or active technicians [(id, name, store)], read at most every DIRECTORY_TTL_S:
    every queue page shows them, and they change a few times a day."""
    per_runtime = _DIRECTORY.setdefault(runtime, {})
    cached = per_runtime.get(what)
    now = time.monotonic()
    if cached is not None and now - cached[0] < DIRECTORY_TTL_S:
        return cached[1]
    rows: list[Any]
    async with runtime.sessions.transaction() as conn:
        if what == "stores":
            rows = [(str(i), str(n)) for i, n in await conn.execute(
                select(col(StoreRow.id), col(StoreRow.name)).order_by(col(StoreRow.id)))]
        else:
            rows = [(str(i), str(n), s) for i, n, s in await conn.execute(
                select(col(PersonRow.id), col(PersonRow.name), col(PersonRow.store_id)).where(
                    col(PersonRow.role) == Role.TECHNICIAN.value, col(PersonRow.active).is_(True))
                .order_by(col(PersonRow.name)))]
    per_runtime[what] = (now, rows)
    return rows


def _row_maker(now: datetime, lead: timedelta, pauses: Any, names: dict[str, str],
               stores: dict[str, str]) -> Any:
    def make(row: Any) -> QueueRow:
        status = TicketStatus(row.status)
        sla = sla_state_of(row, now=now, reminder_lead=lead, pause_states=pauses)
        due = row.response_due if row.status in RESPONSE_STATES and row.response_due else row.resolution_due
        description = row.description if len(row.description) <= 80 else row.description[:80] + "…"
        return QueueRow(row.number, status.value, STATUS_LABELS[status], row.priority, sla,
                        stores.get(row.store_id, row.store_id or "—") if row.store_id else "—",
                        row.category or "未分类", row.subject, description,
                        names.get(row.assignee_id, row.assignee_id) if row.assignee_id else "未指派",
                        row.created_at, due if status.is_open else None)
    return make


def _url_maker(f: TicketFilter) -> Any:
    def url(**changes: Any) -> str:
        return "/console/?" + urlencode(f.to_query(**changes))
    return url


def _sort_links(f: TicketFilter) -> list[dict[str, Any]]:
    current = f.sort.removeprefix("-")
    descending = f.sort.startswith("-")
    links = []
    for name, label in SORTABLE:
        if name == current:
            target = name if descending else f"-{name}"
        else:
            target = f"-{name}" if name in ("created_at", "priority") else name
        arrow = ("↓" if descending else "↑") if name == current else ""
        links.append({"name": name, "label": label, "arrow": arrow, "sorted": name == current,
                      "href": "/console/?" + urlencode(f.to_query(sort=target, page=None))})
    return links


async def _form_context(request: web.Request, session: Any, query: Mapping[str, str]) -> dict[str, Any]:
    """What the filter form offers: the person's stores, categories, technicians; their saved views."""
    runtime = runtime_of(request)
    stores = await _directory(runtime, "stores")
    technicians = await _directory(runtime, "technicians")
    visible = [(i, n) for i, n in stores if session.can_see_store(i)]
    if session.store_ids is not None:
        technicians = [t for t in technicians if t[2] is None or t[2] in session.store_ids]
    categories = [c.name for c in runtime.rulebook.rules.categories]
    views = await console_store(request).saved_views(session.person.id)
    return {"stores": visible, "categories": categories, "technicians": [(i, n) for i, n, _ in technicians],
            "priorities": [p.value for p in Priority], "statuses": [(s.value, s.label) for s in TicketStatus],
            "sla_states": list(SLA_LABELS.items()), "q": dict(query), "views": views,
            "view_name_max": VIEW_NAME_MAX}


# --- saved views ---
async def save_view(request: web.Request) -> web.StreamResponse:
    session = await staff(request)
    form = await posted_form(request, session)
    name = " ".join(str(form.get("name", "")).split())[:VIEW_NAME_MAX]
    query = str(form.get("query", ""))[:2000]
    if not name:
        raise web.HTTPFound("/console/?" + query + ("&" if query else "") + "view_error=name")
    try:  # only a query the filter accepts is saved
        TicketFilter.parse(MultiDict(parse_qsl(query)))
    except FilterError as error:
        raise web.HTTPBadRequest(text=error.message) from None
    if not await console_store(request).save_view(session.person.id, name, query, now=runtime_of(request).clock.now()):
        raise web.HTTPFound("/console/?" + query + ("&" if query else "") + "view_error=full")
    raise web.HTTPFound("/console/?" + query)


async def delete_view(request: web.Request) -> web.StreamResponse:
    session = await staff(request)
    await posted_form(request, session)
    raw = request.match_info["view_id"]
    if raw.isdigit():
        await console_store(request).delete_view(session.person.id, int(raw))
    raise web.HTTPFound("/console/")


def add_routes(app: web.Application) -> None:
    install_queue_index(app[RUNTIME].engine)
    app.router.add_get("/console/", queue_page)
    app.router.add_get("/console/tickets", queue_page)
    app.router.add_post("/console/views", save_view)
    app.router.add_post("/console/views/{view_id}/delete", delete_view)
