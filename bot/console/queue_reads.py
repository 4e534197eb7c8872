"""The queue page's heavy reads, off the event loop (issue 24, "nothing blocks the loop").

A queue of open tickets reads ix_tickets_queue (~1 % of the tickets; bot/console/queues.py `_queue_index`)
and stays on the loop: a few ms. Two kinds of filter have no such bound: one over closed or cancelled
tickets (the whole history: at 100,000 tickets a text search held the loop 0.5–1 s, a deep page or a
sort by priority ~80 ms) and a free-text search (`q`: a LIKE over every description of the filter, ~50 ms
over the open tickets alone at 100,000; bench/loop_stall.py). For those the page's reads — its ids, the
counts per open state, the breached / at-risk counts and the most urgent ids — are one job of
bot/chat/report_reads.py (on SQLite a worker process with its own read-only connection; on PostgreSQL a
thread whose statements are awaited on the loop), run before the page's transaction opens; the rows of
those ids (primary-key lookups) are read on the loop as before.

This module is what the worker process imports for the job: light imports only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlmodel import col

from bot.chat.report_reads import Execute
from bot.console.ticket_query import (
    DEFAULT_PER,
    DEFAULT_SORT,
    TicketFilter,
    count_select,
    sla_conditions,
    ticket_select,
    ticket_where,
)
from core.model import TicketStatus
from storage.tables import TicketRow

URGENT_LIMIT = 10  # breached / at-risk tickets listed on top
OPEN_STATUSES = tuple(s for s in TicketStatus if s.is_open)
# The states whose running clock is the response clock (nobody has accepted yet).
RESPONSE_STATES = (TicketStatus.TRIAGE.value, TicketStatus.PENDING_DISPATCH.value, TicketStatus.DISPATCHED.value)


def needs_worker(f: TicketFilter) -> bool:
    """Whether the filter reaches beyond the open tickets (no status, or a closed / cancelled one) or
    searches text."""
    return bool(f.q) or not f.statuses or not all(s.is_open for s in f.statuses)


def urgent_base(f: TicketFilter) -> TicketFilter:
    """The filter of the breached / at-risk block: its open tickets, its SLA and status choice aside."""
    return dataclasses.replace(f, sla=None, statuses=OPEN_STATUSES, page=1, per=DEFAULT_PER, sort=DEFAULT_SORT)


def urgent_statements(base: TicketFilter, store_ids: frozenset[str] | None, *, now: datetime,
                      reminder_lead: timedelta, tz: tzinfo, pause_states: Any) -> tuple[Select[Any, int], Select[Any]]:
    """(breached count, breached-or-at-risk count) and the URGENT_LIMIT most urgent ids, earliest deadline first."""
    where = ticket_where(base, store_ids, now=now, reminder_lead=reminder_lead, tz=tz, pause_states=pause_states)
    breached = sla_conditions(now, reminder_lead, pause_states)["breached"]
    # Breached or at risk = past its deadline at now + lead.
    urgent_where = sla_conditions(now + reminder_lead, timedelta(0), pause_states)["breached"]
    counting = select(func.sum(case((breached, 1), else_=0)), func.count()).where(*where, urgent_where)
    running_due = case((col(TicketRow.status).in_(RESPONSE_STATES), col(TicketRow.response_due)),
                       else_=col(TicketRow.resolution_due))
    # The ten first by id only (the covering indexes answer it without reading a ticket row), then those ten.
    first = (select(col(TicketRow.id)).where(*where, urgent_where)
             .order_by(case((breached, 0), else_=1), running_due, col(TicketRow.id)).limit(URGENT_LIMIT))
    return counting, first


def urgent_counts(row: Any) -> dict[str, int]:
    return {"breached": int(row[0] or 0), "at_risk": int(row[1] or 0) - int(row[0] or 0)}


@dataclass(frozen=True, slots=True)
class PageReads:
    ids: list[int]  # the page's tickets, one more than a page (is there a next page?)
    counts: dict[str, int]  # open tickets of the filter per state
    sla_counts: dict[str, int]  # breached / at_risk
    urgent_ids: list[int]


def page_reads(execute: Execute, f: TicketFilter, store_ids: frozenset[str] | None, now: datetime,
               reminder_lead: timedelta, tz: tzinfo, pause_states: Any) -> PageReads:
    """The job: what queues.py reads for a page, by id."""
    kw: dict[str, Any] = {"now": now, "reminder_lead": reminder_lead, "tz": tz, "pause_states": pause_states}
    page_filter = dataclasses.replace(f, per=f.per + 1)
    ids = [int(i) for i, in execute(ticket_select(page_filter, store_ids, **kw)
                                    .with_only_columns(col(TicketRow.id)).offset((f.page - 1) * f.per))]
    open_filter = dataclasses.replace(f, statuses=OPEN_STATUSES)
    counts = {str(status): int(n) for status, n in execute(count_select(open_filter, store_ids, ignore_status=False,
                                                                        **kw))}
    counting, first = urgent_statements(urgent_base(f), store_ids, **kw)
    row = execute(counting)[0]
    urgent = [int(i) for i, in execute(first)] if row[1] else []
    return PageReads(ids, counts, urgent_counts(row), urgent)
