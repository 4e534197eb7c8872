"""Report aggregates (issues 22, 24): the fold keeps per-ticket facts and per-day sums; 报表 read from
them says exactly what it says when computed from the tickets — on a prefilled database with open,
breached, reworked and waiting tickets, and on a live service with changes not folded yet — on SQLite
and PostgreSQL; folding is idempotent and safe with several folders at once."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

import bot.chat.lifecycle  # noqa: F401  (registers the first-time-fix section)
from bot.chat.report_reads import ReportReads
from bot.chat.reports import _SECTIONS, parse_period, raw_report_job, report_job
from bot.jobs.report_aggregates import ReportAggregator, plan_step
from core.clock import FixedClock
from core.model import TicketStatus
from storage import report_store
from storage.database import create_engine, session_factory, sqlite_path
from storage.outbox import record_first_response
from storage.report_aggregates import (
    DAYS,
    EVENT_BATCH,
    FACTS,
    MIN_WAIT,
    ROLLUPS,
    STATE,
    TECHS,
    VALUES,
    Filters,
    Live,
    _first_responses_arrived,
    apply_fold,
    epoch_us,
    ongoing_totals,
)
from storage.report_dashboard import dashboard_job
from storage.tables import StoreRow, TicketRow
from storage.tables_reports import REPORT_TABLES
from tests.audit_support import ROOT
from tests.playground_client import PlaygroundUser
from tests.sla_support import advance_to, assign_and_accept, at, fixed_clock_app, force, move, report, runtime
from tests.statements import statements_sent

ZONE = ZoneInfo("Asia/Shanghai")
KEY = "report-aggregates-test-key-0123456789abcdef"
PERIODS = (["7天"], ["30天"], ["今天"], ["45天"], ["30天", "等待备件"], ["45天", "待客户签字"])


def shim(engine: AsyncEngine, now: datetime) -> Any:
    """What ReportAggregator reads of a runtime: the engine, its sessions, the clock and the zone."""
    return SimpleNamespace(engine=engine, sessions=session_factory(engine), clock=FixedClock(now),
                           service=SimpleNamespace(config=SimpleNamespace(timezone=ZONE)))


def prefill(target: list[str], tickets: int = 1500) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "prefill_db.py"), *target, "--tickets", str(tickets),
                           "--days", "45", "--audit-key", KEY, "--heavy-customer", "10", "--full-trail",
                           "--open-share", "0.05"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr


async def texts(reads: ReportReads, now: datetime, words: list[str]) -> tuple[str, str]:
    period, state = parse_period(words, now, ZONE)
    aggregated = await reads.run(report_job, period, now, ZONE, state, list(_SECTIONS))
    raw = await reads.run(raw_report_job, period, now, ZONE, state, list(_SECTIONS))
    return aggregated, raw


@asynccontextmanager
async def report_tables(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """An engine that sees the report tables: on a SQLite file they are in a file of their own, with the
    service's attached (storage/report_store.py); elsewhere the engine itself."""
    path = sqlite_path(engine.url.render_as_string(hide_password=False))
    if path is None:
        yield engine
        return
    reports = report_store.async_engine(path)
    try:
        yield reports
    finally:
        await reports.dispose()


