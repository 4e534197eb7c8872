"""End-to-end through the playground adapter: page API → inbox → conversation → core → outbox."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient

from storage.database import is_sqlite
from tests.conftest import runtime_of
from tests.playground_client import PlaygroundUser

NUMBER = re.compile(r"GD-\d{8}-\d{4}")


async def test_customer_reports_a_fault_and_gets_a_ticket(app_client: TestClient) -> None:
    customer = PlaygroundUser(app_client, "cust-new-1")
    await customer.say("底盘有异响")
    reply = (await customer.texts())[0]  # the first answer: ticket number, category, what happens next
    number = NUMBER.search(reply)
    assert number, reply
    today = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y%m%d")
    assert number.group(0) == f"GD-{today}-0001"
    assert "机械类" in reply

    resp = await app_client.get("/api/tickets")
    assert "机械类".encode() in await resp.read()  # readable with curl: not \uXXXX escapes
    assert resp.content_type == "application/json" and resp.charset == "utf-8"
    tickets = await resp.json()
    assert [t["number"] for t in tickets] == [number.group(0)]
    assert tickets[0]["category"] == "机械类"
    assert tickets[0]["customer_id"] == "cust-new-1"

    detail = await (await app_client.get(f"/api/tickets/{number.group(0)}")).json()
    assert detail["audit"][0]["kind"] == "ticket_created"
    assert detail["audit"][0]["actor_id"] == "cust-new-1"


async def test_tickets_are_listed_newest_first_and_numbered_per_day(app_client: TestClient) -> None:
    customer = PlaygroundUser(app_client, "cust-a")
    await customer.say("中控黑屏")
    await customer.say("发动机漏油")
    numbers = [t["number"] for t in await (await app_client.get("/api/tickets")).json()]
    assert len(numbers) == 2
    assert numbers[0].endswith("-0002") and numbers[1].endswith("-0001")


async def test_status_question_lists_my_tickets(app_client: TestClient) -> None:
    customer = PlaygroundUser(app_client, "cust-b")
    await customer.say("进度")
    assert "没有工单" in await customer.last_text()
    await customer.say("中控黑屏了")
    await customer.say("我的工单")
    reply = await customer.last_text()
    assert "电控类" in reply and NUMBER.search(reply), reply


async def test_other_customers_tickets_are_not_shown(app_client: TestClient) -> None:
    alice, bob = PlaygroundUser(app_client, "alice"), PlaygroundUser(app_client, "bob")
    await alice.say("底盘有异响")
    number = NUMBER.search(await alice.last_text()).group(0)  # type: ignore[union-attr]
    await bob.say(f"工单 {number}")
    assert "没有找到" in await bob.last_text()
    await alice.say(f"工单 {number}")
    cards = await alice.cards("status")
    assert cards and cards[-1]["title"] == f"工单 {number}"


async def test_small_talk_gets_help_not_a_ticket(app_client: TestClient) -> None:
    customer = PlaygroundUser(app_client, "cust-c")
    for text in ["你好", "谢谢", "换机油多少钱"]:
        await customer.say(text)
    assert await (await app_client.get("/api/tickets")).json() == []
    texts = await customer.texts()
    assert len(texts) == 3 and all("GD-" not in t for t in texts)


async def test_people_directory_lists_demo_roles(app_client: TestClient) -> None:
    people = await (await app_client.get("/playground/api/people")).json()
    roles = {p["role"] for p in people}
    assert {"technician", "supervisor", "admin", "customer"} <= roles
    wang = next(p for p in people if p["id"] == "tech-wang")
    assert "OBD认证" in wang["certifications"] and "电控类" in wang["skills"]


async def test_healthz(app_client: TestClient) -> None:
    resp = await app_client.get("/healthz")
    assert resp.status == 200
    assert (await resp.json())["database"] == "ok"


async def test_redelivered_inbound_event_changes_nothing(app_client: TestClient) -> None:
    from core.inbound import InboundKind, InboundMessage

    runtime = runtime_of(app_client)
    message = InboundMessage("local", "evt-1", "cust-d", InboundKind.TEXT, text="底盘有异响")
    assert await runtime.inbox.accept(message) is True
    assert await runtime.inbox.accept(message) is False
    await runtime.processor.drain()
    tickets = await (await app_client.get("/api/tickets")).json()
    assert len(tickets) == 1


async def test_help_lists_the_commands_of_the_persons_role(app_client: TestClient) -> None:
    technician, customer, admin = (PlaygroundUser(app_client, pid) for pid in ("tech-wang", "cust-help", "admin"))
    for person in (technician, customer, admin):
        await person.say("帮助")
    tech_help, customer_help, admin_help = [await p.last_text() for p in (technician, customer, admin)]
    assert "完工" in tech_help and "签到" in tech_help and "规则" not in tech_help
    assert "完工" not in customer_help and "我的工单" in customer_help
    assert "规则" in admin_help and "派单规则" in admin_help


async def test_background_processing_waits_for_accepts_in_flight(app_client: TestClient) -> None:
    """The platform waits for an accept's answer, nobody waits for processing: under a burst the
    processor lets pending inbox inserts go first (measured by bench/wecom_bench.py)."""
    import asyncio

    from core.inbound import InboundKind, InboundMessage

    runtime = runtime_of(app_client)
    if not is_sqlite(runtime.database_url):
        pytest.skip("holding the only connection makes an accept wait: SQLite's pool has one, PostgreSQL's ten")
    order: list[str] = []
    first = await runtime.inbox.accept_row(InboundMessage("local", "evt-a", "cust-a", InboundKind.TEXT,
                                                          text="底盘有异响"), schedule=False)
    assert first is not None
    async with runtime.service.uow_factory() as uow:  # holds the connection: the next accept waits
        await uow.latest_config("rules")
        accepting = asyncio.create_task(runtime.inbox.accept_row(
            InboundMessage("local", "evt-b", "cust-b", InboundKind.TEXT, text="中控黑屏"), schedule=False))
        await asyncio.sleep(0.05)
        assert not accepting.done()
        settled = asyncio.create_task(runtime.inbox.accepts_settled())
        settled.add_done_callback(lambda _t: order.append("processing may start"))
        accepting.add_done_callback(lambda _t: order.append("accepted"))
        await asyncio.sleep(0.05)
        assert order == []  # processing is held while the accept is in flight
    await asyncio.wait_for(settled, 5)
    assert order == ["accepted", "processing may start"]
    await runtime.inbox.accepts_settled()  # nothing in flight: returns at once


async def test_requests_are_answered_while_a_backlog_is_processed(sqlite_url: str, tmp_path: Path) -> None:
    """SQLite statements run inline and never yield to the loop; the processor must still let a
    request that arrives meanwhile be read and answered long before the backlog is worked off.
    (PostgreSQL statements yield anyway: the driver awaits the server.)"""
    from aiohttp.test_utils import TestServer
    from sqlalchemy import func, select, update
    from sqlmodel import col

    from bot.metrics import REGISTRY
    from bot.web.app import build_app
    from core.inbound import InboundKind, InboundMessage
    from storage.tables import InboxRow
    from tests.conftest import make_settings

    async with TestClient(TestServer(build_app(make_settings(sqlite_url, tmp_path)))) as client:
        runtime = runtime_of(client)
        await runtime.rulebook.ready()  # the classifier's dictionary is loaded: nothing else waits

        async def done() -> int:
            async with runtime.sessions() as session:
                return int((await session.execute(select(func.count()).select_from(InboxRow).where(
                    InboxRow.event_key.startswith("backlog-"), InboxRow.status == "done"))).scalar_one())

        def handled() -> int:
            return int(REGISTRY.get_sample_value("ticketbot_inbox_events_total",
                                                 {"platform": "local", "outcome": "processed"}) or 0)

        backlog = 40
        # Accepted first, then scheduled at once: the processor takes turns with accepts (it would
        # work most of them off while they are accepted), and the backlog is what this test is about.
        rows: list[int] = []
        for i in range(backlog):
            row = await runtime.inbox.accept_row(InboundMessage("local", f"backlog-{i}", f"cust-backlog-{i}",
                                                                InboundKind.TEXT, text="底盘有异响"), schedule=False)
            assert row is not None
            rows.append(row)
        async with runtime.sessions() as session, session.begin():  # stored claimed: back to pending
            await session.execute(update(InboxRow).where(col(InboxRow.id).in_(rows)).values(status="pending"))
        for row in rows:
            runtime.processor.schedule(row)
        before = await done()
        assert backlog - before >= 10, f"only {backlog - before} messages left to process"
        # Counted when handled, not when committed: rows handled in one transaction share a commit,
        # and a count of committed rows would also count those handled after the answer.
        handled_before = handled()
        resp = await client.get("/healthz")  # read from its socket while the processor is busy
        waited = handled() - handled_before
        assert resp.status == 200
        assert waited <= 4, f"the request waited for {waited} of the {backlog - before} messages left"
        await runtime.processor.drain()


async def test_a_playground_message_is_stored_claimed_and_finished(app_client: TestClient) -> None:
    from sqlmodel import select

    from storage.tables import InboxRow

    customer = PlaygroundUser(app_client, "cust-claimed")
    await customer.say("底盘有异响")
    assert NUMBER.search(await customer.last_text())
    async with runtime_of(app_client).sessions() as session:
        rows = (await session.execute(select(InboxRow).where(InboxRow.event_key.startswith("cust-claimed:")))).scalars()
        assert [(r.status, r.attempts, r.error) for r in rows] == [("done", 1, None)]


async def test_a_message_whose_handling_fails_is_answered_and_kept_with_its_error(app_client: TestClient) -> None:
    """The database fails under the conversation (here: a table it needs is gone): the POST still
    answers, and the row goes back to the inbox with the error, for the sweep to try again."""
    from sqlalchemy import text
    from sqlmodel import select

    from storage.tables import InboxRow

    runtime = runtime_of(app_client)

    async def rename(old: str, new: str) -> None:
        async with runtime.sessions() as session, session.begin():
            await session.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))

    await rename("ticket_counters", "ticket_counters_away")
    try:
        resp = await app_client.post("/playground/api/messages", json={"user": "cust-fails", "text": "底盘有异响"})
    finally:
        await rename("ticket_counters_away", "ticket_counters")
    assert resp.status == 200
    assert (await resp.json())["accepted"] is True
    async with runtime.sessions() as session:
        rows = list((await session.execute(
            select(InboxRow).where(InboxRow.event_key.startswith("cust-fails:")))).scalars())
    assert [(r.status, r.attempts) for r in rows] == [("pending", 1)]
    assert "ticket_counters" in (rows[0].error or "")
    # The customer was to be stored with their first ticket: neither exists.
    assert await PlaygroundUser(app_client, "cust-fails").messages() == []
    async with runtime.uow() as uow:
        assert await uow.get_person("cust-fails") is None


async def test_a_new_customer_is_stored_with_their_first_ticket(app_client: TestClient) -> None:
    """The customer and the ticket are committed together (see the failure test above for the
    other half: neither, when the report fails)."""
    runtime = runtime_of(app_client)
    await PlaygroundUser(app_client, "cust-first").say("底盘有异响")
    await PlaygroundUser(app_client, "cust-first").say("中控黑屏")
    async with runtime.uow() as uow:
        person = await uow.get_person("cust-first")
        assert person is not None and person.role.value == "customer" and person.preferred_channel == "local"
        assert len(await uow.list_tickets(customer_id="cust-first")) == 2


async def test_a_new_sender_is_stored_before_handlers_that_need_the_directory(app_client: TestClient) -> None:
    """A text command and a shared location are handled by code of their own: the new sender exists first."""
    for user, body in (("cust-cmd", {"text": "我的工单"}), ("cust-loc", {"location": {"lat": 31.2, "lng": 121.4}})):
        resp = await app_client.post("/playground/api/messages", json={"user": user, **body})
        assert resp.status == 200
        assert (await resp.json())["messages"], user  # answered
        async with runtime_of(app_client).uow() as uow:
            assert await uow.get_person(user) is not None, user


async def test_the_sweep_processes_rows_a_crash_left_behind(app_client: TestClient) -> None:
    """A row accepted but never processed (the process died after the commit), and a row a dead
    process had claimed: the sweep picks both up, once; rows still queued here are left alone."""
    from datetime import timedelta

    from sqlalchemy import update

    from core.inbound import InboundKind, InboundMessage
    from storage.tables import InboxRow

    runtime = runtime_of(app_client)
    inbox = runtime.inbox
    saved, inbox.on_accepted = inbox.on_accepted, None  # "crash": nobody schedules the rows
    try:
        pending = await inbox.accept_row(InboundMessage("local", "lost-1", "cust-lost-1", InboundKind.TEXT,
                                                        text="底盘有异响"))
        claimed = await inbox.accept_row(InboundMessage("local", "lost-2", "cust-lost-2", InboundKind.TEXT,
                                                        text="中控黑屏"), schedule=False)  # stored "processing"
    finally:
        inbox.on_accepted = saved
    assert pending is not None and claimed is not None
    assert await runtime.processor.sweep() == 0  # too fresh: maybe still being handled
    long_ago = runtime.clock.now() - timedelta(minutes=10)
    async with runtime.sessions() as session, session.begin():
        await session.execute(update(InboxRow).where(InboxRow.id.in_([pending, claimed]))
                              .values(received_at=long_ago, processed_at=long_ago))
    assert await runtime.processor.sweep() == 2
    assert await runtime.processor.sweep() == 0  # queued here now: not scheduled twice
    await runtime.processor.drain()
    tickets = await (await app_client.get("/api/tickets")).json()
    assert sorted(t["customer_id"] for t in tickets) == ["cust-lost-1", "cust-lost-2"]
    assert await runtime.processor.sweep() == 0
