"""Report aggregates (issues 22, 24): the fold that keeps storage/tables_reports.py, and its reads.

The fold runs in two phases so that neither the ticket transaction nor the event loop carries it:

1. `plan_fold(execute, zone)` — a read job (bot/chat/report_reads.py: the report worker process):
   from the fold state, the tickets to fold (the backfill's next id range, or every ticket with audit
   events after the watermark), their stored facts and their new facts (ticket row + trail,
   core/reports/facts.py), and the first-time-fix `came_back` flags they change on other tickets of
   the same asset. Nothing is written.
2. `apply_fold(conn, plan)` (`write_fold` on a synchronous connection: the worker process writes its
   plan itself, on PostgreSQL and into a SQLite file's reports file, storage/report_store.py) — one
   short transaction: a compare-and-set of the fold state (the plan was made from that state; when
   another process folded first, nothing is written), the facts rows
   replaced and the per-day rows moved by the difference between new and stored facts
   (`x = x + excluded.x`). Applying a plan twice changes nothing the second time, and several
   processes may fold at once: the CAS lets one of them through.

The write keeps the sums at several grains from the same differences: report_day_counts (day × store ×
category × priority), its rollups per store / per category / all (report_day_rollups), the per-day
histograms and technicians' rows (report_day_values, report_day_technicians) — so that a question reads
the coarsest grain that answers it (`_rollup`) and a 30-day period costs tens of rows per day, not a walk
over the period's facts.

Reads (`read_figures`) combine both: the aggregates as folded, plus a plan of what is not folded yet
(the events after the watermark), applied in memory as the same differences — exact at the moment of
the question. Changes that write no audit event are not seen, except the first response (recorded on
delivery without one): tickets whose facts have none yet are checked against their row.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, cast

from sqlalchemy import Executable, Table, and_, case, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from core.lifecycle.rework import asset_key
from core.model import TicketStatus
from core.reports.facts import (
    MIN_WAIT,
    TRAIL_KINDS,
    Stay,
    TicketFacts,
    Track,
    TrailEvent,
    came_back,
    facts_of,
    open_breach_due,
    outcome_at,
    settled_outcome,
)
from core.reports.metrics import (
    Compliance,
    FirstResponseStats,
    OpenBreach,
    ReportFigures,
    order_totals,
    ordered_priorities,
)
from core.reports.metrics import Stay as MetricStay
from storage.tables import AuditEventRow, TicketRow
from storage.tables_reports import (
    DAY_COUNTERS,
    ReportDayCountRow,
    ReportDayRollupRow,
    ReportDayTechnicianRow,
    ReportDayTopStayRow,
    ReportDayValueRow,
    ReportDayWaitRow,
    ReportFoldStateRow,
    ReportTicketFactRow,
)
from storage.unit_of_work import ticket_from_row

Execute = Callable[[Executable], Sequence[Any]]  # the rows of a statement (bot/chat/report_reads.py)

FACTS = cast(Table, ReportTicketFactRow.__table__)  # type: ignore[attr-defined]
DAYS = cast(Table, ReportDayCountRow.__table__)  # type: ignore[attr-defined]
ROLLUPS = cast(Table, ReportDayRollupRow.__table__)  # type: ignore[attr-defined]
VALUES = cast(Table, ReportDayValueRow.__table__)  # type: ignore[attr-defined]
TECHS = cast(Table, ReportDayTechnicianRow.__table__)  # type: ignore[attr-defined]
WAITS = cast(Table, ReportDayWaitRow.__table__)  # type: ignore[attr-defined]
TOPS = cast(Table, ReportDayTopStayRow.__table__)  # type: ignore[attr-defined]
STATE = cast(Table, ReportFoldStateRow.__table__)  # type: ignore[attr-defined]
TICKETS = cast(Table, TicketRow.__table__)  # type: ignore[attr-defined]

# A step's write is one transaction (~0.1 ms per ticket: its facts row, the deltas, the upserts): these bound
# it to a few tens of ms. When the loop wrote it (SQLite until the reports file), 4,000 events (~1,200 tickets
# under intake at full speed) held the loop 100-200 ms every 3 s (issues 20, 24).
BACKFILL_BATCH = 300  # tickets per backfill step
EVENT_BATCH = 1_200  # audit events per incremental step (a fault report writes ~3)
CHUNK = 500  # numbers per IN (...)
_INSERT_FACTS = insert(FACTS)  # built once (the worker process writes it, not the service's hot path)
TOP_PER_DAY = 10
ASSET_LOOKBACK = timedelta(days=120)  # first-time fix: how far back a ticket of the same asset is looked for
FIRST_RESPONSE_TARGET_S = 90
FR_RECHECK_DAYS = 3  # tickets without a first response are checked against their row this long
FR_CHECK_MARGIN = timedelta(minutes=5)  # a first response's transaction commits well within this
DayKey = tuple[date, str, str, str]  # day, store, category, priority


# --- facts <-> rows ---

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(moment: datetime) -> int:
    """Microseconds since 1970 (exact): sums of durations in SQL without the dialects' date arithmetic."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def fact_row(f: TicketFacts) -> dict[str, Any]:
    r, s = f.response, f.resolution
    return {
        "number": f.number, "version": f.version, "created_at": f.created_at, "created_day": f.created_day,
        "closed_at": f.closed_at, "closed_day": f.closed_day, "store_id": f.store_id, "category": f.category,
        "priority": f.priority, "assignee_id": f.assignee_id, "status": f.status, "is_open": f.is_open,
        "running": f.running, "first_response_s": f.first_response_s, "accept_s": f.accept_s,
        "resp_present": r.present, "resp_due": r.due, "resp_met": r.met, "resp_met_at": r.met_at,
        "resp_breached": r.breached_at, "resp_ack": r.ack_by,
        "res_present": s.present, "res_due": s.due, "res_met": s.met, "res_met_at": s.met_at,
        "res_breached": s.breached_at, "res_ack": s.ack_by, "res_paused": f.resolution_paused,
        "photos": f.photos, "checked_in": f.checkin, "signed": f.signed, "confirmed": f.confirmed,
        "rating": f.rating, "reworked": f.reworked, "came_back": f.came_back, "asset_key": f.asset_key[:200],
        "ongoing_state": f.ongoing_state, "ongoing_since": f.ongoing_since,
        "ongoing_since_us": None if f.ongoing_since is None else epoch_us(f.ongoing_since),
        "stays": [[x.state, x.entered_at.isoformat(), x.micros] for x in f.stays],
        "longest_stay": max((x.micros for x in f.stays), default=0),
        "root_causes": [list(x) for x in f.root_causes], "rca_pending": bool(f.root_causes),
    }