async def day_rows(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    async with report_tables(engine) as reports, reports.connect() as conn:
        return [tuple(r) for r in await conn.execute(select(DAYS).order_by(*DAYS.primary_key.columns))]



@pytest.fixture(params=["sqlite", "postgres"])
def prefilled(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "prefilled.db"
        prefill(["--sqlite", str(path)])
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("scratch_postgres")
    prefill(["--database-url", url])
    return url


@pytest.fixture
async def engine_of(prefilled: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(prefilled)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_figures_from_the_aggregates_equal_the_raw_computation(engine_of: AsyncEngine) -> None:
    engine = engine_of
    now = datetime.now(UTC) + timedelta(minutes=5)
    reads = ReportReads(engine)
    before, raw = await texts(reads, now, ["30天"])
    assert before == raw  # not backfilled yet: computed from the tickets
    today = now.astimezone(ZONE).date()
    waiting = await reads.run(dashboard_job, today - timedelta(days=29), today, now, "Asia/Shanghai", Filters())
    assert not waiting.ready  # the dashboards say the figures are being prepared

    aggregator = ReportAggregator(shim(engine, now))
    steps = await aggregator.catch_up()
    assert steps >= 3  # init, the backfill batches (BACKFILL_BATCH tickets each), the first incremental step
    async with report_tables(engine) as reports, reports.connect() as conn:
        facts = (await conn.execute(select(func.count()).select_from(FACTS))).scalar_one()
        tickets = (await conn.execute(select(func.count()).select_from(TicketRow))).scalar_one()
        reported = (await conn.execute(select(func.sum(DAYS.c.reported)))).scalar_one()
        state = (await conn.execute(select(STATE))).one()
    assert facts == tickets == reported == 1500
    assert state.backfill_next_id is None and state.zone == "Asia/Shanghai"

    for words in PERIODS:
        aggregated, raw = await texts(reads, now, words)
        assert aggregated == raw, (words, aggregated, raw)
    assert "未关闭的超时 0 项" not in raw and "一次修复率：" in raw and "（仍在此状态）" in raw  # the data has them
    board = await reads.run(dashboard_job, today - timedelta(days=29), today, now, "Asia/Shanghai", Filters())
    assert board.ready and board.totals["reported"] > 0 and board.backlog_total > 0 and board.blocked_top
    assert board.photo_rating_r is not None and board.photo_rating_r > 0.3  # the prefill's photos ↔ rating link

    # Idempotent: tickets folded again (the watermark moved back) change no sum, and the same plan
    # written twice is refused the second time by the compare-and-set.
    # (The watermark moved by hand has no hash: trusted, as a state folded before the hash was kept.)
    rows = await day_rows(engine)
    async with report_tables(engine) as reports:
        async with reports.begin() as conn:
            await conn.execute(STATE.update().values(seq=STATE.c.seq - 3000, seq_hash=None))
        plan = await reads.run(plan_step, "Asia/Shanghai", now)
        assert plan.changed > 50  # one step: EVENT_BATCH events (~13 per prefilled ticket); catch_up folds the rest
        # A step is bounded (3,000 events back is more than one step; issue 24).
        assert plan.new_state["more"] and plan.state is not None
        assert plan.new_state["seq"] - plan.state["seq"] == EVENT_BATCH
        async with reports.begin() as conn:
            assert await apply_fold(conn, plan)
        async with reports.begin() as conn:
            assert not await apply_fold(conn, plan)
    assert await day_rows(engine) == rows
    await aggregator.catch_up()
    assert await day_rows(engine) == rows
    for words in PERIODS[:2]:
        aggregated, raw = await texts(reads, now, words)
        assert aggregated == raw


async def test_on_postgres_the_worker_process_plans_and_writes_the_fold(scratch_postgres: str) -> None:
    """Issues 20, 24: on PostgreSQL the fold is read, built and written by the report worker process; the
    service's engine sends not one statement for it (no rows decoded on its loop, no thread taking its
    interpreter lock). A step waits for a write transaction of the service on the fold state, then goes on."""
    prefill(["--database-url", scratch_postgres])
    engine = create_engine(scratch_postgres)
    try:
        await _fold_in_the_worker(engine)
    finally:
        await engine.dispose()


async def _fold_in_the_worker(engine: AsyncEngine) -> None:
    now = datetime.now(UTC) + timedelta(minutes=5)
    aggregator = ReportAggregator(shim(engine, now))
    async with statements_sent(engine, with_control=True) as sent:
        await aggregator.catch_up()
    assert sent == []
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(FACTS))).scalar_one() == 1500
        assert (await conn.execute(select(func.sum(DAYS.c.reported)))).scalar_one() == 1500

    async with engine.begin() as conn:  # the last 100 events to fold again: the next step has to write
        await conn.execute(STATE.update().values(seq=STATE.c.seq - 100, seq_hash=None))
    steps_written = aggregator.written
    async with engine.begin() as conn:  # a transaction of the service holds the fold state's row meanwhile
        await conn.execute(select(STATE).with_for_update())
        step = asyncio.ensure_future(aggregator.step())
        await asyncio.sleep(0.5)
        assert not step.done()  # waiting for the row, not failed
    plan = await step
    assert aggregator.written == steps_written + 1
    assert plan.state is not None and plan.new_state["seq"] - plan.state["seq"] == 100
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.sum(DAYS.c.reported)))).scalar_one() == 1500  # folded again: same


