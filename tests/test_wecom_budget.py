"""Per-recipient budget (WeCom drops > 30 messages/min per member) and merging of queued texts,
in memory, in real Redis, and through WeComSender against the fake WeCom API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.wecom import WeComConfig
from adapters.wecom.budget import (
    DEFAULT_WINDOWS,
    BudgetWindow,
    MemoryRecipientBudget,
    RecipientBusy,
    RedisRecipientBudget,
)
from adapters.wecom.sender import WeComSender
from core.cards import Card, CardAction, CardKind, Notification
from core.errors import DeliveryRejected, DeliveryRetryLater
from core.ports import OutboundDelivery
from tests.fakes.wecom_server import FakeWeCom


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class MemoryTokens:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.data.get(key)

    async def set(self, key: str, value: str, ttl_s: float) -> None:
        self.data[key] = value

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)


# --- the budget itself ------------------------------------------------------------------


async def test_default_budget_stays_below_wecom_limits() -> None:
    assert all(w.limit < (30 if w.window_s == 60 else 1000) for w in DEFAULT_WINDOWS)


async def test_memory_budget_refuses_the_29th_message_in_a_minute_and_says_how_long_to_wait() -> None:
    clock = Clock()
    budget = MemoryRecipientBudget(clock=clock)
    for i in range(28):
        clock.now += 1
        assert await budget.take("zhangsan") == 0.0, i
    wait = await budget.take("zhangsan")
    assert wait == pytest.approx(60 - 27)  # the oldest booking (27 s ago) frees the first slot
    assert await budget.take("lisi") == 0.0  # per recipient
    clock.now += wait
    assert await budget.take("zhangsan") == 0.0


async def test_memory_budget_books_several_messages_at_once_or_none() -> None:
    clock = Clock()
    budget = MemoryRecipientBudget([BudgetWindow(3, 60)], clock=clock)
    assert await budget.take("u", 2) == 0.0
    assert await budget.take("u", 2) == pytest.approx(60)  # only one left: nothing booked
    assert await budget.take("u", 1) == 0.0


async def test_memory_budget_hour_window() -> None:
    clock = Clock()
    budget = MemoryRecipientBudget([BudgetWindow(100, 60), BudgetWindow(5, 3600)], clock=clock)
    for _ in range(5):
        assert await budget.take("u") == 0.0
        clock.now += 61
    assert await budget.take("u") == pytest.approx(3600 - 5 * 61)


async def test_memory_budget_forgets_recipients_idle_for_the_longest_window() -> None:
    """Memory follows the people messaged within the hour, and forgetting them costs O(1) per
    booking: with more than 10,000 recipients in the hour the budget used to rebuild its whole
    table on every send (issue 24: 54 % of the WeCom process's CPU; bench/wecom_budget_bench.py)."""
    clock = Clock()
    budget = MemoryRecipientBudget(clock=clock)
    for i in range(100):
        assert await budget.take(f"u{i}") == 0.0
        clock.now += 1
    assert budget.recipients_tracked == 100
    clock.now += 3600 - 50  # the first 50 bookings are now older than the hour
    assert await budget.take("late") == 0.0
    assert budget.recipients_tracked == 50  # u51..u99 (u50 is exactly an hour old) and "late"
    clock.now += 3600
    assert await budget.take("u0") == 0.0
    assert budget.recipients_tracked == 1


async def test_memory_budget_keeps_counting_a_busy_recipient_among_many() -> None:
    clock = Clock()
    budget = MemoryRecipientBudget(clock=clock)
    for _ in range(28):
        assert await budget.take("busy") == 0.0
    for i in range(20_000):
        assert await budget.take(f"other{i}") == 0.0
    assert await budget.take("busy") == pytest.approx(60.0)  # still spent: nobody was forgotten
    clock.now += 60
    assert await budget.take("busy") == 0.0


async def test_redis_budget_is_shared_by_two_processes(redis_url: str) -> None:
    from redis.asyncio import Redis

    clock = Clock()
    first, second = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        windows = [BudgetWindow(3, 60), BudgetWindow(10, 3600)]
        a = RedisRecipientBudget(first, windows, clock=clock)
        b = RedisRecipientBudget(second, windows, clock=clock)
        assert await a.take("zhangsan") == 0.0
        clock.now += 10
        assert await b.take("zhangsan", 2) == 0.0
        clock.now += 5
        assert await a.take("zhangsan") == pytest.approx(45)  # the first booking frees a slot at +60
        assert await b.take("lisi") == 0.0
        clock.now += 45
        assert await b.take("zhangsan") == 0.0
        assert 0 < await first.pttl("ticketbot:wecom:budget:zhangsan:60") <= 60_000  # nothing lingers
    finally:
        await first.aclose()
        await second.aclose()


# --- through the sender ------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeWeCom]:
    server = FakeWeCom()
    await server.start()
    yield server
    await server.close()


def make_sender(fake: FakeWeCom, budget: Any = None) -> WeComSender:
    config = WeComConfig(
        corp_id=fake.corp_id,
        agent_id=str(fake.agent_id),
        secret=fake.secret,
        token="t",
        encoding_aes_key="jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
        api_base=fake.base_url,
    )
    return WeComSender(config, MemoryTokens(), budget=budget)


_ids = iter(range(1, 100_000))


def delivery(note: Notification, user: str = "zhangsan") -> OutboundDelivery:
    return OutboundDelivery(outbox_id=next(_ids), platform="wecom", recipient_external_id=user, notification=note)


async def test_sender_stops_at_the_budget_instead_of_letting_wecom_drop(fake: FakeWeCom) -> None:
    sender = make_sender(fake)
    try:
        for i in range(28):
            card = Card(id=f"st-{i}", kind=CardKind.STATUS, title=f"状态 {i}")
            await sender.send(delivery(Notification("p", card=card)))
        with pytest.raises(RecipientBusy) as info:
            await sender.send(delivery(Notification("p", text="第 29 条")))
        assert isinstance(info.value, DeliveryRetryLater) and 55 <= (info.value.retry_after_s or 0) <= 60
        with pytest.raises(RecipientBusy):  # text + card is booked as two messages, all or nothing
            info_card = Card(id="x", kind=CardKind.INFO, title="t")
            await sender.send(delivery(Notification("p", text="说明", card=info_card)))
        await sender.send(delivery(Notification("p", text="给另一个人"), user="lisi"))
    finally:
        await sender.close()
    assert len(fake.delivered) == 29 and fake.dropped == []


async def test_texts_queued_behind_a_send_leave_as_one_message(fake: FakeWeCom) -> None:
    sender = make_sender(fake)
    try:
        receipts = await asyncio.gather(
            *(sender.send(delivery(Notification("p", text=f"提醒 {i}"))) for i in range(10))
        )
    finally:
        await sender.close()
    contents = [b["text"]["content"] for b in fake.delivered]
    # The first goes at once (never delayed); the nine that queued behind it go together, in order.
    assert contents == ["提醒 0", "\n\n".join(f"提醒 {i}" for i in range(1, 10))]
    assert all(r.external_message_id for r in receipts)
    assert len({r.external_message_id for r in receipts[1:]}) == 1


async def test_merged_texts_respect_the_2048_byte_limit(fake: FakeWeCom) -> None:
    sender = make_sender(fake)
    long = "设备故障说明" * 60  # 1080 bytes
    try:
        await asyncio.gather(*(sender.send(delivery(Notification("p", text=f"{i}{long}"))) for i in range(5)))
    finally:
        await sender.close()
    contents = [b["text"]["content"] for b in fake.delivered]
    assert len(contents) == 5  # no two fit one message
    assert all(len(c.encode()) <= 2048 for c in contents)
    assert sorted(c[0] for c in contents) == ["0", "1", "2", "3", "4"]


async def test_texts_for_different_people_are_not_merged(fake: FakeWeCom) -> None:
    sender = make_sender(fake)
    try:
        await asyncio.gather(
            *(sender.send(delivery(Notification("p", text=f"消息 {u}"), user=u)) for u in ("zhangsan", "lisi"))
        )
    finally:
        await sender.close()
    assert sorted(b["touser"] for b in fake.delivered) == ["lisi", "zhangsan"]


async def test_a_refused_merged_text_is_retried_part_by_part(fake: FakeWeCom) -> None:
    fake.refuse_text_containing = "违规"
    sender = make_sender(fake)
    try:
        results = await asyncio.gather(
            *(sender.send(delivery(Notification("p", text=t))) for t in ["甲", "乙", "违规内容", "丁"]),
            return_exceptions=True,
        )
    finally:
        await sender.close()
    assert isinstance(results[2], DeliveryRejected)
    assert [isinstance(r, BaseException) for r in results] == [False, False, True, False]
    delivered = [b["text"]["content"] for b in fake.delivered]
    assert delivered[0] == "甲" and sorted(delivered[1:]) == ["丁", "乙"]


async def test_a_spent_budget_puts_the_whole_merged_batch_back(fake: FakeWeCom) -> None:
    clock = Clock()
    sender = make_sender(fake, MemoryRecipientBudget([BudgetWindow(1, 60)], clock=clock))
    try:
        results = await asyncio.gather(
            *(sender.send(delivery(Notification("p", text=f"第{i}条"))) for i in range(4)), return_exceptions=True
        )
    finally:
        await sender.close()
    assert not isinstance(results[0], BaseException)
    waits = {r.retry_after_s for r in results[1:] if isinstance(r, RecipientBusy)}
    assert len(waits) == 1  # same retry time: the three come due together and merge next time
    assert [b["text"]["content"] for b in fake.delivered] == ["第0条"]


async def test_card_update_books_no_message(fake: FakeWeCom) -> None:
    clock = Clock()
    sender = make_sender(fake, MemoryRecipientBudget([BudgetWindow(1, 60)], clock=clock))
    try:
        card = Card(id="offer-1", kind=CardKind.OFFER, title="新工单", actions=(CardAction("accept", "接单"),))
        sent = await sender.send(delivery(Notification("p", card=card)))
        closed = Card(id="offer-1", kind=CardKind.OFFER, title="新工单", closed_note="已接单")
        update = OutboundDelivery(
            outbox_id=next(_ids),
            platform="wecom",
            recipient_external_id="zhangsan",
            notification=Notification("p", card=closed, replaces_card_id="offer-1"),
            card_ref=sent.card_ref,
        )
        await sender.send(update)  # budget is spent, yet the in-place update goes through
    finally:
        await sender.close()
    assert len(fake.applied_updates) == 1