def fact_from_row(r: Any) -> TicketFacts:
    return TicketFacts(
        number=r.number, created_at=r.created_at, created_day=r.created_day, store_id=r.store_id,
        category=r.category, priority=r.priority, assignee_id=r.assignee_id, status=r.status, version=r.version,
        closed_at=r.closed_at, closed_day=r.closed_day, first_response_s=r.first_response_s, accept_s=r.accept_s,
        response=Track(r.resp_due, r.resp_met, bool(r.resp_met_at), bool(r.resp_breached), r.resp_ack,
                       bool(r.resp_present)),
        resolution=Track(r.res_due, r.res_met, bool(r.res_met_at), bool(r.res_breached), r.res_ack,
                         bool(r.res_present)),
        resolution_paused=bool(r.res_paused), photos=r.photos, checkin=bool(r.checked_in), signed=bool(r.signed),
        confirmed=bool(r.confirmed), rating=r.rating, reworked=bool(r.reworked), came_back=bool(r.came_back),
        asset_key=r.asset_key, ongoing_state=r.ongoing_state, ongoing_since=r.ongoing_since,
        stays=tuple(Stay(s[0], datetime.fromisoformat(s[1]), int(s[2])) for s in r.stays or ()),
        root_causes=tuple((str(a), str(b)) for a, b in r.root_causes or ()))


# --- what one ticket's facts add to the aggregates ---

def day_counts_of(f: TicketFacts) -> list[tuple[DayKey, dict[str, int]]]:
    dims = (f.store_id, f.category, f.priority)
    reported = {"reported": 1}
    for name, value in (("fr", f.first_response_s), ("acc", f.accept_s)):
        if value is None:
            reported[f"{name}_skipped"] = 1
        else:
            reported[f"{name}_n"] = 1
            reported[f"{name}_within"] = int(value <= FIRST_RESPONSE_TARGET_S)
    for track, prefix in (("response", "resp"), ("resolution", "res")):
        outcome = settled_outcome(f, track)
        if outcome in ("met", "breached"):
            reported[f"{prefix}_{outcome}"] = 1
    out: list[tuple[DayKey, dict[str, int]]] = [((f.created_day, *dims), reported)]
    if f.ftf_counted and f.closed_day is not None:
        out.append(((f.closed_day, *dims), {
            "closed": 1, "ftf_failed": int(f.ftf_failed), "reworked": int(f.reworked),
            "traceable": int(f.traceable), "checked_in": int(f.checkin), "photo3": int(f.photos >= 3),
            "signed": int(f.signed), "photos_sum": f.photos, "rating_sum": f.rating or 0,
            "rating_n": int(f.rating is not None), "closure_s": f.closure_s or 0}))
    return out


NONE_X = -(2**31)  # report_day_values.x of "no value yet" (a wait is never that)
HOURLY_FROM = 3600  # wait buckets: 30 s wide up to an hour, then an hour wide


def wait_bucket(value: int | None) -> int:
    """The coarse bucket of a wait in whole seconds: 0 (≤ 0 s), b = 1…120 ((30b − 30, 30b] s), then
    hourly; its edges include every edge the figures use (90 s, and the dashboards' 30/60/180/600/3600).
    Migration 0014 computes the same in SQL (WAIT_BUCKET_SQL)."""
    if value is None:
        return NONE_X
    if value <= 0:
        return 0
    if value <= HOURLY_FROM:
        return (value + 29) // 30
    return 121 + (value - HOURLY_FROM - 1) // 3600


def bucket_span(bucket: int) -> tuple[int, int]:
    """The smallest and largest whole seconds in a bucket."""
    if bucket == 0:
        return NONE_X + 1, 0
    if bucket <= 120:
        return 30 * bucket - 29, 30 * bucket
    return HOURLY_FROM + 1 + (bucket - 121) * 3600, HOURLY_FROM + (bucket - 120) * 3600


def value_keys(f: TicketFacts) -> list[tuple[str, date, int, int]]:
    """The report_day_values cells one ticket counts in (the same predicates as the facts' reads):
    its waits exactly ("fr", "acc") and by bucket ("frb", "accb"), its photos × rating when rated."""
    out = [("fr", f.created_day, NONE_X if f.first_response_s is None else f.first_response_s, 0),
           ("acc", f.created_day, NONE_X if f.accept_s is None else f.accept_s, 0),
           ("frb", f.created_day, wait_bucket(f.first_response_s), 0),
           ("accb", f.created_day, wait_bucket(f.accept_s), 0)]
    if f.closed_day is not None and f.rating is not None:
        out.append(("photo", f.closed_day, f.photos, f.rating))
    return out


