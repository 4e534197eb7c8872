"""One sender's messages are handled in the order they arrived, also by several workers at once (the
PostgreSQL processor, bot/jobs/delivery.py): a location sent just before a report must be stored before
the report is read. Other senders' messages go on meanwhile. Real inbox rows on a real database; the
processor's handler is the one thing swapped (it records, and the first message of each sender is slow)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.jobs.delivery import InboxProcessor
from bot.web.app import build_app
from core.inbound import InboundKind, InboundMessage
from tests.conftest import make_settings, runtime_of
from tests.test_inbox_batching import accepted_unscheduled, statuses


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(build_app(make_settings(database_url, tmp_path)))) as c:
        yield c


async def test_one_senders_messages_in_order_while_others_go_on(client: TestClient) -> None:
    runtime = runtime_of(client)
    started: list[str] = []
    finished: list[str] = []

    async def handle(message: InboundMessage) -> None:
        started.append(message.event_key)
        await asyncio.sleep(0.2 if message.event_key.endswith(":1") else 0)  # the first one is slow
        finished.append(message.event_key)

    messages = [InboundMessage("local", f"{sender}:{n}", sender, InboundKind.TEXT, text=f"第{n}条")
                for n in (1, 2, 3) for sender in ("cust-order-a", "cust-order-b")]
    rows = await accepted_unscheduled(runtime, messages)
    processor = InboxProcessor(runtime.inbox, handle, concurrency=4)
    for row, message in zip(rows, messages, strict=True):
        processor.schedule(row, f"{message.platform}:{message.sender}")
    await processor.drain()

    for sender in ("cust-order-a", "cust-order-b"):
        assert [k for k in finished if k.startswith(sender)] == [f"{sender}:{n}" for n in (1, 2, 3)]
        assert [k for k in started if k.startswith(sender)] == [f"{sender}:{n}" for n in (1, 2, 3)]
    # Both senders' slow first messages ran at the same time: the order is per sender, not global.
    assert set(started[:2]) == {"cust-order-a:1", "cust-order-b:1"}
    assert [s for s, _ in await statuses(runtime, rows)] == ["done"] * len(rows)


async def test_rows_without_a_sender_are_not_held(client: TestClient) -> None:
    """The sweep's rows carry no sender: they are processed as they come, by any worker."""
    runtime = runtime_of(client)
    seen: list[str] = []

    async def handle(message: InboundMessage) -> None:
        seen.append(message.event_key)

    rows = await accepted_unscheduled(runtime, [
        InboundMessage("local", f"swept:{n}", "cust-swept", InboundKind.TEXT, text="你好") for n in range(3)])
    processor = InboxProcessor(runtime.inbox, handle, concurrency=4)
    for row in rows:
        processor.schedule(row)
    await processor.drain()
    assert sorted(seen) == ["swept:0", "swept:1", "swept:2"]
    assert [s for s, _ in await statuses(runtime, rows)] == ["done"] * 3