async def test_on_sqlite_the_worker_folds_into_a_file_of_its_own_while_the_service_holds_its_lock(
        tmp_path: Path) -> None:
    """Issues 20, 24: on a SQLite file the report worker process reads both files and writes the aggregates
    in the reports file beside the service's (storage/report_store.py): the service's connection sends
    not one statement for the fold, its own copies of the report tables stay empty, and a step goes through
    while a service transaction holds the service file's write lock (written there, a step queued for that
    lock behind the service's group commits: 0.6-4 s under intake, docs/benchmarks.md)."""
    path = tmp_path / "fold.db"
    prefill(["--sqlite", str(path)], tickets=300)
    engine = create_engine(f"sqlite:///{path}")
    try:
        aggregator = ReportAggregator(shim(engine, datetime.now(UTC) + timedelta(minutes=5)))
        async with statements_sent(engine, with_control=True) as sent:
            await aggregator.catch_up()
        assert sent == []
        # Each step's commit is copied back and the log started over (it grew without end otherwise).
        log = report_store.report_store_path(path).with_name(f"{path.name}{report_store.SUFFIX}-wal")
        assert not log.exists() or log.stat().st_size == 0
        async with report_tables(engine) as reports:
            async with reports.connect() as conn:
                assert (await conn.execute(select(func.count()).select_from(FACTS))).scalar_one() == 300
                assert (await conn.execute(select(func.sum(DAYS.c.reported)))).scalar_one() == 300
            async with reports.begin() as conn:  # the last 100 events to fold again: the next step has to write
                await conn.execute(STATE.update().values(seq=STATE.c.seq - 100, seq_hash=None))
        async with engine.connect() as conn:
            assert (await conn.execute(select(func.count()).select_from(FACTS))).scalar_one() == 0
            assert (await conn.execute(select(func.count()).select_from(STATE))).scalar_one() == 0

        written = aggregator.written
        async with engine.begin() as conn:  # the service's transaction holds its file's write lock meanwhile
            await conn.exec_driver_sql("UPDATE tickets SET id = id WHERE id < 0")
            other = sqlite3.connect(path, timeout=0)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            other.close()
            plan = await asyncio.wait_for(aggregator.step(), timeout=4)  # SQLite's busy timeout is 5 s
        assert aggregator.written == written + 1
        assert plan.state is not None and plan.new_state["seq"] - plan.state["seq"] == 100
        async with report_tables(engine) as reports, reports.connect() as conn:
            assert (await conn.execute(select(func.sum(DAYS.c.reported)))).scalar_one() == 300  # folded again: same
    finally:
        await engine.dispose()