@dataclass(slots=True)
class Deltas:
    days: dict[DayKey, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    waits: dict[tuple[date, str], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    tops: list[tuple[date, str, str, datetime, int]] = field(default_factory=list)
    values: dict[tuple[str, date, int, int], int] = field(default_factory=lambda: defaultdict(int))
    technicians: dict[tuple[date, str], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))

    def add(self, f: TicketFacts, sign: int) -> None:
        for key, counters in day_counts_of(f):
            row = self.days[key]
            for name, value in counters.items():
                row[name] += sign * value
        for vkey in value_keys(f):
            self.values[vkey] += sign
        if f.closed_day is not None and f.assignee_id:
            tech = self.technicians[(f.closed_day, f.assignee_id)]
            tech[0] += sign
            tech[1] += sign * (f.rating or 0)
            tech[2] += sign * int(f.rating is not None)
        for s in f.stays:
            pair = self.waits[(f.created_day, s.state)]
            pair[0] += sign
            pair[1] += sign * s.micros


def deltas_of(old: dict[str, TicketFacts], new: dict[str, TicketFacts]) -> Deltas:
    d = Deltas()
    for f in old.values():
        d.add(f, -1)
    for f in new.values():
        d.add(f, +1)
        known = {(s.state, s.entered_at) for s in old[f.number].stays} if f.number in old else set()
        d.tops.extend((f.created_day, s.state, f.number, s.entered_at, s.micros) for s in f.stays
                      if (s.state, s.entered_at) not in known)
    return d


# --- phase 1: the plan ---

@dataclass(slots=True)
class FoldPlan:
    state: dict[str, Any] | None  # the fold state the plan was made from (None: there was none)
    new_state: dict[str, Any]
    old: dict[str, TicketFacts] = field(default_factory=dict)  # stored facts of the changed tickets
    new: dict[str, TicketFacts] = field(default_factory=dict)
    reset: bool = False  # the stored aggregates are of another zone: start again

    @property
    def changed(self) -> int:
        return len(self.new)

    @property
    def caught_up(self) -> bool:
        """Nothing more to fold after this plan (the backfill done, the events read to the end)."""
        return self.new_state.get("backfill_next_id") is None and not self.new_state.get("more", False)


def read_state(execute: Execute) -> dict[str, Any] | None:
    rows = execute(select(STATE).where(STATE.c.id == 1))
    return dict(rows[0]._mapping) if rows else None


def ready(state: dict[str, Any] | None, zone_name: str) -> bool:
    """Whether the aggregates cover every ticket up to the watermark (backfilled, in this zone)."""
    return state is not None and state["zone"] == zone_name and state["backfill_next_id"] is None


def of_this_chain(execute: Execute, state: dict[str, Any]) -> bool:
    """Whether the aggregates were folded from this database's audit chain: the event at the watermark is
    there, with the hash the fold saw. Not always so on SQLite, whose aggregates are in a file of their own
    (storage/report_store.py) that can outlive a restored backup of the service's file, or sit beside
    another database: such aggregates are folded again, and not read meanwhile."""
    seq = int(state["seq"])
    if seq == 0:
        return True
    rows = execute(select(col(AuditEventRow.hash)).where(col(AuditEventRow.seq) == seq))
    return bool(rows) and state.get("seq_hash") in (None, rows[0][0])  # None: folded before the hash was kept


def plan_fold(execute: Execute, zone: tzinfo, zone_name: str, now: datetime) -> FoldPlan:
    """What the next fold step writes (run off the loop; see the module's docstring)."""
    state = read_state(execute)
    if state is None or state["zone"] != zone_name or not of_this_chain(execute, state):
        newest = execute(select(col(AuditEventRow.seq), col(AuditEventRow.hash))
                         .order_by(col(AuditEventRow.seq).desc()).limit(1))
        first, last = execute(select(func.min(col(TicketRow.id)), func.max(col(TicketRow.id))))[0]
        return FoldPlan(state, {"id": 1, "seq": int(newest[0][0]) if newest else 0,
                                "seq_hash": newest[0][1] if newest else None,
                                "zone": zone_name, "folded_at": now, "steps": 0,
                                "backfill_next_id": first if last is not None else None,
                                "backfill_until_id": last, "responses_checked_at": None}, reset=state is not None)
    if state["backfill_next_id"] is not None:
        start = int(state["backfill_next_id"])
        end = start + BACKFILL_BATCH
        numbers = [r[0] for r in execute(select(col(TicketRow.number)).where(
            col(TicketRow.id) >= start, col(TicketRow.id) < end, col(TicketRow.id) <= state["backfill_until_id"]))]
        following = None if end > int(state["backfill_until_id"]) else end
        # A backfilled ticket may be answered before the backfill ends: the first look after it is the full one.
        plan = FoldPlan(state, {**state, "backfill_next_id": following, "folded_at": now,
                                "responses_checked_at": None})
    else:
        numbers, (top, top_hash) = _touched_since(execute, int(state["seq"]), EVENT_BATCH)
        numbers = sorted(set(numbers) | _first_responses_arrived(execute, zone, now, state.get("responses_checked_at")))
        plan = FoldPlan(state, {**state, "seq": top, "seq_hash": top_hash or state.get("seq_hash"), "folded_at": now,
                                "responses_checked_at": now, "more": top - int(state["seq"]) >= EVENT_BATCH})
    _fill(execute, plan, numbers, zone)
    return plan


def _touched_since(execute: Execute, seq: int, limit: int | None) -> tuple[list[str], tuple[int, str | None]]:
    """Ticket numbers with audit events after `seq` (at most `limit` events), and the last seq read with its
    hash (None: nothing read)."""
    statement = (select(col(AuditEventRow.seq), col(AuditEventRow.ticket_number), col(AuditEventRow.hash))
                 .where(col(AuditEventRow.seq) > seq).order_by(col(AuditEventRow.seq)))
    if limit is not None:
        statement = statement.limit(limit)
    rows = execute(statement)
    numbers = {r[1] for r in rows if r[1]}
    return sorted(numbers), ((int(rows[-1][0]), rows[-1][2]) if rows else (seq, None))


def _first_responses_arrived(execute: Execute, zone: tzinfo, now: datetime, checked_at: datetime | None
                             ) -> set[str]:
    """Recent tickets folded without a first response whose row has one now (set without an event).

    `checked_at`: when the fold last looked; then only the first responses set since (minus
    FR_CHECK_MARGIN, for a transaction that set one and committed after that look) are read, on their index —
    not every ticket still waiting, which a backlog of unanswered tickets made every fold step and every
    报表 read again. None (a new fold state, after a backfill): every waiting ticket of FR_RECHECK_DAYS."""
    since = (now - timedelta(days=FR_RECHECK_DAYS)).astimezone(zone).date()
    waiting_facts = (FACTS.c.created_day >= since, FACTS.c.first_response_s.is_(None), FACTS.c.status != "cancelled")
    found: set[str] = set()
    if checked_at is not None:
        answered = [r[0] for r in execute(select(col(TicketRow.number)).where(
            col(TicketRow.first_response_at) >= checked_at - FR_CHECK_MARGIN))]
        for start in range(0, len(answered), CHUNK):
            found.update(r[0] for r in execute(select(FACTS.c.number).where(
                FACTS.c.number.in_(answered[start:start + CHUNK]), *waiting_facts)))
        return found
    waiting = [r[0] for r in execute(select(FACTS.c.number).where(*waiting_facts))]
    for start in range(0, len(waiting), CHUNK):
        found.update(r[0] for r in execute(select(col(TicketRow.number)).where(
            col(TicketRow.number).in_(waiting[start:start + CHUNK]), col(TicketRow.first_response_at).is_not(None))))
    return found


def _stored(execute: Execute, numbers: Sequence[str]) -> dict[str, TicketFacts]:
    out: dict[str, TicketFacts] = {}
    for start in range(0, len(numbers), CHUNK):
        for r in execute(select(FACTS).where(FACTS.c.number.in_(numbers[start:start + CHUNK]))):
            out[r.number] = fact_from_row(r)
    return out


_TRAIL = (select(col(AuditEventRow.ticket_number), col(AuditEventRow.kind), col(AuditEventRow.at),
                 col(AuditEventRow.payload))
          .where(col(AuditEventRow.kind).in_(TRAIL_KINDS)).order_by(col(AuditEventRow.seq)))


def compute_facts(execute: Execute, numbers: Sequence[str], zone: tzinfo) -> dict[str, TicketFacts]:
    """Facts of these tickets from their rows and trails (came_back not decided here)."""
    out: dict[str, TicketFacts] = {}
    for start in range(0, len(numbers), CHUNK):
        chunk = list(numbers[start:start + CHUNK])
        trails: dict[str, list[TrailEvent]] = defaultdict(list)
        for number, kind, at, payload in execute(_TRAIL.where(col(AuditEventRow.ticket_number).in_(chunk))):
            trails[number].append(TrailEvent(kind, at, payload or {}))
        for row in execute(select(TICKETS).where(TICKETS.c.number.in_(chunk))):
            ticket = ticket_from_row(row)
            out[ticket.number] = facts_of(ticket, trails.get(ticket.number, []), zone, asset_key(ticket))
    return out


def _fill(execute: Execute, plan: FoldPlan, numbers: Sequence[str], zone: tzinfo) -> None:
    plan.old = _stored(execute, numbers)
    plan.new = compute_facts(execute, numbers, zone)
    _decide_came_back(execute, plan)


def _decide_came_back(execute: Execute, plan: FoldPlan) -> None:
    """`came_back` of the new facts, and of other tickets on the same asset whose value they change."""
    involved: dict[tuple[str, str], datetime] = {}
    for f in (*plan.new.values(), *plan.old.values()):
        key = (f.asset_key[:200], f.category)
        involved[key] = min(involved.get(key, f.created_at), f.created_at)
    members: dict[tuple[str, str], dict[str, TicketFacts]] = defaultdict(dict)
    keys = sorted(involved)
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start:start + CHUNK]
        since = min(involved[k] for k in chunk) - ASSET_LOOKBACK
        for r in execute(select(FACTS).where(FACTS.c.asset_key.in_(sorted({k[0] for k in chunk})),
                                             FACTS.c.created_at >= since)):
            key = (r.asset_key, r.category)
            if key in involved and r.created_at >= involved[key] - ASSET_LOOKBACK:
                members[key][r.number] = fact_from_row(r)
    stored = {n: f for group in members.values() for n, f in group.items()}
    for group in members.values():
        for number in [n for n in group if n in plan.new]:
            del group[number]  # replaced below by its new facts (under its new key)
    for number, f in plan.new.items():
        members[(f.asset_key[:200], f.category)][number] = f
    for group in members.values():
        pool = list(group.values())
        for number, f in group.items():
            value = came_back(f, pool)
            if number in plan.new:
                plan.new[number].came_back = value
            elif value != f.came_back:
                plan.old[number] = stored[number]
                plan.new[number] = replace(f, came_back=value)


