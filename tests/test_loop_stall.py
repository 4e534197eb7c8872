"""Nothing holds the event loop (issue 24; bench/loop_stall.py measures the service at 100,000 tickets).

The reads that froze the loop there — the CSV export's batches (up to 0.9 s each: a sort of the whole
filtered list per batch), the console queue over the history (a text search: ~1 s), the retention
purge's first pass (a command of 200 tickets at a time) — now run off the loop or in steps. Checked
structurally, which does not depend on the machine's speed: on SQLite the heavy statements no longer
run on the service's own engine (they run on the worker process's read-only connection), and the
purge lets the loop run between small commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.jobs.privacy import RetentionPurge
from bot.web.app import build_app
from storage.tables import PersonRow, TicketRow
from tests.conftest import make_settings, runtime_of
from tests.console_support import sign_in

CLOSED = 120


@pytest.fixture
async def client(sqlite_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(build_app(make_settings(sqlite_url, tmp_path)))) as test_client:
        yield test_client


@contextlib.contextmanager
def statements_on(engine: AsyncEngine) -> Iterator[list[tuple[str, Any]]]:
    """The statements (SQL, parameters) the service's own engine runs inside the block (an observer: the
    statements run as before)."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    sync = engine.sync_engine
    event.listen(sync, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(sync, "before_cursor_execute", record)


async def seed_closed(client: TestClient, count: int = CLOSED, days_ago: int = 400) -> list[str]:
    """Closed tickets of one day long ago, with a phone in the description (what the purge masks)."""
    runtime = runtime_of(client)
    ended = runtime.clock.now().replace(microsecond=0) - timedelta(days=days_ago)
    numbers = [f"GD-20241101-{i:04d}" for i in range(count)]
    async with runtime.sessions() as session:
        if await session.get(PersonRow, "cust-stall") is None:
            session.add(PersonRow(id="cust-stall", name="客户 赵六", role="customer"))
        session.add_all([TicketRow(number=n, customer_id="cust-stall", store_id="S01", status="closed",
                                   category="机械类", description=f"举升机漏油 回电 13812345678 #{i}",
                                   created_at=ended - timedelta(hours=2), updated_at=ended, closed_at=ended)
                         for i, n in enumerate(numbers)])
        await session.commit()
    return numbers


async def test_the_csv_export_reads_and_encodes_its_batches_off_the_loop(client: TestClient) -> None:
    """Each batch is a job of the export worker (its own read-only connection), not a statement on the
    service's engine; the CSV is the same list."""
    numbers = await seed_closed(client)
    runtime = runtime_of(client)
    await sign_in(client, runtime, "admin")
    with statements_on(runtime.engine) as seen:
        resp = await client.get("/console/tickets.csv", params={"status": "closed"})
        body = await resp.read()
    assert resp.status == 200, body[:300]
    rows = list(csv.reader(io.StringIO(body[3:].decode("utf-8"))))
    assert sorted(r[0] for r in rows[1:]) == sorted(numbers)
    on_loop = [sql for sql, _ in seen if "sla_state" in sql]  # the list's statement (export_workbooks.py)
    assert on_loop == [], "the CSV's batches ran on the event loop's connection"


async def test_a_queue_over_the_history_reads_its_page_off_the_loop(client: TestClient) -> None:
    """A text search over closed tickets (a scan of every description) is read by the report worker; the
    page shows the same tickets."""
    numbers = await seed_closed(client)
    runtime = runtime_of(client)
    await sign_in(client, runtime, "admin")
    with statements_on(runtime.engine) as seen:
        resp = await client.get("/console/tickets", params={"status": "closed", "q": "漏油", "per": "200"})
        page = await resp.text()
    assert resp.status == 200, page[:300]
    assert all(n in page for n in numbers)
    searched = [sql for sql, _ in seen if "LIKE" in sql.upper()]
    assert searched == [], "the history's text search ran on the event loop's connection"
    # A text search over the open tickets too (a LIKE over each of their descriptions); the open queue
    # without one (index-bound, ~1 % of the tickets) still reads on the loop.
    with statements_on(runtime.engine) as seen:
        resp = await client.get("/console/tickets", params={"q": "漏油"})
        assert resp.status == 200
    assert not any("LIKE" in sql.upper() for sql, _ in seen)
    with statements_on(runtime.engine) as seen:
        resp = await client.get("/console/")
        assert resp.status == 200
    assert any("FROM tickets" in sql and "count(" in sql for sql, _ in seen)


async def test_the_retention_purge_lets_the_loop_run_between_small_commands(client: TestClient,
                                                                         sqlite_url: str) -> None:
    """A first pass over a day of many ended tickets: the loop gets a turn at least every
    MAX_TICKETS_BETWEEN_TURNS scrubbed tickets (a command of 200 tickets held it ~0.3 s at 100 k). Counted
    by another task: at each of its turns, the committed `contact_data_purged` events (one per ticket),
    read on a connection of its own."""
    numbers = await seed_closed(client, count=CLOSED)
    runtime = runtime_of(client)
    most = 0
    stop = asyncio.Event()
    watcher = sqlite3.connect(f"file:{sqlite_url.removeprefix('sqlite:///')}?mode=ro", uri=True)

    def purged_so_far() -> int:
        return int(watcher.execute("SELECT count(*) FROM audit_events WHERE kind = 'contact_data_purged'")
                   .fetchone()[0])

    async def ticker() -> None:
        nonlocal most
        seen = purged_so_far()
        while not stop.is_set():
            await asyncio.sleep(0)
            now = purged_so_far()
            most = max(most, now - seen)
            seen = now

    ticking = asyncio.create_task(ticker())
    try:
        purged = await RetentionPurge(runtime.sessions, runtime.service, 30).run(runtime.clock.now())
        await asyncio.sleep(0.05)
    finally:
        stop.set()
        await ticking
        watcher.close()
    assert purged == len(numbers)
    assert most <= MAX_TICKETS_BETWEEN_TURNS, f"{most} tickets scrubbed in one hold of the loop"
    async with runtime.uow() as uow:
        ticket = await uow.get_ticket(numbers[-1])
    assert ticket is not None and "13812345678" not in ticket.description


MAX_TICKETS_BETWEEN_TURNS = 20


async def test_the_csv_export_from_its_jobs_on_both_engines(database_url: str, tmp_path: Path) -> None:
    """On PostgreSQL the batch jobs run in the report thread (statements awaited on the loop): the same CSV,
    longer than a batch."""
    async with TestClient(TestServer(build_app(make_settings(database_url, tmp_path)))) as engine_client:
        numbers = await seed_closed(engine_client, count=2100)  # BATCH = 2000: two batches
        await sign_in(engine_client, runtime_of(engine_client), "admin")
        resp = await engine_client.get("/console/tickets.csv", params={"status": "closed", "sort": "number"})
        body = await resp.read()
        assert resp.status == 200, body[:300]
    rows = list(csv.reader(io.StringIO(body[3:].decode("utf-8"))))
    assert [r[0] for r in rows[1:]] == sorted(numbers)
    assert all("138****5678" not in r[8] and "13812345678" in r[8] for r in rows[1:3])