async def test_aggregates_of_another_chain_are_not_read_and_are_folded_again(tmp_path: Path) -> None:
    """The reports file can outlive the service's file it was folded from (a backup of the service's file
    restored beside it) or sit beside another database: a fold state past the chain's last event, or whose
    watermark's hash is not this chain's, is not trusted — 报表 computes from the tickets meanwhile, and the
    fold starts again (one reset: a second plan made from the same state is refused)."""
    path = tmp_path / "restored.db"
    prefill(["--sqlite", str(path)], tickets=300)
    engine = create_engine(f"sqlite:///{path}")
    try:
        now = datetime.now(UTC) + timedelta(minutes=5)
        aggregator = ReportAggregator(shim(engine, now))
        await aggregator.catch_up()
        rows = await day_rows(engine)
        reads = ReportReads(engine)
        async with report_tables(engine) as reports, reports.begin() as conn:
            top, top_hash = (await conn.execute(select(STATE.c.seq, STATE.c.seq_hash))).one()
            await conn.execute(DAYS.update().values(reported=DAYS.c.reported + 5))  # what another chain folded
        assert top_hash is not None
        for foreign in ({"seq": top + 10_000}, {"seq_hash": "f" * 64}):
            async with report_tables(engine) as reports, reports.begin() as conn:
                await conn.execute(STATE.update().values(**foreign))
            assert await day_rows(engine) != rows
            aggregated, raw = await texts(reads, now, ["30天"])
            assert aggregated == raw  # computed from the tickets, not from the foreign aggregates
            first = await reads.run(plan_step, "Asia/Shanghai", now)
            second = await reads.run(plan_step, "Asia/Shanghai", now)
            assert first.reset and second.reset
            async with report_tables(engine) as reports:
                async with reports.begin() as conn:
                    assert await apply_fold(conn, first)
                async with reports.begin() as conn:
                    assert not await apply_fold(conn, second)
            await aggregator.catch_up()
            assert await day_rows(engine) == rows
            async with report_tables(engine) as reports, reports.begin() as conn:
                assert (await conn.execute(select(STATE.c.seq, STATE.c.seq_hash))).one() == (top, top_hash)
                await conn.execute(DAYS.update().values(reported=DAYS.c.reported + 5))
    finally:
        await engine.dispose()


async def test_a_new_reports_file_takes_the_aggregates_folded_in_the_service_file(tmp_path: Path) -> None:
    """A database folded before the report tables had a file of their own keeps its aggregates: the new
    reports file takes them, and the fold goes on from their watermark (no backfill of every ticket)."""
    path = tmp_path / "upgraded.db"
    prefill(["--sqlite", str(path)], tickets=300)
    engine = create_engine(f"sqlite:///{path}")
    try:
        now = datetime.now(UTC) + timedelta(minutes=5)
        await ReportAggregator(shim(engine, now)).catch_up()
        rows = await day_rows(engine)
        store = report_store.report_store_path(path)
        service = sqlite3.connect(path, isolation_level=None)  # as the service's file held them before
        service.execute("ATTACH DATABASE ? AS reports", (str(store),))
        for table in REPORT_TABLES:
            columns = ", ".join(f'"{c.name}"' for c in table.columns)
            service.execute(f'INSERT INTO main."{table.name}" ({columns}) SELECT {columns} FROM reports."{table.name}"')
        service.execute("DETACH DATABASE reports")
        service.close()
        for leftover in (store, store.with_name(store.name + "-wal"), store.with_name(store.name + "-shm")):
            leftover.unlink(missing_ok=True)  # the worker process still holds its engines of the file

        assert await ReportAggregator(shim(engine, now)).catch_up() == 1  # one incremental step: nothing new
        assert await day_rows(engine) == rows
    finally:
        await engine.dispose()