# --- phase 2: the write ---

def _dialect_insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (SQLite ≥ 3.24 and PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


def _insert_new(conn: Connection, table: Table) -> Any:
    """INSERT … ON CONFLICT DO NOTHING (another process started the fold at the same moment)."""
    return _dialect_insert(conn, table).on_conflict_do_nothing()


def _upsert(conn: Connection, table: Table, keys: Sequence[str], add: Sequence[str]) -> Any:
    statement = _dialect_insert(conn, table)
    return statement.on_conflict_do_update(
        index_elements=list(keys), set_={name: table.c[name] + statement.excluded[name] for name in add})


async def apply_fold(conn: AsyncConnection, plan: FoldPlan) -> bool:
    """Write the plan in the caller's transaction; False (nothing written) when the fold state is no
    longer the one the plan was made from."""
    return bool(await conn.run_sync(write_fold, plan))


def write_fold(conn: Connection, plan: FoldPlan) -> bool:
    """`apply_fold` on a synchronous connection: the report worker process writes its plans itself
    (PostgreSQL; bot/jobs/report_aggregates.py)."""
    new_state = {k: v for k, v in plan.new_state.items() if k in STATE.c}
    if plan.state is None or plan.reset:
        if plan.reset:
            assert plan.state is not None
            moved = conn.execute(delete(STATE).where(STATE.c.id == 1, STATE.c.zone == plan.state["zone"],
                                                     STATE.c.steps == plan.state["steps"]))
            if moved.rowcount != 1:
                return False
            for table in (FACTS, DAYS, ROLLUPS, VALUES, TECHS, WAITS, TOPS):
                conn.execute(delete(table))
        return bool(conn.execute(_insert_new(conn, STATE).values(**new_state)).rowcount == 1)
    first_look = plan.state.get("responses_checked_at") is None and plan.new_state.get("responses_checked_at")
    if not plan.new and not first_look and all(plan.new_state.get(k) == plan.state.get(k)
                                               for k in ("seq", "backfill_next_id")):
        # Nothing happened: no write (an idle service does not write every few seconds). The time of the
        # look for first responses then stays older: the next look reads a little more, never less.
        return True
    guard = [STATE.c.id == 1, STATE.c.steps == plan.state["steps"]]
    new_state["steps"] = plan.state["steps"] + 1
    if conn.execute(update(STATE).where(*guard).values(new_state)).rowcount != 1:
        return False
    if not plan.new:
        return True
    numbers = list(plan.new)
    for start in range(0, len(numbers), CHUNK):
        conn.execute(delete(FACTS).where(FACTS.c.number.in_(numbers[start:start + CHUNK])))
    conn.execute(_INSERT_FACTS, [fact_row(f) for f in plan.new.values()])
    d = deltas_of(plan.old, plan.new)
    day_rows = [{"day": k[0], "store_id": k[1], "category": k[2], "priority": k[3],
                 **{name: v.get(name, 0) for name in DAY_COUNTERS}} for k, v in d.days.items() if any(v.values())]
    if day_rows:
        conn.execute(_upsert(conn, DAYS, ("day", "store_id", "category", "priority"), DAY_COUNTERS), day_rows)
        conn.execute(_upsert(conn, ROLLUPS, ("dim", "day", "value", "priority"), DAY_COUNTERS),
                     rollup_rows(day_rows))
    value_rows = [{"kind": k[0], "day": k[1], "x": k[2], "y": k[3], "n": n} for k, n in d.values.items() if n]
    if value_rows:
        conn.execute(_upsert(conn, VALUES, ("kind", "day", "x", "y"), ("n",)), value_rows)
    tech_rows = [{"day": k[0], "assignee_id": k[1], "closed": v[0], "rating_sum": v[1], "rating_n": v[2]}
                 for k, v in d.technicians.items() if any(v)]
    if tech_rows:
        conn.execute(_upsert(conn, TECHS, ("day", "assignee_id"), ("closed", "rating_sum", "rating_n")), tech_rows)
    wait_rows = [{"day": k[0], "state": k[1], "stays": v[0], "micros": v[1]} for k, v in d.waits.items() if any(v)]
    if wait_rows:
        conn.execute(_upsert(conn, WAITS, ("day", "state"), ("stays", "micros")), wait_rows)
    if d.tops:
        _keep_top_stays(conn, d.tops)
    return True


def rollup_rows(day_rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """report_day_counts rows (or their differences) summed per report_day_rollups key."""
    sums: dict[tuple[str, date, str, str], list[int]] = {}
    for row in day_rows:
        for dim, value in (("all", ""), ("store", row["store_id"]), ("category", row["category"])):
            key = (dim, row["day"], value, row["priority"])
            total = sums.get(key)
            if total is None:
                total = sums[key] = [0] * len(DAY_COUNTERS)
            for index, name in enumerate(DAY_COUNTERS):
                total[index] += row[name]
    return [{"dim": k[0], "day": k[1], "value": k[2], "priority": k[3], **dict(zip(DAY_COUNTERS, v, strict=True))}
            for k, v in sums.items() if any(v)]


def _keep_top_stays(conn: Connection, stays: list[tuple[date, str, str, datetime, int]]) -> None:
    by_key: dict[tuple[date, str], list[tuple[int, str, datetime]]] = defaultdict(list)
    for day, state, number, entered, micros in stays:
        by_key[(day, state)].append((micros, number, entered))
    for (day, state), candidates in by_key.items():
        kept = [(r.micros, r.number, r.entered_at) for r in conn.execute(
            select(TOPS.c.micros, TOPS.c.number, TOPS.c.entered_at).where(TOPS.c.day == day, TOPS.c.state == state))]
        present = {(n, e) for _, n, e in kept}
        merged = sorted(kept + [c for c in candidates if (c[1], c[2]) not in present], reverse=True)
        top, dropped = merged[:TOP_PER_DAY], merged[TOP_PER_DAY:]
        fresh = [{"day": day, "state": state, "number": n, "entered_at": e, "micros": m} for m, n, e in top
                 if (n, e) not in present]
        gone = [(n, e) for _, n, e in dropped if (n, e) in present]
        for number, entered in gone:
            conn.execute(delete(TOPS).where(TOPS.c.day == day, TOPS.c.state == state,
                                            TOPS.c.number == number, TOPS.c.entered_at == entered))
        if fresh:
            conn.execute(insert(TOPS), fresh)


# --- reads ---

@dataclass(frozen=True, slots=True)
class Filters:
    """The dashboards' filters (None: all); 报表 uses none."""

    store_ids: frozenset[str] | None = None  # the staff's scope and/or the chosen store
    category: str | None = None
    technician: str | None = None

    def match(self, f: TicketFacts) -> bool:
        return ((self.store_ids is None or f.store_id in self.store_ids)
                and (self.category is None or f.category == self.category)
                and (self.technician is None or f.assignee_id == self.technician))

    def where(self, table: Table) -> list[Any]:
        out: list[Any] = []
        if self.store_ids is not None:
            out.append(table.c.store_id.in_(sorted(self.store_ids)))
        if self.category is not None:
            out.append(table.c.category == self.category)
        if self.technician is not None and "assignee_id" in table.c:
            out.append(table.c.assignee_id == self.technician)
        return out


@dataclass(slots=True)
class Live:
    """What is not folded yet: stored (old) and current (new) facts of the tickets changed since."""

    old: dict[str, TicketFacts]
    new: dict[str, TicketFacts]

    @property
    def numbers(self) -> set[str]:
        return set(self.new) | set(self.old)


def live_part(execute: Execute, state: dict[str, Any], zone: tzinfo, now: datetime) -> Live:
    numbers, _ = _touched_since(execute, int(state["seq"]), None)
    numbers = sorted(set(numbers) | _first_responses_arrived(execute, zone, now, state.get("responses_checked_at")))
    plan = FoldPlan(state, state)
    _fill(execute, plan, numbers, zone)
    return Live(plan.old, plan.new)


def _in_days(day: date | None, first: date, last: date) -> bool:
    return day is not None and first <= day <= last


def day_sums(execute: Execute, first: date, last: date, filters: Filters, live: Live,
             group: str | None = None) -> dict[str, dict[str, int]]:
    """Counters summed over the days (by reported day / closed day as each counter is kept), per
    `group` ("priority", "store_id", "category", "day" (ISO); None: one group ""), the live part included.
    A technician filter reads the facts (the day rows have no technician)."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(DAY_COUNTERS, 0))
    if filters.technician is None:
        rollup = _rollup(filters, group)
        if rollup is not None:  # one grain summed already: a 30-day period is ≤ 30 × its values × 3 rows
            dim, values = rollup
            table = ROLLUPS
            where = [ROLLUPS.c.dim == dim, ROLLUPS.c.day >= first, ROLLUPS.c.day <= last]
            where += [] if values is None else [ROLLUPS.c.value.in_(sorted(values))]
            key = None if group is None else ROLLUPS.c.value if group in ("store_id", "category") \
                else ROLLUPS.c[group]
        else:
            table = DAYS
            where = [DAYS.c.day >= first, DAYS.c.day <= last, *filters.where(DAYS)]
            key = DAYS.c[group] if group else None
        columns = [func.sum(table.c[name]) for name in DAY_COUNTERS]
        statement = select(*([key] if key is not None else []), *columns).where(*where)
        if key is not None:
            statement = statement.group_by(key)
        for row in execute(statement):
            values = row[1:] if key is not None else row
            name = "" if key is None else (row[0].isoformat() if group == "day" else row[0])
            if values[0] is None:
                continue
            out[name] = {n: int(v or 0) for n, v in zip(DAY_COUNTERS, values, strict=True)}
        stored: Iterable[TicketFacts] = ()
    else:
        stored = _facts_in(execute, first, last, filters, exclude=live.numbers)
    adjust = [(f, +1) for f in stored]
    adjust += [(f, -1) for f in live.old.values() if filters.technician is None]
    adjust += [(f, +1) for f in live.new.values()]
    for f, sign in adjust:
        if not filters.match(f):
            continue
        for (day, *dims), counters in day_counts_of(f):
            if not first <= day <= last:
                continue
            name = "" if group is None else day.isoformat() if group == "day" else \
                dict(zip(("store_id", "category", "priority"), dims, strict=True))[group]
            row = out[name]
            for counter, value in counters.items():
                row[counter] += sign * value
    return dict(out)


def _rollup(filters: Filters, group: str | None) -> tuple[str, frozenset[str] | None] | None:
    """The report_day_rollups grain that answers sums `group`ed under `filters`: (dim, the values
    to read; None: all), or None when only report_day_counts' full grain does (two filters at once)."""
    if filters.technician is not None:
        return None
    if group == "store_id":
        return ("store", filters.store_ids) if filters.category is None else None
    if group == "category":
        if filters.store_ids is not None:
            return None
        return "category", None if filters.category is None else frozenset({filters.category})
    if filters.category is None:
        return ("all", None) if filters.store_ids is None else ("store", filters.store_ids)
    return ("category", frozenset({filters.category})) if filters.store_ids is None else None


def _facts_in(execute: Execute, first: date, last: date, filters: Filters, *, exclude: set[str],
              closed_too: bool = True) -> list[TicketFacts]:
    """Stored facts reported (or, with closed_too, closed) in the days, filtered, minus `exclude`."""
    when: Any = FACTS.c.created_day.between(first, last)
    if closed_too:
        when = or_(when, FACTS.c.closed_day.between(first, last))
    rows = execute(select(FACTS).where(when, *filters.where(FACTS)))
    return [f for f in map(fact_from_row, rows) if f.number not in exclude]


def wait_histograms(execute: Execute, first: date, last: date, filters: Filters, live: Live
                    ) -> tuple[dict[int | None, int], dict[int | None, int]]:
    """{whole seconds (None: none yet): tickets} of first response and of acceptance, reported in the days."""
    hists: tuple[dict[int | None, int], dict[int | None, int]] = (defaultdict(int), defaultdict(int))
    if filters == Filters():
        changes = [(f, -1) for f in live.old.values()] + [(f, +1) for f in live.new.values()]
        changes = [(f, sign) for f, sign in changes if first <= f.created_day <= last]
        return (_bucketed(execute, "fr", first, last, [(f.first_response_s, sign) for f, sign in changes]),
                _bucketed(execute, "acc", first, last, [(f.accept_s, sign) for f, sign in changes]))
    for index, column in enumerate((FACTS.c.first_response_s, FACTS.c.accept_s)):
        for value, count in execute(select(column, func.count()).where(
                FACTS.c.created_day.between(first, last), *filters.where(FACTS)).group_by(column)):
            hists[index][value] += int(count)
    for f, sign in [(f, -1) for f in live.old.values()] + [(f, +1) for f in live.new.values()]:
        if filters.match(f) and first <= f.created_day <= last:
            hists[0][f.first_response_s] += sign
            hists[1][f.accept_s] += sign
    return hists


def _bucketed(execute: Execute, kind: str, first: date, last: date, live: list[tuple[int | None, int]]
              ) -> dict[int | None, int]:
    """The period's histogram as wait_figures and the dashboards' buckets read it, from ≤ 30 × buckets
    rows: every bucket's count at its upper edge, except the ≤ 3 buckets holding the ranks of the median
    and the p90, read exactly (their per-day values). Every threshold the figures use is a bucket edge,
    so the figures are those of the exact histogram."""
    counts: dict[int, int] = defaultdict(int)
    for bucket, n in execute(select(VALUES.c.x, func.sum(VALUES.c.n)).where(
            VALUES.c.kind == kind + "b", VALUES.c.day.between(first, last)).group_by(VALUES.c.x)):
        counts[int(bucket)] += int(n or 0)
    for value, sign in live:
        counts[wait_bucket(value)] += sign
    hist: dict[int | None, int] = defaultdict(int)
    if counts.get(NONE_X):
        hist[None] = counts[NONE_X]
    filled = sorted((b, n) for b, n in counts.items() if b != NONE_X and n > 0)
    total = sum(n for _, n in filled)
    ranks = {(total + 1) // 2, total // 2, total // 2 + 1, max(1, -(-9 * total // 10))} if total else set()
    seen = 0
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    for bucket, n in filled:
        if not any(seen < rank <= seen + n for rank in ranks):
            hist[bucket_span(bucket)[1]] += n
        else:  # one seek per day into this bucket's values
            low, high = bucket_span(bucket)
            for value, count in execute(select(VALUES.c.x, func.sum(VALUES.c.n)).where(
                    VALUES.c.kind == kind, VALUES.c.day.in_(days), VALUES.c.x.between(low, high))
                    .group_by(VALUES.c.x)):
                hist[int(value)] += int(count or 0)
            for value, sign in live:
                if value is not None and wait_bucket(value) == bucket:
                    hist[value] += sign
        seen += n
    return hist


@dataclass(frozen=True, slots=True)
class WaitFigures:
    count: int
    skipped: int
    median_s: float | None
    p90_s: int | None
    within: float | None


def wait_figures(hist: dict[int | None, int]) -> WaitFigures:
    """Median (statistics.median's: the mean of the middle two), nearest-rank p90 and the share ≤ 90 s
    of the histogram, as core/reports/metrics.py computes them on the values."""
    skipped = hist.get(None, 0)
    values = sorted((v, n) for v, n in hist.items() if v is not None and n > 0)
    total = sum(n for _, n in values)
    if not total:
        return WaitFigures(0, skipped, None, None, None)

    def nth(rank: int) -> int:  # 1-based
        seen = 0
        for value, n in values:
            seen += n
            if seen >= rank:
                return value
        return values[-1][0]

    median = nth((total + 1) // 2) if total % 2 else statistics.mean((nth(total // 2), nth(total // 2 + 1)))
    p90 = nth(max(1, -(-9 * total // 10)))
    within = sum(n for v, n in values if v <= FIRST_RESPONSE_TARGET_S) / total
    return WaitFigures(total, skipped, float(median), p90, within)


def running_outcomes(execute: Execute, first: date, last: date, filters: Filters, live: Live, now: datetime
                     ) -> dict[str, dict[str, dict[str, int]]]:
    """{priority: {track: {"breached"|"running": n}}} of the tracks still to be decided by their deadline."""
    out: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for track, prefix in (("response", "resp"), ("resolution", "res")):
        due = FACTS.c[f"{prefix}_due"]
        late = and_(due < now, FACTS.c.res_paused.is_(False)) if track == "resolution" else due < now
        # settled_outcome "running": a track, not met (met NULL), no breach recorded; outcome_at decides
        for priority, breached, running in execute(
                select(FACTS.c.priority, func.sum(case((late, 1), else_=0)), func.sum(case((late, 0), else_=1)))
                .where(FACTS.c.running.is_(True), FACTS.c.created_day.between(first, last),
                       FACTS.c[f"{prefix}_present"].is_(True), FACTS.c[f"{prefix}_met"].is_(None),
                       FACTS.c[f"{prefix}_breached"].is_(False), *filters.where(FACTS), *_not_live(live))
                .group_by(FACTS.c.priority)):
            out[priority][track]["breached"] += int(breached or 0)
            out[priority][track]["running"] += int(running or 0)
    for f in (f for f in live.new.values() if filters.match(f) and first <= f.created_day <= last):
        for track in ("response", "resolution"):
            if settled_outcome(f, track) == "running":
                outcome = outcome_at(f, track, now)
                if outcome is not None:
                    out[f.priority][track][outcome] += 1
    return out


def _not_live(live: Live) -> list[Any]:
    return [FACTS.c.number.not_in(sorted(live.numbers))] if live.numbers else []


def ongoing_stays(execute: Execute, first: date, last: date, filters: Filters, live: Live, now: datetime,
                  state: str | None = None, limit: int = 10) -> list[tuple[str, str, datetime]]:
    """(number, state, since) of the open tickets reported in the days whose current stay (in `state`)
    is at least MIN_WAIT long and may be among the `limit` longest: the earliest `since`, ties included
    (the rest of the open tickets count in `ongoing_totals` only)."""
    where = [FACTS.c.is_open.is_(True), FACTS.c.created_day.between(first, last), FACTS.c.ongoing_state.is_not(None),
             FACTS.c.ongoing_since <= now - MIN_WAIT, *filters.where(FACTS), *_not_live(live)]
    where += [FACTS.c.ongoing_state == state] if state else []
    cut = execute(select(FACTS.c.ongoing_since).where(*where).order_by(FACTS.c.ongoing_since)
                  .limit(1).offset(limit - 1))
    if cut:
        where.append(FACTS.c.ongoing_since <= cut[0][0])
    rows = execute(select(FACTS.c.number, FACTS.c.ongoing_state, FACTS.c.ongoing_since).where(*where))
    out = [(r[0], r[1], r[2]) for r in rows]
    out += [(f.number, f.ongoing_state, f.ongoing_since) for f in live.new.values()
            if f.is_open and f.ongoing_state and f.ongoing_since and filters.match(f)
            and first <= f.created_day <= last and (state is None or f.ongoing_state == state)]
    return out


def ongoing_totals(execute: Execute, first: date, last: date, filters: Filters, live: Live, now: datetime
                   ) -> dict[str, tuple[int, int]]:
    """{state: (micros, stays)} of the current stays (≥ MIN_WAIT, to `now`) of the open tickets reported
    in the days: one grouped read of the open tickets' index (Σ(now − since) = n·now − Σsince).

    Σsince is summed as whole seconds and the microseconds left over, each exact: the epoch microseconds
    themselves (~1.8·10¹⁵ each) overflow SQLite's 64-bit SUM ("integer overflow") past ~5,100 tickets in
    one state — a day's backlog behind a stalled dispatch."""
    out: dict[str, tuple[int, int]] = {}
    now_us = epoch_us(now)
    since = FACTS.c.ongoing_since_us
    for state, count, seconds, micros in execute(
            select(FACTS.c.ongoing_state, func.count(), func.sum(since // 1_000_000), func.sum(since % 1_000_000))
            .where(FACTS.c.is_open.is_(True), FACTS.c.created_day.between(first, last),
                   FACTS.c.ongoing_state.is_not(None), FACTS.c.ongoing_since <= now - MIN_WAIT,
                   *filters.where(FACTS), *_not_live(live)).group_by(FACTS.c.ongoing_state)):
        since_sum = int(seconds or 0) * 1_000_000 + int(micros or 0)
        out[state] = (int(count) * now_us - since_sum, int(count))
    minimum = MIN_WAIT // timedelta(microseconds=1)
    for f in live.new.values():
        if f.is_open and f.ongoing_state and f.ongoing_since and filters.match(f) \
                and first <= f.created_day <= last:
            micros = (now - f.ongoing_since) // timedelta(microseconds=1)
            if micros >= minimum:
                total, count = out.get(f.ongoing_state, (0, 0))
                out[f.ongoing_state] = (total + micros, count + 1)
    return out


_BREACH_COLUMNS = {"response": ("resp_present", "resp_met_at", "resp_due", "resp_breached", "resp_ack"),
                   "resolution": ("res_present", "res_met_at", "res_due", "res_breached", "res_ack")}


def _breach_where(track: str, now: datetime) -> list[Any]:
    present, met_at, due, breached, _ = (FACTS.c[name] for name in _BREACH_COLUMNS[track])
    late = due < now if track == "response" else and_(due < now, FACTS.c.res_paused.is_(False))
    return [FACTS.c.is_open.is_(True), present.is_(True), met_at.is_(False), due.is_not(None),
            or_(breached.is_(True), late)]


def open_breach_list(execute: Execute, filters: Filters, live: Live, now: datetime, limit: int = 10
                     ) -> tuple[int, list[OpenBreach]]:
    """How many open breaches, and the `limit` longest overdue (metrics.open_breaches's order)."""
    count = 0
    found: list[tuple[datetime, str, int, OpenBreach]] = []
    for index, track in enumerate(("response", "resolution")):
        due, ack = FACTS.c[_BREACH_COLUMNS[track][2]], FACTS.c[_BREACH_COLUMNS[track][4]]
        where = [*_breach_where(track, now), *filters.where(FACTS), *_not_live(live)]
        # one scan: the first `limit` rows, each with the count of all (a window over the whole result)
        rows = execute(select(FACTS.c.number, due, FACTS.c.assignee_id, ack, func.count().over())
                       .where(*where).order_by(due, FACTS.c.number).limit(limit))
        count += int(rows[0][4]) if rows else 0
        for number, when, assignee, acked, _ in rows:
            found.append((when, number, index, OpenBreach(number, track, when, now - when, assignee or None, acked)))
    for f in live.new.values():
        if not filters.match(f):
            continue
        for index, track in enumerate(("response", "resolution")):
            when = open_breach_due(f, track, now)
            if when is not None:
                count += 1
                found.append((when, f.number, index, OpenBreach(f.number, track, when, now - when,
                                                                f.assignee_id or None, getattr(f, track).ack_by)))
    found.sort(key=lambda item: (item[0], item[1], item[2]))
    return count, [item[3] for item in found[:limit]]


def pending_root_causes(execute: Execute, live: Live, now: datetime) -> list[tuple[str, str, str]]:
    """(number, track, owner) of 超时根因分析 not filled in, on open tickets past a deadline, by number."""
    rows = execute(select(FACTS.c.number, FACTS.c.root_causes, FACTS.c.resp_due, FACTS.c.res_due).where(
        FACTS.c.rca_pending.is_(True), FACTS.c.is_open.is_(True), *_not_live(live)))
    found = {r[0]: [tuple(x) for x in r[1]] for r in rows if (r[2] and r[2] < now) or (r[3] and r[3] < now)}
    for f in live.new.values():
        if f.is_open and f.root_causes and any(t.due is not None and t.due < now for t in (f.response, f.resolution)):
            found[f.number] = [tuple(x) for x in f.root_causes]
    return [(n, str(track), str(owner)) for n in sorted(found) for track, owner in found[n]]


def top_stays(execute: Execute, first: date, last: date, live: Live, now: datetime, state: str | None,
              ongoing: Sequence[tuple[str, str, datetime]], limit: int = 10
              ) -> list[tuple[str, str, datetime, int, bool]]:
    """(number, state, entered, micros, ongoing) longest first: the days' top tens, the ongoing stays of
    open tickets, and the live part's stays (unfiltered: 报表's TOP10)."""
    where = [TOPS.c.day.between(first, last)] + ([TOPS.c.state == state] if state else [])
    # Only the rows that can make the top: a live stay may replace a stored one (same key, another
    # length), so `limit` + that many longest stored ones, ties included (an ongoing stay never has the
    # key of a completed one). Rows in key order, as the dict below was always filled.
    replaced = sum(1 for f in live.new.values() if first <= f.created_day <= last
                   for s in f.stays if state is None or s.state == state)
    cut = execute(select(TOPS.c.micros).where(*where).order_by(TOPS.c.micros.desc())
                  .limit(1).offset(limit - 1 + replaced))
    if cut:
        where.append(TOPS.c.micros >= cut[0][0])
    found: dict[tuple[str, str, datetime], tuple[int, bool]] = {
        (r.number, r.state, r.entered_at): (int(r.micros), False)
        for r in execute(select(TOPS).where(*where).order_by(*TOPS.primary_key.columns))}
    for f in live.new.values():
        if first <= f.created_day <= last:
            for s in f.stays:
                if state is None or s.state == state:
                    found[(f.number, s.state, s.entered_at)] = (s.micros, False)
    minimum = MIN_WAIT // timedelta(microseconds=1)
    for number, current, since in ongoing:
        if state is None or current == state:
            micros = max(0, (now - since) // timedelta(microseconds=1))
            if micros >= minimum:
                found[(number, current, since)] = (micros, True)
    ordered = sorted(found.items(), key=lambda item: (item[1][0], item[0][0]), reverse=True)
    return [(n, s, e, m, is_ongoing) for (n, s, e), (m, is_ongoing) in ordered[:limit]]


def wait_totals(execute: Execute, first: date, last: date, live: Live,
                ongoing: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """{state: (micros, stays)} of the waits of tickets reported in the days (ongoing ones to `now`)."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for state, stays, micros in execute(select(WAITS.c.state, func.sum(WAITS.c.stays), func.sum(WAITS.c.micros))
                                        .where(WAITS.c.day.between(first, last)).group_by(WAITS.c.state)):
        totals[state][0] += int(micros or 0)
        totals[state][1] += int(stays or 0)
    for f, sign in [(f, -1) for f in live.old.values()] + [(f, +1) for f in live.new.values()]:
        if first <= f.created_day <= last:
            for s in f.stays:
                totals[s.state][0] += sign * s.micros
                totals[s.state][1] += sign
    for current, (micros, stays) in ongoing.items():  # ongoing_totals
        totals[current][0] += micros
        totals[current][1] += stays
    return {k: (v[0], v[1]) for k, v in totals.items() if v[1]}


def state_order() -> list[str]:
    return [s.value for s in TicketStatus]



# --- 报表 from the aggregates ---

def days_of(start: datetime, end: datetime, zone: tzinfo) -> tuple[date, date]:
    """The local days of a day-aligned period [start, end): first and last, both included."""
    return start.astimezone(zone).date(), (end - timedelta(microseconds=1)).astimezone(zone).date()


def _stats(figures: WaitFigures) -> FirstResponseStats:
    return FirstResponseStats(figures.count, figures.skipped,
                              None if figures.median_s is None else timedelta(seconds=figures.median_s),
                              None if figures.p90_s is None else timedelta(seconds=figures.p90_s), figures.within)


@dataclass(frozen=True, slots=True)
class AggregatedReport:
    figures: ReportFigures
    closed: int  # first-time fix: tickets closed in the period
    ftf_failed: int


def report_figures(execute: Execute, start: datetime, end: datetime, now: datetime, zone: tzinfo, zone_name: str,
                   state_filter: TicketStatus | None) -> AggregatedReport | None:
    """报表's figures from the aggregates and the live part; None while the aggregates are not ready
    (the caller computes from the tickets). Read again when a fold landed in between (a consistent cut)."""
    for _ in range(3):
        state = read_state(execute)
        if not ready(state, zone_name):
            return None
        assert state is not None
        if not of_this_chain(execute, state):  # another database's aggregates: folded again from scratch
            return None
        result = _report_figures(execute, state, start, end, now, zone, state_filter)
        if read_state(execute) == state:
            return result
    return result


def _report_figures(execute: Execute, state: dict[str, Any], start: datetime, end: datetime, now: datetime,
                    zone: tzinfo, state_filter: TicketStatus | None) -> AggregatedReport:
    first, last = days_of(start, end, zone)
    live = live_part(execute, state, zone, now)
    everything = Filters()
    by_priority = day_sums(execute, first, last, everything, live, group="priority")
    running = running_outcomes(execute, first, last, everything, live, now)
    compliance: dict[str, Compliance] = {}
    for priority in sorted(set(by_priority) | set(running)):
        sums = by_priority.get(priority, {})
        if not sums.get("reported") and priority not in running:
            continue
        c = Compliance()
        for track, prefix in (("response", "resp"), ("resolution", "res")):
            c.met[track] = sums.get(f"{prefix}_met", 0)
            c.breached[track] = sums.get(f"{prefix}_breached", 0) + running[priority][track]["breached"]
            c.running[track] = running[priority][track]["running"]
        compliance[priority] = c
    fr_hist, acc_hist = wait_histograms(execute, first, last, everything, live)
    breach_count, breaches = open_breach_list(execute, everything, live, now)
    root_causes = pending_root_causes(execute, live, now)
    state_name = state_filter.value if state_filter else None
    ongoing = ongoing_stays(execute, first, last, everything, live, now, state_name)
    top = [MetricStay(n, TicketStatus(s), e, timedelta(microseconds=m), is_ongoing)
           for n, s, e, m, is_ongoing in top_stays(execute, first, last, live, now, state_name, ongoing)]
    totals: list[tuple[TicketStatus, timedelta, int]] = []
    if state_filter is None:
        still = ongoing_totals(execute, first, last, everything, live, now)
        totals = order_totals((TicketStatus(s), timedelta(microseconds=m), n)
                              for s, (m, n) in wait_totals(execute, first, last, live, still).items())
    sums = {k: sum(v.get(k, 0) for v in by_priority.values()) for k in ("reported", "closed", "ftf_failed")}
    figures = ReportFigures(reported=sums["reported"], first_response=_stats(wait_figures(fr_hist)),
                            acceptance=_stats(wait_figures(acc_hist)), compliance=ordered_priorities(compliance),
                            breaches=breaches, breach_count=breach_count, root_causes=root_causes, top=top,
                            totals=totals)
    return AggregatedReport(figures, sums["closed"], sums["ftf_failed"])
