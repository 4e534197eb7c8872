"""Work that held the event loop on a first use after a start, or in one piece (issue 24, bench/loop_stall.py
at 100 k tickets): Jinja compiling a console page's template (59–217 ms at its first view), the dispatch
index built inside the first fault report (57–170 ms), `/api/tickets?limit=500` read and encoded in one go
(48–82 ms).

Checked structurally, which does not depend on the machine's speed: an observer on the template loader
records the thread of every template load (a compile, or the process's kept bytecode) — none may be the
loop's; the index's rebuild count before and after the first report; the statements /api/tickets runs
(observed on the service's engine) and its body, byte for byte what one dump of the list gave.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.web.api import LIST_SLICE
from bot.web.app import build_app
from core.dispatch.live import live_index
from core.model import TicketStatus
from core.sla import calendar as sla_calendar
from core.sla import stored_config
from storage.database import compact_json
from storage.tables import PersonRow, TicketRow
from tests.conftest import make_settings, runtime_of
from tests.console_support import sign_in
from tests.test_lifecycle_support import report, ticket
from tests.test_loop_stall import statements_on

LIMITED = re.compile(r"LIMIT \S+( OFFSET \S+)?$")  # SQLite's `LIMIT ? OFFSET ?`, asyncpg's `LIMIT $n::INTEGER`


def record_template_loads(app: web.Application) -> list[tuple[str, int]]:
    """(template name, thread ident) of every load into the app's Jinja environment (an observer: the
    loader loads as before)."""
    env = aiohttp_jinja2.get_env(app)
    assert env.loader is not None
    loads: list[tuple[str, int]] = []
    load: Callable[..., jinja2.Template] = env.loader.load

    def observed(environment: jinja2.Environment, name: str, globals: Any = None) -> jinja2.Template:
        loads.append((name, threading.get_ident()))
        return load(environment, name, globals)

    env.loader.load = observed  # type: ignore[method-assign]
    return loads


@pytest.fixture
async def observed(sqlite_url: str, tmp_path: Path) -> AsyncIterator[tuple[TestClient, list[tuple[str, int]]]]:
    app = build_app(make_settings(sqlite_url, tmp_path))
    loads = record_template_loads(app)
    async with TestClient(TestServer(app)) as client:
        yield client, loads


async def test_every_template_is_compiled_off_the_loop_before_a_page_asks_for_it(
        observed: tuple[TestClient, list[tuple[str, int]]]) -> None:
    client, loads = observed
    loop_thread = threading.get_ident()
    names = set(aiohttp_jinja2.get_env(client.app).list_templates())
    assert {"console/ticket.html", "console/queue.html", "console/dashboards.html"} <= names
    for _ in range(600):  # no page asked for: the warm-up started with the service
        if {n for n, _ in loads} >= names:
            break
        await asyncio.sleep(0.05)
    assert {n for n, _ in loads} == names
    assert all(thread != loop_thread for _, thread in loads)
    before = len(loads)
    await sign_in(client, runtime_of(client), "admin")
    for path in ("/console/", "/console/dashboards", "/console/ops/", "/console/admin/rules"):
        resp = await client.get(path)
        assert resp.status == 200, path
    assert loads[before:] == []  # the pages used what was compiled


async def test_a_page_asked_for_at_once_after_the_start_waits_for_the_thread_not_the_loop(
        observed: tuple[TestClient, list[tuple[str, int]]]) -> None:
    client, loads = observed
    loop_thread = threading.get_ident()
    resp = await client.get("/console/signin")  # the sign-in page: no session needed
    assert resp.status in (200, 401), await resp.text()
    assert "<html" in (await resp.text()).lower()
    assert loads and all(thread != loop_thread for _, thread in loads), loads


async def test_the_dispatch_index_is_built_before_the_first_report(
        observed: tuple[TestClient, list[tuple[str, int]]]) -> None:
    client, _ = observed
    index = live_index(runtime_of(client).service)
    assert index.rebuilds == 1 and index.mark is not None and index.entries  # ready: built, nothing asked yet
    number = await report(client, "cust-warm", "空调不制冷，出风口是热风")
    assert (await ticket(client, number)).status == TicketStatus.DISPATCHED  # ranked through the index ...
    assert index.rebuilds == 1  # ... which caught up by the chain's events, not rebuilt in the report


async def test_the_statutory_calendar_and_the_sla_matrix_are_ready_before_the_first_report(
        sqlite_url: str, tmp_path: Path) -> None:
    """python-holidays builds a year in ~30 ms of pure Python, the default SLA matrix is parsed on first use:
    both once at start-up (the calendar in a thread), not inside the first fault report after a start."""
    sla_calendar._statutory_year.cache_clear()
    stored_config._matrix_cache.clear()
    app = build_app(make_settings(sqlite_url, tmp_path))
    async with TestClient(TestServer(app)) as client:
        year = runtime_of(client).clock.now().year
        assert sla_calendar._statutory_year.cache_info().currsize >= 2  # this year and the next
        for built in (year, year + 1):
            hits = sla_calendar._statutory_year.cache_info().hits
            sla_calendar._statutory_year(built)
            assert sla_calendar._statutory_year.cache_info().hits == hits + 1, built  # it was there already
        assert stored_config._matrix_cache


@pytest.fixture
async def any_client(database_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(build_app(make_settings(database_url, tmp_path)))) as client:
        yield client


async def test_the_ticket_list_is_read_and_encoded_in_slices_with_the_same_body(any_client: TestClient) -> None:
    client = any_client
    runtime = runtime_of(client)
    count = LIST_SLICE * 2 + 37
    async with runtime.sessions() as session:
        session.add(PersonRow(id="cust-list", name="客户 钱七", role="customer"))
        session.add_all([TicketRow(number=f"GD-20261101-{i:04d}", customer_id="cust-list", store_id="S01",
                                   status="closed" if i % 3 else "pending_dispatch", category="机械类",
                                   description=f"举升机漏油 #{i}", data={"note": f"第{i}单", "n": i},
                                   created_at=runtime.clock.now(), updated_at=runtime.clock.now())
                         for i in range(count)])
        await session.commit()
    for limit in (500, LIST_SLICE, LIST_SLICE + 1, 7):
        async with runtime.uow() as uow:  # what the handler dumped in one go before
            expected = compact_json([t.to_public_dict() for t in await uow.list_tickets(limit=limit)])
        with statements_on(runtime.engine) as seen:
            resp = await client.get("/api/tickets", params={"limit": str(limit)})
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/json; charset=utf-8"
        assert await resp.text() == expected, limit
        limits = [_limit(sql, params) for sql, params in seen if "FROM tickets" in sql and LIMITED.search(sql)]
        assert len(limits) == -(-min(limit, count) // LIST_SLICE) and max(limits) <= LIST_SLICE, (limit, limits)


def _limit(sql: str, params: Any) -> int:
    found = LIMITED.search(sql)
    assert found is not None
    return int(params[-2] if found.group(1) else params[-1])