def test_a_reports_file_of_another_schema_is_made_again(tmp_path: Path) -> None:
    """The reports file holds only what the fold can make again: no migrations; a file whose schema is not
    this version's (its user_version) is emptied and its tables made anew."""
    service = tmp_path / "service.db"
    sqlite3.connect(service).close()
    store = report_store.report_store_path(service)
    old = sqlite3.connect(store)
    old.execute("CREATE TABLE report_ticket_facts (number TEXT)")
    old.execute("CREATE TABLE report_old_thing (x INTEGER)")
    old.execute("INSERT INTO report_ticket_facts VALUES ('T1')")
    old.execute("PRAGMA user_version = 7")
    old.commit()
    old.close()
    assert report_store.ensure_report_store(service) == store.resolve()
    made = sqlite3.connect(store)
    try:
        assert made.execute("PRAGMA user_version").fetchone()[0] == report_store.SCHEMA_VERSION
        tables = {r[0] for r in made.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {t.name for t in REPORT_TABLES}
        columns = {r[1] for r in made.execute("PRAGMA table_info(report_ticket_facts)")}
        assert columns == {c.name for c in FACTS.columns}
        assert made.execute("SELECT count(*) FROM report_ticket_facts").fetchone()[0] == 0
    finally:
        made.close()


async def test_another_zone_rebuilds_from_scratch(engine_of: AsyncEngine) -> None:
    engine = engine_of
    now = datetime.now(UTC) + timedelta(minutes=5)
    await ReportAggregator(shim(engine, now)).catch_up()
    rows = await day_rows(engine)
    other = shim(engine, now)
    other.service.config.timezone = ZoneInfo("UTC")
    await ReportAggregator(other).catch_up()
    async with report_tables(engine) as reports, reports.connect() as conn:
        assert (await conn.execute(select(STATE.c.zone))).scalar_one() == "UTC"
    assert await day_rows(engine) != rows  # the days are UTC days now
    await ReportAggregator(shim(engine, now)).catch_up()
    assert await day_rows(engine) == rows


async def test_concurrent_folders_count_each_ticket_once(scratch_postgres: str) -> None:
    prefill(["--database-url", scratch_postgres], tickets=2500)
    now = datetime.now(UTC) + timedelta(minutes=5)
    engines = [create_engine(scratch_postgres) for _ in range(3)]
    try:
        # Written on the loop: in one test process the folders would otherwise share one worker process,
        # which runs their steps one at a time (several service processes have a worker each).
        folders = [ReportAggregator(shim(e, now), in_worker=False) for e in engines]
        await asyncio.gather(*(f.catch_up() for f in folders))
        assert sum(f.written for f in folders) < sum(f.steps for f in folders)  # some plans lost the CAS
        async with engines[0].connect() as conn:
            reported = (await conn.execute(select(func.sum(DAYS.c.reported)))).scalar_one()
            facts = (await conn.execute(select(func.count()).select_from(FACTS))).scalar_one()
        assert reported == facts == 2500
        reads = ReportReads(engines[0])
        for words in (["30天"], ["45天"]):
            aggregated, raw = await texts(reads, now, words)
            assert aggregated == raw, (aggregated, raw)
    finally:
        for e in engines:
            await e.dispose()


async def test_live_changes_count_before_they_are_folded(database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(at(2026, 11, 18, 9, 0))
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        reads = ReportReads(rt.engine)
        aggregator = ReportAggregator(rt)
        first = await report(client, "cust-agg-1", "中控黑屏")
        await assign_and_accept(rt, first, "tech-wang")
        await aggregator.catch_up()
        # After the fold: a new ticket, a wait for parts, a breach by the timers — none folded.
        second = await report(client, "cust-agg-2", "空调不制冷")
        await force(rt, first, status=TicketStatus.IN_PROGRESS)  # skip the check-in steps
        await move(rt, first, "wait_parts", "tech-wang")
        await advance_to(rt, clock, at(2026, 11, 19, 10, 0))
        now = clock.now()
        for words in (["7天"], ["今天"], ["7天", "等待备件"]):
            aggregated, raw = await texts(reads, now, words)
            assert aggregated == raw, (words, aggregated, raw)
        assert "报修 2 张" in raw and f"{first}｜等待备件｜" in raw and second in raw
        await aggregator.catch_up()
        aggregated, raw = await texts(reads, now, ["7天"])
        assert aggregated == raw
        async with report_tables(rt.engine) as reports, reports.connect() as conn:
            status = (await conn.execute(select(FACTS.c.status).where(FACTS.c.number == first))).scalar_one()
        assert status == TicketStatus.WAITING_PARTS.value

        sup = PlaygroundUser(client, "sup-li")  # the chat command answers from the aggregates
        await sup.say("报表 7天")
        assert await sup.last_text() == raw


def _migration_0014() -> Any:
    """storage/migrations/versions/0014_report_rollups.py (its fill statements)."""
    import importlib.util

    path = ROOT / "storage" / "migrations" / "versions" / "0014_report_rollups.py"
    spec = importlib.util.spec_from_file_location("migration_0014", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def grain_rows(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """The coarser grains' rows, without the all-zero ones (a difference can leave a row at zero)."""
    out = {}
    async with report_tables(engine) as reports, reports.connect() as conn:
        for table in (ROLLUPS, VALUES, TECHS):
            keys = {c.name for c in table.primary_key.columns}
            counters = [c.name for c in table.columns if c.name not in keys]
            rows = await conn.execute(select(table).order_by(*table.primary_key.columns))
            out[table.name] = [tuple(r) for r in rows if any(r._mapping[name] for name in counters)]
    return out


def comparable(board: Any) -> dict[str, Any]:
    """The figures that do not depend on which path read them (the unfiltered page adds the totals per
    state and lists every category)."""
    return {k: v for k, v in asdict(board).items() if k not in ("blocked_totals", "categories")}


async def test_every_grain_gives_the_same_figures(engine_of: AsyncEngine) -> None:
    """The coarse grains (rollups per store / category / all, per-day histograms and technicians) say
    what the full-grain rows and the facts say — folded, with a live part not folded yet, and as the
    migration fills them from the 0013 tables."""
    engine = engine_of
    now = datetime.now(UTC) + timedelta(minutes=5)
    await ReportAggregator(shim(engine, now)).catch_up()
    reads = ReportReads(engine)
    today = now.astimezone(ZONE).date()
    async with report_tables(engine) as reports, reports.connect() as conn:
        stores = frozenset(r[0] for r in await conn.execute(select(FACTS.c.store_id).distinct()))
        stores |= frozenset(r[0] for r in await conn.execute(select(col(StoreRow.id))))
        categories = sorted(r[0] for r in await conn.execute(select(FACTS.c.category).distinct()))
    assert len(stores) > 3 and len(categories) > 3

    # The migration's fill from report_day_counts and the facts equals what the fold kept.
    folded = await grain_rows(engine)
    assert all(folded.values())
    async with report_tables(engine) as reports, reports.begin() as conn:
        for table in (ROLLUPS, VALUES, TECHS):
            await conn.execute(table.delete())
        for statement in _migration_0014().fill_statements():
            await conn.exec_driver_sql(statement)
    assert await grain_rows(engine) == folded

    async def boards() -> None:
        for first in (today - timedelta(days=29), today - timedelta(days=6), today - timedelta(days=44)):
            async def board(filters: Filters, first: Any = first) -> dict[str, Any]:
                figures = await reads.run(dashboard_job, first, today, now, "Asia/Shanghai", filters)
                assert figures.ready
                return comparable(figures)

            everything = await board(Filters())
            assert everything["totals"]["reported"] > 0 and everything["technicians"]
            assert everything == await board(Filters(store_ids=stores))  # the facts and full-grain path
            for category in categories[:3]:
                assert await board(Filters(category=category)) == await board(Filters(category=category,
                                                                                      store_ids=stores))
            store = sorted(stores)[1]
            one = await board(Filters(store_ids=frozenset({store})))
            assert one["totals"]["reported"] == sum(
                s["reported"] for s in everything["stores"] if s["id"] == store)

    await boards()
    # A live part: the watermark moved back, so ~3,000 events' tickets are read as not folded yet.
    async with report_tables(engine) as reports, reports.begin() as conn:
        await conn.execute(STATE.update().values(seq=STATE.c.seq - 3000, seq_hash=None))
    await boards()


def _first_response_look(execute: Any, zone_name: str, now: datetime, checked_at: datetime | None
                         ) -> tuple[set[str], int]:
    """The fold's look for first responses set without an event, and how many rows it read (a report job:
    module level, run where report jobs run)."""
    read: list[int] = []

    def counting(statement: Any) -> Any:
        rows = execute(statement)
        read.append(len(rows))
        return rows

    return _first_responses_arrived(counting, ZoneInfo(zone_name), now, checked_at), sum(read)


async def test_a_first_response_without_an_event_is_found_by_its_time_not_by_reading_the_backlog(
        database_url: str, tmp_path: Path) -> None:
    """Delivery sets a ticket's first response without an audit event. The fold used to re-read every
    ticket of 3 days still waiting for one, on every step and every 报表 — O(the backlog of unanswered
    tickets); it now reads the first responses set since its last look (migration 0015)."""
    clock = FixedClock(at(2026, 11, 18, 9, 0))
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        for task in rt._tasks:  # the runtime's own fold would race this test's steps and looks
            if getattr(task.get_coro(), "__qualname__", "") == "ReportAggregator.run_forever":
                task.cancel()
        reads = ReportReads(rt.engine)
        aggregator = ReportAggregator(rt)
        numbers = [await report(client, f"cust-fr-{i}", "中控黑屏") for i in range(4)]
        async with rt.sessions.transaction() as conn:  # none answered yet (as far as their rows say)
            await conn.execute(update(TicketRow).values(first_response_at=None))
        await aggregator.catch_up()
        await aggregator.step()  # an incremental step after the first fill: the first (full) look
        async with report_tables(rt.engine) as reports, reports.connect() as conn:
            checked_at = (await conn.execute(select(STATE.c.responses_checked_at))).scalar_one()
            waiting = sorted(r[0] for r in await conn.execute(
                select(FACTS.c.number).where(FACTS.c.first_response_s.is_(None))))
        assert checked_at is not None and waiting == numbers

        clock.advance(timedelta(minutes=2))
        async with rt.sessions.transaction() as conn:
            await record_first_response(conn, waiting[0], clock.now())
        now = clock.now()
        found, rows = await reads.run(_first_response_look, "Asia/Shanghai", now, checked_at)
        assert found == {waiting[0]} and rows <= 2  # the answered ticket and its facts: not every waiting one
        found, rows = await reads.run(_first_response_look, "Asia/Shanghai", now, None)
        assert found == {waiting[0]} and rows >= len(waiting) + 1  # the full look reads every waiting one

        await aggregator.step()
        async with report_tables(rt.engine) as reports, reports.connect() as conn:
            still = {r[0] for r in await conn.execute(select(FACTS.c.number).where(FACTS.c.first_response_s.is_(None)))}
        assert still == set(waiting[1:])



def _ongoing_totals_job(execute: Any, first: date, last: date, now: datetime) -> tuple[Any, list[Any]]:
    """ongoing_totals and the rows it sums (a report job: module level, run where report jobs run)."""
    rows = execute(select(FACTS.c.ongoing_state, FACTS.c.ongoing_since_us).where(
        FACTS.c.is_open.is_(True), FACTS.c.created_day.between(first, last), FACTS.c.ongoing_state.is_not(None),
        FACTS.c.ongoing_since <= now - MIN_WAIT))
    return ongoing_totals(execute, first, last, Filters(), Live({}, {}), now), list(rows)


async def test_thousands_of_open_tickets_in_one_state_do_not_overflow_the_sum_of_their_stays(
        tmp_path: Path) -> None:
    """The current stays of the open tickets in a state were summed as Σ since (epoch µs, ~1.8·10¹⁵ each):
    past ~5,100 open tickets in one state in a period, SQLite's 64-bit SUM raised "integer overflow" and
    报表 failed (found at 1 M tickets with a day's backlog of 107 k waiting for dispatch). PostgreSQL sums
    bigints as numeric and never overflowed."""
    path = tmp_path / "backlog.db"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "prefill_db.py"), "--sqlite", str(path), "--tickets",
                           "10000", "--days", "20", "--audit-key", KEY, "--open-share", "1.0"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    engine = create_engine(f"sqlite:///{path}")
    try:
        now = datetime.now(UTC) + timedelta(minutes=5)
        await ReportAggregator(shim(engine, now)).catch_up()
        # the backlog all in one state, as behind a stalled dispatch
        async with report_tables(engine) as reports, reports.begin() as conn:
            await conn.execute(FACTS.update().where(FACTS.c.is_open.is_(True), FACTS.c.ongoing_state.is_not(None))
                               .values(ongoing_state="pending_dispatch"))
        today = now.astimezone(ZONE).date()
        totals, rows = await ReportReads(engine).run(_ongoing_totals_job, today - timedelta(days=29), today, now)
    finally:
        await engine.dispose()
    assert len(rows) > 5_200  # 5,200 × 1.8·10¹⁵ µs > 2⁶³
    now_us = epoch_us(now)
    assert totals == {"pending_dispatch": (sum(now_us - since for _, since in rows), len(rows))}
