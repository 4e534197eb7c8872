"""The queue page /console/ (issue 22): filters, scope, counts, the urgent block, saved views, live region."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, update

from bot.web.app import build_app
from storage.tables import AuditEventRow, TicketRow
from tests.conftest import make_settings, runtime_of
from tests.console_support import sign_in
from tests.playground_client import PlaygroundUser
from tests.test_lifecycle_support import NUMBER


@pytest.fixture
async def client(sqlite_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    app = build_app(make_settings(sqlite_url, tmp_path))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def report(client: TestClient, customer: str, text: str) -> str:
    user = PlaygroundUser(client, customer)
    await user.say(text)
    found = NUMBER.search(await user.last_text())
    assert found, await user.texts()
    async with runtime_of(client).uow() as uow:
        assert await uow.get_ticket(found.group(0)) is not None
    return found.group(0)


async def set_ticket(client: TestClient, number: str, **values: object) -> None:
    async with runtime_of(client).sessions() as s:
        await s.execute(update(TicketRow).where(TicketRow.number == number).values(**values))
        await s.commit()


async def test_the_queue_lists_open_tickets_with_breached_on_top(client: TestClient) -> None:
    runtime = runtime_of(client)
    a = await report(client, "cust-a", "底盘有异响，刹车发软")
    b = await report(client, "cust-b", "空调不制冷，出风口是热风")
    await set_ticket(client, a, store_id="S01", resolution_due=runtime.clock.now() - timedelta(hours=1),
                     status="accepted")
    await set_ticket(client, b, store_id="S03")
    await sign_in(client, runtime, "admin")
    page = await (await client.get("/console/")).text()
    assert a in page and b in page
    assert "需要关注" in page and page.index(a) < page.index(b)
    breached = await (await client.get("/console/", params={"sla": "breached"})).text()
    table = breached.split('<table class="tickets" aria-label="工单列表">', 1)[1]
    assert a in table and b not in table


@pytest.mark.parametrize("query, field", [({"from": "2026-13-01"}, "from"), ({"sla": "late"}, "sla"),
                                          ({"status": "nonsense"}, "status"), ({"page": "0"}, "page"),
                                          ({"sort": "password"}, "sort"), ({"store": "S01' OR 1=1"}, "store")])
async def test_nonsense_filters_answer_400_naming_the_field(client: TestClient, query: dict[str, str],
                                                            field: str) -> None:
    await sign_in(client, runtime_of(client), "admin")
    resp = await client.get("/console/", params=query)
    assert resp.status == 400
    body = await resp.text()
    assert f"（{field}）" in body or field in body


async def test_a_store_supervisor_sees_only_their_stores(client: TestClient) -> None:
    a = await report(client, "cust-a", "底盘有异响")
    b = await report(client, "cust-b", "空调不制冷")
    await set_ticket(client, a, store_id="S01")
    await set_ticket(client, b, store_id="S03")
    await sign_in(client, runtime_of(client), "sup-chen")  # S03
    page = await (await client.get("/console/")).text()
    assert b in page and a not in page
    resp = await client.get("/console/", params={"store": "S01"})
    assert resp.status == 403
    async with runtime_of(client).sessions() as s:
        events = list((await s.execute(select(AuditEventRow).where(AuditEventRow.kind == "console_forbidden")))
                      .scalars())
    assert events and events[-1].actor_id == "sup-chen" and "S01" in events[-1].payload["what"]


async def test_saved_views_belong_to_their_person(client: TestClient) -> None:
    await sign_in(client, runtime_of(client), "sup-li")
    page = await (await client.get("/console/")).text()
    csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert csrf
    resp = await client.post("/console/views", data={"csrf_token": csrf.group(1), "name": "超时的",
                                                     "query": "status=open&sla=breached"}, allow_redirects=False)
    assert resp.status == 302
    page = await (await client.get("/console/")).text()
    assert "超时的" in page and "/console/?status=open&amp;sla=breached" in page
    no_csrf = await client.post("/console/views", data={"name": "x", "query": ""})
    assert no_csrf.status == 403
    bad = await client.post("/console/views", data={"csrf_token": csrf.group(1), "name": "坏的",
                                                    "query": "sla=never"})
    assert bad.status == 400
    await sign_in(client, runtime_of(client), "sup-chen")
    assert "超时的" not in await (await client.get("/console/")).text()


async def test_the_live_region_answers_alone(client: TestClient) -> None:
    await sign_in(client, runtime_of(client), "admin")
    resp = await client.get("/console/", headers={"HX-Request": "true", "X-Console-Poll": "1"})
    body = await resp.text()
    assert resp.status == 200 and body.startswith('<section id="results"') and "<html" not in body


async def test_a_supervisor_also_sees_the_stores_of_the_people_they_supervise(client: TestClient) -> None:
    s02 = await report(client, "cust-s02", "底盘有异响")
    s03 = await report(client, "cust-s03", "空调不制冷")
    await set_ticket(client, s02, store_id="S02")
    await set_ticket(client, s03, store_id="S03")
    await sign_in(client, runtime_of(client), "sup-li")  # S01, and technicians at S02
    page = await (await client.get("/console/")).text()
    assert s02 in page and s03 not in page
    assert "可见门店：S01、S02" in page
    assert (await client.get("/console/", params={"store": "S02"})).status == 200
    assert (await client.get("/console/", params={"store": "S02,S03"})).status == 403


async def test_tickets_without_a_store_only_for_people_who_see_every_store(client: TestClient) -> None:
    loose = await report(client, "cust-loose", "底盘有异响")
    await sign_in(client, runtime_of(client), "sup-chen")
    assert loose not in await (await client.get("/console/")).text()
    assert (await client.get(f"/console/tickets/{loose}")).status == 403
    await sign_in(client, runtime_of(client), "qa-sun")
    assert loose in await (await client.get("/console/")).text()


async def test_a_ticket_number_in_the_search_box_opens_its_file(client: TestClient) -> None:
    number = await report(client, "cust-q", "底盘有异响")
    await sign_in(client, runtime_of(client), "admin")
    resp = await client.get("/console/", params={"q": number.lower()}, allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == f"/console/tickets/{number}"
    unknown = await client.get("/console/", params={"q": "GD-20990101-0001"}, allow_redirects=False)
    assert unknown.status == 200 and "没有符合条件的工单" in await unknown.text()


async def test_the_queue_index_hint_costs_the_rest_of_the_service_nothing(client: TestClient) -> None:
    """The hint is the compiler's, not an engine event: an engine with any connection event dispatches events on
    every BEGIN, SAVEPOINT, RELEASE and COMMIT (~20 calls per fault report on the intake path)."""
    engine = runtime_of(client).engine.sync_engine
    assert not engine._has_events
    await PlaygroundUser(client, "cust-hint").say("底盘有异响")
    assert not engine._has_events


async def test_open_ticket_queries_read_the_queue_index(client: TestClient) -> None:
    from sqlalchemy import event

    seen: list[str] = []

    def record(_c: object, _cur: object, statement: str, *_rest: object) -> None:
        seen.append(statement)

    engine = runtime_of(client).engine.sync_engine
    await sign_in(client, runtime_of(client), "admin")
    event.listen(engine, "after_cursor_execute", record)
    try:
        assert (await client.get("/console/", params={"assignee": "tech-wang"})).status == 200
    finally:
        event.remove(engine, "after_cursor_execute", record)
    indexed = [s for s in seen if "INDEXED BY ix_tickets_queue" in s]
    assert len(indexed) >= 3, seen  # the page's ids, the counts per state, the SLA counts
    async with runtime_of(client).sessions.transaction() as conn:  # the index exists (migration 0012, models)
        assert (await conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE name = 'ix_tickets_queue'"))\
            .scalar() == 1


async def test_the_queue_and_a_file_on_both_databases(database_url: str, tmp_path: Path) -> None:
    app = build_app(make_settings(database_url, tmp_path))
    async with TestClient(TestServer(app)) as pg_client:
        runtime = runtime_of(pg_client)
        number = await report(pg_client, "cust-db", "底盘有异响")
        await set_ticket(pg_client, number, store_id="S01", status="accepted",
                         resolution_due=runtime.clock.now() - timedelta(hours=2))
        await sign_in(pg_client, runtime, "sup-li")
        for params in ({}, {"sla": "breached"}, {"sla": "at_risk"}, {"store": "S01", "sort": "-priority"},
                       {"q": "异响", "from": "2020-01-01"}, {"assignee": "none"}):
            resp = await pg_client.get("/console/", params=params)
            assert resp.status == 200, (params, await resp.text())
        assert number in await (await pg_client.get("/console/", params={"sla": "breached"})).text()
        file = await pg_client.get(f"/console/tickets/{number}")
        assert file.status == 200 and "审计记录完整" in await file.text()


@pytest.mark.parametrize("person, role, store, visible", [
    ("fd-1", "front_desk", "S03", "可见门店：S03"),
    ("wh-zhao", None, None, "可见门店：S01"),  # the demo's warehouse keeper at S01
    ("ex-1", "expert", "S02", "可见门店：全部"),
    ("sup-none", "supervisor", None, "可见门店：全部"),  # the organisation names no store for them
])
async def test_scope_by_role(client: TestClient, person: str, role: str | None, store: str | None,
                             visible: str) -> None:
    from storage.tables import PersonRow

    if role is not None:
        async with runtime_of(client).sessions() as s:
            s.add(PersonRow(id=person, name=f"测试 {person}", role=role, store_id=store))
            await s.commit()
    await sign_in(client, runtime_of(client), person)
    assert visible in await (await client.get("/console/")).text()
