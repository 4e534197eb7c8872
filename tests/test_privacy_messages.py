"""The inbox and outbox as personal data (issue 20, PIPL; storage/message_logs.py): a forgotten
customer's messages — what they wrote, where they were, what they were told — go with the forget, and
every handled message goes after CUSTOMER_DATA_RETENTION_DAYS (the inbox's dedupe keys kept a week at
least). Other customers' rows, and rows still being delivered, stay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, update
from sqlmodel import col

from bot.cli.customers import customer_identities, forget
from bot.jobs.privacy import RetentionPurge
from bot.web.app import build_app
from core.inbound import InboundKind, InboundMessage
from storage.message_logs import SqlMessageLogs
from storage.tables import InboxRow, OutboxRow
from storage.tables_kf import KfHeldRow
from tests.conftest import make_settings, runtime_of
from tests.playground_client import PlaygroundUser

PHONE = "13812345678"


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(build_app(make_settings(database_url, tmp_path)))) as c:
        yield c


async def _inbox(client: TestClient) -> list[tuple[str, str, str]]:
    async with runtime_of(client).sessions() as session:
        rows = (await session.execute(select(InboxRow).order_by(col(InboxRow.id)))).scalars()
        return [(r.platform, str(r.payload.get("sender")), r.status) for r in rows]


async def _outbox_recipients(client: TestClient) -> set[str]:
    async with runtime_of(client).sessions() as session:
        return set((await session.execute(select(col(OutboxRow.recipient_id)))).scalars())


async def test_forget_deletes_what_the_customer_sent_and_was_sent(client: TestClient) -> None:
    gone, stays = PlaygroundUser(client, "cust-forget-msgs"), PlaygroundUser(client, "cust-stays")
    await gone.say(f"空调不制冷，回电 {PHONE}")
    assert (await client.post("/playground/api/messages", json={
        "user": gone.user, "location": {"lat": 31.2, "lng": 121.4}})).status == 200
    await stays.say("中控黑屏")
    rt = runtime_of(client)
    async with rt.sessions.transaction() as conn:  # a 微信客服 message held for the customer (a flood)
        await conn.execute(KfHeldRow.__table__.insert().values(  # type: ignore[attr-defined]
            external_id=gone.user, text=f"回电 {PHONE}", ticket_number=None, held_at=datetime.now(UTC)))
    assert {s for _, s, _ in await _inbox(client)} >= {gone.user, stays.user}

    result = await forget(rt.settings, gone.user)

    assert result == {"customer": gone.user, "forgotten": True, "tickets": 1}  # the printed object unchanged
    assert [s for _, s, _ in await _inbox(client)] == [stays.user]
    recipients = await _outbox_recipients(client)
    assert gone.user not in recipients and stays.user in recipients
    async with rt.sessions() as session:
        assert (await session.execute(select(KfHeldRow))).scalars().all() == []
    assert await gone.messages() == []  # the playground's history of them is gone too


async def test_a_message_that_arrives_between_the_read_and_the_forget_goes_too(client: TestClient) -> None:
    """The inbox is read before the forget's transaction (a scan, kept out of the write lock); the
    transaction deletes what arrived since, by id."""
    customer = PlaygroundUser(client, "cust-late-msg")
    await customer.say("底盘有异响")
    rt = runtime_of(client)
    messages = SqlMessageLogs(rt.sessions)
    senders = await customer_identities(rt.sessions, customer.user)
    assert senders == [("local", customer.user)]
    found, read_through = await messages.inbox_rows_from(senders)
    assert len(found) == 1
    late = InboundMessage("local", f"{customer.user}:late", customer.user, InboundKind.TEXT, text=f"回电 {PHONE}")
    assert await rt.inbox.accept_row(late, schedule=False) is not None
    async with rt.sessions.shared_transaction():
        sent, received = await messages.forget(customer.user, senders, found, read_through)
    assert received == 2 and sent >= 1
    assert [s for _, s, _ in await _inbox(client)] == []


async def test_forget_with_no_identities_deletes_only_the_outbox_rows(client: TestClient) -> None:
    rt = runtime_of(client)
    await PlaygroundUser(client, "cust-other").say("底盘有异响")
    ids, read_through = await SqlMessageLogs(rt.sessions).inbox_rows_from([])
    assert ids == [] and read_through >= 1
    async with rt.sessions.shared_transaction():
        assert await SqlMessageLogs(rt.sessions).forget("nobody", [], ids, read_through) == (0, 0)
    assert len(await _inbox(client)) == 1


async def _age(client: TestClient, days: float) -> None:
    """Make every row so many days old (the retention compares arrival times)."""
    back = timedelta(days=days)
    async with runtime_of(client).sessions.transaction() as conn:
        for row in (await conn.execute(select(col(InboxRow.id), col(InboxRow.received_at)))).all():
            await conn.execute(update(InboxRow).where(col(InboxRow.id) == row[0]).values(received_at=row[1] - back))
        for row in (await conn.execute(select(col(OutboxRow.id), col(OutboxRow.created_at)))).all():
            await conn.execute(update(OutboxRow).where(col(OutboxRow.id) == row[0]).values(created_at=row[1] - back))


async def test_the_retention_deletes_handled_messages_older_than_it(client: TestClient) -> None:
    rt = runtime_of(client)
    await PlaygroundUser(client, "cust-old").say(f"空调不制冷，回电 {PHONE}")
    async with rt.sessions.transaction() as conn:  # one answer still being delivered: kept
        pending = (await conn.execute(select(col(OutboxRow.id)).order_by(col(OutboxRow.id)).limit(1))).scalar_one()
        await conn.execute(update(OutboxRow).where(col(OutboxRow.id) == pending).values(
            status="pending", next_attempt_at=datetime.now(UTC) + timedelta(days=365)))  # the dispatcher waits
    await _age(client, 40)
    async with rt.sessions() as session:
        old_ids = set((await session.execute(select(col(OutboxRow.id)))).scalars())
    assert len(old_ids) >= 2
    await PlaygroundUser(client, "cust-young").say("中控黑屏")

    await RetentionPurge(rt.sessions, rt.service, 30).run(datetime.now(UTC))

    assert [s for _, s, _ in await _inbox(client)] == ["cust-young"]
    async with rt.sessions() as session:
        left: list[Any] = list((await session.execute(select(OutboxRow))).scalars())
    assert {r.id for r in left} & old_ids == {pending}  # not delivered yet: not the retention's to delete
    assert "cust-young" in {r.recipient_id for r in left}


async def test_the_inbox_keeps_a_week_of_dedupe_keys_whatever_the_retention(client: TestClient) -> None:
    rt = runtime_of(client)
    await PlaygroundUser(client, "cust-week").say("底盘有异响")
    await _age(client, 3)  # older than a 1-day retention, younger than a week
    await RetentionPurge(rt.sessions, rt.service, 1).run(datetime.now(UTC))
    assert [s for _, s, _ in await _inbox(client)] == ["cust-week"]
    await _age(client, 5)  # 8 days
    await RetentionPurge(rt.sessions, rt.service, 1).run(datetime.now(UTC))
    assert await _inbox(client) == []


async def test_the_forget_scan_reads_the_inbox_in_spans(client: TestClient) -> None:
    """The whole inbox is read, a span of ids per transaction (SQLite's transactions hold the write
    lock): every span is looked at, the last one partly."""
    rt = runtime_of(client)
    for n in range(5):
        await PlaygroundUser(client, f"cust-span-{n % 2}").say("你好")
    messages = SqlMessageLogs(rt.sessions)
    ids, newest = await messages.inbox_rows_from([("local", "cust-span-1")], span=2)
    whole, _ = await messages.inbox_rows_from([("local", "cust-span-1")], span=1_000)
    assert len(ids) == 2 and sorted(ids) == sorted(whole) and newest >= max(ids)
