"""The console's ticket filter (bot/console/ticket_query.py): parsing, and its SELECT on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlmodel import col

from bot.console.ticket_query import (
    DEFAULT_PER,
    FilterError,
    TicketFilter,
    after,
    count_select,
    order_by,
    sla_state_of,
    sort_key,
    ticket_select,
    ticket_where,
)
from core.model import TicketStatus
from storage.database import Sessions
from storage.tables import CustomerPhoneRow, PersonRow, TicketRow

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
LEAD = timedelta(minutes=15)


# --- parsing ---


def test_empty_query_is_everything_newest_first() -> None:
    f = TicketFilter.parse({})
    assert f == TicketFilter()
    assert f.sort == "-created_at" and f.page == 1 and f.per == DEFAULT_PER


def test_values_labels_and_lists() -> None:
    f = TicketFilter.parse({"store": "S1, S2", "status": "待派单,in_progress", "category": "电气", "priority": "urgent",
                            "sla": "at_risk", "assignee": "t1,none", "from": "2026-12-01", "to": "2026-12-06",
                            "q": "  冷柜   不制冷 ", "sort": "-priority", "page": "3", "per": "20"})
    assert f.stores == ("S1", "S2")
    assert f.statuses == (TicketStatus.PENDING_DISPATCH, TicketStatus.IN_PROGRESS)
    assert f.priorities == ("紧急",) and f.assignees == ("t1", "") and f.q == "冷柜 不制冷"
    assert (f.page, f.per, f.sort, f.sla) == (3, 20, "-priority", "at_risk")
    assert TicketFilter.parse(f.to_query()) == f  # links (next page, export) carry the same filter
    assert f.to_query(page=None)["status"] == "pending_dispatch,in_progress" and "page" not in f.to_query(page=None)


def test_open_means_every_open_state() -> None:
    f = TicketFilter.parse({"status": "open"})
    assert set(f.statuses) == {s for s in TicketStatus if s.is_open}
    assert TicketFilter.parse({"status": "未结"}).statuses == f.statuses


@pytest.mark.parametrize(("query", "field"), [
    ({"status": "finished"}, "status"),
    ({"status": "待派单,<script>"}, "status"),
    ({"sla": "late"}, "sla"),
    ({"from": "2026-13-01"}, "from"),
    ({"from": "06/12/2026"}, "from"),
    ({"to": "yesterday"}, "to"),
    ({"from": "2026-12-06", "to": "2026-12-01"}, "to"),
    ({"page": "0"}, "page"),
    ({"page": "-1"}, "page"),
    ({"page": "x"}, "page"),
    ({"per": "100000"}, "per"),
    ({"sort": "password"}, "sort"),
    ({"sort": "created_at; drop table tickets"}, "sort"),
    ({"store": "S1 OR 1=1"}, "store"),
    ({"store": "%"}, "store"),
    ({"category": "a" * 65}, "category"),
    ({"assignee": "t'1"}, "assignee"),
    ({"priority": "asap"}, "priority"),
    ({"q": "长" * 101}, "q"),
    ({"store": ",".join(f"S{i}" for i in range(51))}, "store"),
])
def test_nonsense_names_the_field(query: dict[str, str], field: str) -> None:
    with pytest.raises(FilterError) as caught:
        TicketFilter.parse(query)
    assert caught.value.field == field
    assert f"（{field}）" in caught.value.message  # the Chinese message names the parameter


def test_stores_outside_scope() -> None:
    f = TicketFilter.parse({"store": "A,B"})
    assert f.stores_outside(frozenset({"A"})) == {"B"}
    assert f.stores_outside(None) == frozenset()


# --- the SELECT, on both databases ---


def _ticket(number: str, **values: Any) -> TicketRow:
    base: dict[str, Any] = {"customer_id": "c9", "description": "其他故障", "status": "triage",
                            "created_at": NOW - timedelta(days=1), "updated_at": NOW}
    base.update(values)
    return TicketRow(number=number, **base)


def _local(y: int, m: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, m, d, h, mi, tzinfo=SHANGHAI).astimezone(UTC)


TICKETS = [
    _ticket("GD-20261201-0001", store_id="A", status="pending_dispatch", category="电气", priority="紧急",
            customer_id="c1", description="冷柜不制冷", created_at=_local(2026, 12, 1, 10),
            response_due=NOW - timedelta(hours=1), resolution_due=NOW + timedelta(hours=5)),
    _ticket("GD-20261201-0002", store_id="A", status="in_progress", category="机械", assignee_id="t1",
            created_at=_local(2026, 12, 1, 11), response_due=NOW - timedelta(hours=2),
            resolution_due=NOW + timedelta(minutes=10)),
    _ticket("GD-20261202-0001", store_id="A", status="waiting_parts", category="机械", assignee_id="t2",
            priority="咨询", created_at=_local(2026, 12, 2, 9), resolution_due=NOW - timedelta(hours=1)),
    _ticket("GD-20261203-0001", store_id="B", status="closed", category="电气", assignee_id="t1",
            created_at=_local(2026, 12, 3, 0, 30), closed_at=NOW - timedelta(hours=3),
            resolution_due=NOW - timedelta(days=3)),
    _ticket("GD-20261203-0002", store_id="B", status="triage", subject="沪A12345", description="轮胎 100%_磨损",
            created_at=_local(2026, 12, 3, 12), response_due=NOW + timedelta(hours=1)),
    _ticket("GD-20261204-0001", store_id=None, status="reopened", assignee_id="t2",
            description="车架号 LSVAU2180N2183294 异响", created_at=_local(2026, 12, 4, 8),
            response_due=NOW - timedelta(days=1), resolution_due=NOW + timedelta(days=1)),
]


@pytest.fixture
async def sessions(db_sessions: Sessions) -> Sessions:
    async with db_sessions() as session:
        session.add_all([PersonRow(id="c1", name="张三", role="customer", phone="13800138000"),
                         PersonRow(id="c9", name="李四", role="customer"),
                         CustomerPhoneRow(phone="13900139000", person_id="c1")])
        session.add_all([TicketRow(**t.model_dump()) for t in TICKETS])
        await session.commit()
    return db_sessions


async def _numbers(sessions: Sessions, query: dict[str, str], store_ids: frozenset[str] | None = None,
                   **kw: Any) -> list[str]:
    kw = {"now": NOW, "reminder_lead": LEAD, "tz": SHANGHAI, **kw}
    stmt = ticket_select(TicketFilter.parse(query), store_ids, **kw)
    async with sessions() as session:
        return [row.number for row in (await session.execute(stmt)).scalars().all()]


def _short(numbers: list[str]) -> set[str]:
    return {n[3:] for n in numbers}


async def test_scope_limits_the_stores(sessions: Sessions) -> None:
    assert _short(await _numbers(sessions, {}, frozenset({"A"}))) == {"20261201-0001", "20261201-0002",
                                                                       "20261202-0001"}
    assert await _numbers(sessions, {}, frozenset()) == []  # a supervisor without stores sees nothing
    assert len(await _numbers(sessions, {})) == len(TICKETS)  # None: every store, and tickets without one
    # asking for another store inside a scope gives nothing (the routes answer 403 before)
    assert await _numbers(sessions, {"store": "B"}, frozenset({"A"})) == []
    assert _short(await _numbers(sessions, {"store": "B"})) == {"20261203-0001", "20261203-0002"}


async def test_status_category_priority_assignee(sessions: Sessions) -> None:
    assert _short(await _numbers(sessions, {"status": "待派单,检修中"})) == {"20261201-0001", "20261201-0002"}
    assert "20261203-0001" not in _short(await _numbers(sessions, {"status": "open"}))
    assert len(await _numbers(sessions, {"status": "open"})) == len(TICKETS) - 1
    assert _short(await _numbers(sessions, {"category": "电气"})) == {"20261201-0001", "20261203-0001"}
    assert _short(await _numbers(sessions, {"priority": "consult"})) == {"20261202-0001"}
    assert _short(await _numbers(sessions, {"assignee": "t1"})) == {"20261201-0002", "20261203-0001"}
    assert _short(await _numbers(sessions, {"assignee": "none"})) == {"20261201-0001", "20261203-0002"}


async def test_sla_states(sessions: Sessions) -> None:
    # 0001: waiting for a technician, response deadline passed. 0002: working, resolution in 10 min (< lead).
    # waiting_parts: paused, its old deadline does not count; reopened: the response clock is long met.
    assert _short(await _numbers(sessions, {"sla": "breached"})) == {"20261201-0001"}
    assert _short(await _numbers(sessions, {"sla": "at_risk"})) == {"20261201-0002"}
    assert _short(await _numbers(sessions, {"sla": "ok"})) == {"20261202-0001", "20261203-0001", "20261203-0002",
                                                               "20261204-0001"}
    by_state = {state: await _numbers(sessions, {"sla": state}) for state in ("breached", "at_risk", "ok")}
    for row in TICKETS:  # the Python classification agrees with the SQL one
        assert row.number in by_state[sla_state_of(row, now=NOW, reminder_lead=LEAD)]
    # a longer lead makes the triage ticket (due in 1 h) at risk
    assert "GD-20261203-0002" in await _numbers(sessions, {"sla": "at_risk"}, reminder_lead=timedelta(hours=2))
    # with waiting_parts not a pausing state, its passed deadline is a breach
    paused = await _numbers(sessions, {"sla": "breached"}, pause_states=frozenset())
    assert "GD-20261202-0001" in paused


async def test_dates_are_days_in_the_tenant_zone(sessions: Sessions) -> None:
    # 2026-12-03 00:30 in Shanghai is still 2026-12-02 in UTC: it belongs to the 3rd.
    assert _short(await _numbers(sessions, {"from": "2026-12-03", "to": "2026-12-03"})) == {"20261203-0001",
                                                                                           "20261203-0002"}
    assert _short(await _numbers(sessions, {"to": "2026-12-02"})) == {"20261201-0001", "20261201-0002",
                                                                      "20261202-0001"}
    assert _short(await _numbers(sessions, {"from": "2026-12-04"})) == {"20261204-0001"}


async def test_search(sessions: Sessions) -> None:
    assert _short(await _numbers(sessions, {"q": "冷柜"})) == {"20261201-0001"}  # description
    assert _short(await _numbers(sessions, {"q": "张三"})) == {"20261201-0001"}  # customer's name
    assert _short(await _numbers(sessions, {"q": "138 0013 8000"})) == {"20261201-0001"}  # people.phone
    assert _short(await _numbers(sessions, {"q": "+86 139-0013-9000"})) == {"20261201-0001"}  # customer_phones
    assert _short(await _numbers(sessions, {"q": "沪a12345"})) == {"20261203-0002"}  # subject, any case
    assert _short(await _numbers(sessions, {"q": "GD-20261202-0001"})) == {"20261202-0001"}  # number
    assert _short(await _numbers(sessions, {"q": "100%_"})) == {"20261203-0002"}  # wildcards are literal
    assert _short(await _numbers(sessions, {"q": "lsvau2180n2183294"})) == {"20261204-0001"}  # a VIN is text
    assert _short(await _numbers(sessions, {"q": "12345"})) == {"20261203-0002"}  # too short for a phone
    assert await _numbers(sessions, {"q": "%%"}) == []
    assert await _numbers(sessions, {"q": "0_%"}) == []  # as wildcards it would match "100%_"


async def test_sort_and_pages(sessions: Sessions) -> None:
    newest_first = await _numbers(sessions, {})
    assert newest_first == sorted(newest_first, key=lambda n: next(t.created_at for t in TICKETS if t.number == n),
                                  reverse=True)
    assert (await _numbers(sessions, {"sort": "created_at"})) == list(reversed(newest_first))
    assert (await _numbers(sessions, {"sort": "priority"}))[0] == "GD-20261201-0001"  # 紧急 first
    assert (await _numbers(sessions, {"sort": "-priority"}))[0] == "GD-20261202-0001"  # 咨询 first
    by_due = await _numbers(sessions, {"sort": "response_due"})
    assert by_due[0] == "GD-20261204-0001" and set(by_due[-2:]) == {"GD-20261202-0001", "GD-20261203-0001"}
    assert set((await _numbers(sessions, {"sort": "-response_due"}))[-2:]) == set(by_due[-2:])  # NULLs last
    pages = [await _numbers(sessions, {"per": "4", "page": str(p)}) for p in (1, 2, 3)]
    assert pages[0] + pages[1] == newest_first and pages[2] == []
    everything = await _numbers(sessions, {"per": "1"}, paginate=False)
    assert everything == newest_first


async def test_counts_per_status(sessions: Sessions) -> None:
    f = TicketFilter.parse({"status": "closed", "store": "A,B"})
    async with sessions() as session:
        counts = dict((await session.execute(count_select(f, None, now=NOW, reminder_lead=LEAD))).all())
        assert counts == {"pending_dispatch": 1, "in_progress": 1, "waiting_parts": 1, "closed": 1, "triage": 1}
        scoped = count_select(f, frozenset({"B"}), now=NOW, reminder_lead=LEAD, ignore_status=False)
        assert dict((await session.execute(scoped)).all()) == {"closed": 1}


@pytest.mark.parametrize("sort", ["-created_at", "created_at", "priority", "-priority", "response_due",
                                  "-response_due", "category", "-assignee", "number", "-number", "status"])
async def test_keyset_batches_read_the_same_order(sessions: Sessions, sort: str) -> None:
    """Reading a list in batches of 2 after the last row (the exports) gives the list's order exactly."""
    f = TicketFilter.parse({"sort": sort})
    whole = await _numbers(sessions, {"sort": sort}, paginate=False)
    key = sort_key(f).label("sort_key")
    read: list[str] = []
    last: tuple[Any, str] | None = None
    async with sessions() as session:
        while True:
            stmt = select(col(TicketRow.number), key).where(
                *ticket_where(f, None, now=NOW, reminder_lead=LEAD)).order_by(*order_by(f)).limit(2)
            if last is not None:
                stmt = stmt.where(after(f, *last))
            rows = (await session.execute(stmt)).all()
            if not rows:
                break
            read += [r[0] for r in rows]
            last = (rows[-1][1], rows[-1][0])
    assert read == whole
