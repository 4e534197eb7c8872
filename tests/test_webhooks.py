"""Outbound webhooks end to end: the real app, the real dispatcher, a real receiver on loopback
(tests/fakes/webhook_receiver.py) that checks signatures with its own copy of the contract's formula."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.runtime import Runtime
from bot.web.app import build_app
from core.clock import FixedClock
from core.hub.api import global_id
from core.hub.webhook_events import emit, install_body_mapper, write_events
from core.model import TicketStatus
from core.service import SYSTEM_ACTOR, Context
from storage.tables import AuditEventRow
from storage.webhook_store import SqlWebhookStore, Subscription
from tests.conftest import make_settings, runtime_of
from tests.fakes.webhook_receiver import Endpoint, WebhookReceiver, verify_signature
from tests.test_lifecycle_support import Person, in_progress, report, ticket

S = TicketStatus
ALL = ["ticket.created", "ticket.status_changed", "ticket.assigned", "ticket.signed", "sla.breached",
       "parts.requested"]
GOOD_SIGNATURE = {"cause_told": "true", "parts_confirmed": "true", "rating": "5"}


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    fake = WebhookReceiver()
    await fake.start()
    yield fake
    await fake.stop()


async def _client(url: str, tmp_path: Path, **settings: Any) -> AsyncIterator[TestClient]:
    values: dict[str, Any] = {"webhook_allow_private": True, "webhook_timeout_s": 5.0, **settings}
    runtime = Runtime(make_settings(url, tmp_path, **values))
    runtime.webhooks.idle_s = 0.05  # tests wait for deliveries: poll often
    async with TestClient(TestServer(build_app(runtime.settings, runtime=runtime))) as client:
        yield client


@pytest.fixture
async def hub_client(sqlite_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    async for client in _client(sqlite_url, tmp_path):
        yield client


@pytest.fixture
async def hub_client_any_db(database_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    async for client in _client(database_url, tmp_path):
        yield client


def store_of(client: TestClient) -> SqlWebhookStore:
    runtime = runtime_of(client)
    return SqlWebhookStore(runtime.sessions, runtime.clock)


async def subscribe(client: TestClient, receiver: WebhookReceiver, name: str, events: list[str] | None = None,
                    **options: Any) -> tuple[Subscription, Endpoint]:
    subscription = await store_of(client).add_subscription(client=name, url=receiver.url(name),
                                                           secret=f"secret-of-{name}", events=events or ALL)
    return subscription, receiver.endpoint(name, secret=subscription.secret, **options)


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


async def settled(client: TestClient, subscription_id: int, check: Callable[[dict[str, Any]], bool],
                  timeout_s: float = 5.0) -> dict[str, Any]:
    """The subscription's latest delivery once `check` holds for it (attempts are recorded in batches)."""
    deadline = time.monotonic() + timeout_s
    while True:
        log = await store_of(client).log(subscription_id)
        if log and check(log[0]):
            return log[0]
        assert time.monotonic() < deadline, log[:1]
        await asyncio.sleep(0.02)


def types(endpoint: Endpoint, number: str | None = None) -> list[str]:
    return [e["type"] for e in endpoint.events if number is None or e["ticket"]["number"] == number]


async def test_events_arrive_signed_with_the_golden_fields(hub_client_any_db: TestClient,
                                                          receiver: WebhookReceiver) -> None:
    client = hub_client_any_db
    _, mes = await subscribe(client, receiver, "mes")
    _, erp = await subscribe(client, receiver, "erp", events=["ticket.created"])
    number = await report(client, "cust-hook-1")
    await until(lambda: len(types(mes)) >= 3 and len(types(erp)) >= 1)
    created = await ticket(client, number)
    # created, then the move to dispatch, then the offer: in the order of the audit trail
    assert types(mes)[:3] == ["ticket.created", "ticket.status_changed", "ticket.assigned"], types(mes)
    assert types(erp) == ["ticket.created"]
    assert mes.bad_signatures == 0 and erp.bad_signatures == 0
    first = mes.events[0]
    assert first["customer_key"] == "cust-hook-1" and first["status"] == "pending_dispatch"
    assert first["global_id"] == global_id(created) == created.data["global_id"]
    assert first["ticket"]["number"] == number and first["_header_event"] == "ticket.created"
    moved = mes.events[1]
    assert moved["data"] == {"transition": "dispatch", "from": "pending_dispatch", "to": "dispatched"}
    assert mes.events[2]["data"]["assignee_id"] == created.assignee_id
    headers = mes.headers[0]
    assert headers["X-Ticketbot-Event-Id"] == first["id"] and headers["Content-Type"].startswith("application/json")
    # one event, one id, whichever subscription it went to
    assert erp.events[0]["id"] == first["id"]


async def test_parts_signature_and_closing_never_before_the_signature(hub_client: TestClient,
                                                                     receiver: WebhookReceiver) -> None:
    client = hub_client
    _, mes = await subscribe(client, receiver, "mes")
    number = await in_progress(client, "cust-hook-2", "tech-wang", photos=3)
    tech = Person(client, "tech-wang")
    await tech.say(f"等待备件 {number} 压缩机继电器 B325 ×1")
    await Person(client, "wh-zhao").say(f"备件到位 {number}")
    await tech.say(f"完工 {number}")
    customer = Person(client, "cust-hook-2")
    card = await customer.last_card("signoff")
    await customer.press(card["id"], "sign", GOOD_SIGNATURE)
    assert (await ticket(client, number)).status == S.CLOSED
    await until(lambda: "ticket.signed" in types(mes) and mes.events[-1]["status"] == "closed")
    kinds = types(mes, number)
    assert "parts.requested" in kinds
    parts = next(e for e in mes.events if e["type"] == "parts.requested")
    assert parts["data"]["note"] == "压缩机继电器 B325 ×1" and parts["status"] == "waiting_parts"
    signed = kinds.index("ticket.signed")
    closed = [i for i, e in enumerate(mes.events) if e["status"] == "closed"]
    assert closed and min(closed) > signed, kinds  # nobody hears "closed" before the signature
    assert mes.events[signed]["data"]["rating"] == 5
    assert mes.events[-1]["data"] == {"transition": "sign_off", "from": "pending_signoff", "to": "closed"}


async def test_closed_without_a_signature_is_never_sent(hub_client: TestClient, receiver: WebhookReceiver) -> None:
    """The outbound status lock, even if some path closed a ticket without the signature."""
    client = hub_client
    await subscribe(client, receiver, "mes")
    number = await report(client, "cust-hook-3")
    runtime = runtime_of(client)
    before = len(await store_of(client).log(1, limit=50))
    async with runtime.uow() as uow:
        ctx = Context(uow=uow, clock=runtime.clock, actor=SYSTEM_ACTOR, service=runtime.service)
        unsigned = await ctx.ticket(number)
        await emit(ctx, "ticket.status_changed", unsigned, {"to": unsigned.status.value})  # the control
        unsigned.status = S.CLOSED
        await emit(ctx, "ticket.status_changed", unsigned, {"to": "closed"})
        await write_events(ctx)  # what the service runs before its commit
        await uow.commit()
    log = await store_of(client).log(1, limit=50)
    assert len(log) == before + 1 and '"status":"closed"' not in log[0]["request"]["body"]


async def test_a_failing_receiver_is_retried_with_backoff_and_every_attempt_logged(
        hub_client_any_db: TestClient, receiver: WebhookReceiver) -> None:
    client = hub_client_any_db
    runtime_of(client).webhooks.backoff_base_s = 0.3
    subscription, flaky = await subscribe(client, receiver, "flaky", events=["ticket.created"], fail_first=2)
    number = await report(client, "cust-hook-4")
    await until(lambda: len(flaky.events) == 1)
    assert flaky.requests == 3 and flaky.events[0]["ticket"]["number"] == number
    gaps = [b - a for a, b in zip(flaky.arrived_at, flaky.arrived_at[1:], strict=False)]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6, gaps  # exponential: base, then twice the base
    # every attempt carried the same event id
    assert {h["X-Ticketbot-Event-Id"] for h in flaky.headers} == {flaky.events[0]["id"]}
    delivery = await settled(client, subscription.id, lambda d: d["status"] == "delivered")
    assert delivery["attempts"] == 3
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 500, 200]
    assert "HTTP 500" in (delivery["attempt_log"][0]["error"] or "")
    assert all(a["latency_ms"] >= 0 for a in delivery["attempt_log"])


async def test_a_hanging_receiver_delays_neither_other_systems_nor_the_service(
        hub_client: TestClient, receiver: WebhookReceiver) -> None:
    client = hub_client
    runtime_of(client).webhooks.timeout_s = 30.0
    _, hanging = await subscribe(client, receiver, "hang", events=["ticket.created"], delay_s=60.0)
    _, healthy = await subscribe(client, receiver, "ok", events=["ticket.created"])
    started = time.monotonic()
    numbers = [await report(client, f"cust-hang-{i}") for i in range(10)]
    intake_s = time.monotonic() - started
    await until(lambda: len(healthy.events) == len(numbers), timeout_s=10.0)
    delivered_s = time.monotonic() - started
    assert sorted(e["ticket"]["number"] for e in healthy.events) == sorted(numbers)
    assert hanging.events == [] and 1 <= hanging.requests <= runtime_of(client).webhooks.concurrency
    assert delivered_s < intake_s + 5.0, (intake_s, delivered_s)  # the hanging one holds its slots for 30 s
    assert intake_s / len(numbers) < 1.0  # answers came at their usual pace


async def test_a_hanging_receiver_times_out_and_is_retried(hub_client: TestClient,
                                                           receiver: WebhookReceiver) -> None:
    client = hub_client
    dispatcher = runtime_of(client).webhooks
    dispatcher.timeout_s, dispatcher.backoff_base_s = 0.5, 3600.0
    subscription, slow = await subscribe(client, receiver, "slow", events=["ticket.created"], delay_s=5.0)
    await report(client, "cust-slow")
    await until(lambda: slow.requests == 1)
    store = store_of(client)

    async def logged() -> dict[str, Any]:
        return (await store.log(subscription.id))[0]

    deadline = time.monotonic() + 5
    while (await logged())["attempts"] == 0 or (await logged())["last_error"] is None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    delivery = await logged()
    assert delivery["status"] == "pending" and "timeout after 0.5 s" in delivery["last_error"]


async def test_redelivery_keeps_the_event_id_so_receivers_dedupe(hub_client: TestClient,
                                                                 receiver: WebhookReceiver) -> None:
    client = hub_client
    subscription, mes = await subscribe(client, receiver, "mes", events=["ticket.created"])
    await report(client, "cust-dedupe")
    await until(lambda: len(mes.events) == 1)
    store = store_of(client)
    deliveries = await store.log(subscription.id)
    while deliveries[0]["status"] != "delivered":
        await asyncio.sleep(0.02)
        deliveries = await store.log(subscription.id)
    assert await store.redeliver(deliveries[0]["id"]) is True
    runtime_of(client).webhooks.wake.set()
    await until(lambda: mes.duplicates == 1)
    assert len(mes.events) == 1 and mes.requests == 2
    assert mes.headers[0]["X-Ticketbot-Event-Id"] == mes.headers[1]["X-Ticketbot-Event-Id"]
    # a fresh signature for the new attempt, the same body
    assert verify_signature(mes.secret, mes.headers[1]["X-Ticketbot-Signature"],
                            deliveries[0]["request"]["body"].encode())


async def test_delivery_time_ssrf_guard_refuses_loopback(sqlite_url: str, tmp_path: Path,
                                                         receiver: WebhookReceiver) -> None:
    """A subscription that points at loopback (added while allowed, or a name that now resolves
    there: DNS rebinding) is refused at delivery when WEBHOOK_ALLOW_PRIVATE is off."""
    async for client in _client(sqlite_url, tmp_path, webhook_allow_private=False):
        runtime_of(client).webhooks.backoff_base_s = 3600.0
        literal, by_ip = await subscribe(client, receiver, "by-ip", events=["ticket.created"])
        port = receiver.base_url.rsplit(":", 1)[1]
        named = await store_of(client).add_subscription(
            client="by-name", url=f"http://localhost:{port}/hooks/by-name", secret="s", events=["ticket.created"])
        by_name = receiver.endpoint("by-name", secret="s")
        await report(client, "cust-ssrf")
        store = store_of(client)
        for subscription in (literal, named):
            deadline = time.monotonic() + 5
            while not (log := await store.log(subscription.id)) or not log[0]["last_error"]:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert "refused" in log[0]["last_error"] and log[0]["status"] == "pending", log[0]
        assert by_ip.requests == 0 and by_name.requests == 0


async def test_removed_subscription_gets_nothing_more(hub_client: TestClient, receiver: WebhookReceiver) -> None:
    client = hub_client
    subscription, mes = await subscribe(client, receiver, "mes", events=["ticket.created"])
    await report(client, "cust-rm-1")
    await until(lambda: len(mes.events) == 1)
    assert await store_of(client).remove_subscription(subscription.id) is True
    assert await store_of(client).remove_subscription(subscription.id) is False
    await report(client, "cust-rm-2", "发动机故障灯亮")
    await asyncio.sleep(0.5)
    assert len(mes.events) == 1


async def test_hub_status_and_redelivery_in_the_chat(hub_client_any_db: TestClient,
                                                    receiver: WebhookReceiver) -> None:
    client = hub_client_any_db
    runtime_of(client).webhooks.backoff_base_s = 3600.0
    subscription, down = await subscribe(client, receiver, "mes", events=["ticket.created"], fail_always=True)
    await report(client, "cust-chat-1")
    store = store_of(client)
    await until(lambda: down.requests == 1)
    deadline = time.monotonic() + 5
    while not (await store.log(subscription.id))[0]["last_error"]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    admin = Person(client, "admin")
    await admin.say("中枢 状态")
    status = await admin.last_text()
    assert "mes" in status and "待投 1" in status and "成功率 0.0%" in status, status
    assert "异常 TOP5" in status and "推送失败（自" in status and "HTTP 500" in status, status
    # a technician may not redeliver: refused politely, and the attempt is audited
    tech = Person(client, "tech-wang")
    await tech.say("中枢 重推 失败")
    assert "抱歉" in await tech.last_text()
    async with runtime_of(client).sessions() as session:
        refusals = (await session.execute(select(AuditEventRow.payload).where(
            AuditEventRow.kind == "command_refused"))).scalars().all()
    assert any(p["command"] == "中枢" for p in refusals), refusals
    # a supervisor sees the dashboard but may not redeliver either (refused in the command, audited)
    boss = Person(client, "sup-li")
    await boss.say("中枢 状态")
    assert "待投 1" in await boss.last_text()
    await boss.say("中枢 重推 失败")
    assert "只有系统管理员" in await boss.last_text()
    async with runtime_of(client).sessions() as session:
        refused = (await session.execute(select(AuditEventRow.payload).where(
            AuditEventRow.kind == "command_refused", AuditEventRow.actor_id == "sup-li"))).scalars().all()
    assert [p["reason"] for p in refused] == ["hub_redeliver_admin_only"], refused
    down.fail_always = False
    await admin.say("中枢 重推 失败")
    assert "已重推 1 条" in await admin.last_text()
    await until(lambda: len(down.events) == 1)
    await admin.say("中枢 重推 abc")
    assert "投递编号应为数字" in await admin.last_text()
    await admin.say("中枢 重推 失败 昨天")
    assert "看不懂起始时间" in await admin.last_text()
    await admin.say("中枢 重推 99999")
    assert "没有编号为 99999 的推送" in await admin.last_text()


def test_backoff_doubles_and_is_capped() -> None:
    from bot.jobs.webhooks import WebhookDispatcher

    dispatcher = WebhookDispatcher(None, None, backoff_base_s=10.0, backoff_cap_s=100.0)
    assert 10 <= dispatcher.backoff(1).total_seconds() <= 12
    assert 40 <= dispatcher.backoff(3).total_seconds() <= 48
    assert 100 <= dispatcher.backoff(30).total_seconds() <= 120
    assert dispatcher.backoff(30) < timedelta(minutes=3)


async def test_sla_breach_is_an_event(sqlite_url: str, tmp_path: Path, receiver: WebhookReceiver) -> None:
    from tests.sla_support import advance_to, at, fixed_clock_app
    from tests.sla_support import report as report_text

    clock = FixedClock(at(2026, 11, 18, 9, 0))
    async with fixed_clock_app(sqlite_url, tmp_path, clock, webhook_allow_private=True) as client:
        runtime_of(client).webhooks.idle_s = 0.05
        _, quality = await subscribe(client, receiver, "qms", events=["sla.breached"])
        number = await report_text(client, "cust-esc-hook", "机器坏了")  # not classified: waits in 待分诊
        await advance_to(runtime_of(client), clock, at(2026, 11, 18, 13, 0))
        await until(lambda: len(quality.events) == 1)
        (event,) = quality.events
        assert event["type"] == "sla.breached" and event["ticket"]["number"] == number
        assert event["data"]["track"] == "response" and event["status"] == "triage"
        assert quality.bad_signatures == 0


async def test_a_body_mapper_rewrites_one_systems_body_and_the_golden_fields_stay(
        hub_client: TestClient, receiver: WebhookReceiver) -> None:
    """The hook the hub's field mappings use: per system, applied when the event is queued."""
    client = hub_client

    async def mes_names(ctx: Context, system: str, body: dict[str, Any]) -> dict[str, Any]:
        if system != "mes":
            return body
        return {"工单号": body["ticket"]["number"], "事件": body["type"]}  # drops everything else

    previous = install_body_mapper(mes_names)
    try:
        _, mes = await subscribe(client, receiver, "mes", events=["ticket.created"])
        _, erp = await subscribe(client, receiver, "erp", events=["ticket.created"])
        number = await report(client, "cust-mapped")
        await until(lambda: len(mes.events) == 1 and len(erp.events) == 1)
    finally:
        install_body_mapper(previous)  # the real mappings (core/hub/mappings.py), not none
    mapped, ours = mes.events[0], erp.events[0]
    assert mapped["工单号"] == number and mapped["事件"] == "ticket.created" and "ticket" not in mapped
    assert {k: mapped[k] for k in ("customer_key", "global_id", "status")} == \
        {k: ours[k] for k in ("customer_key", "global_id", "status")}
    assert mes.bad_signatures == 0 and mes.headers[0]["X-Ticketbot-Event-Id"] == ours["id"]


async def test_after_three_days_of_failures_a_delivery_is_dead_lettered(sqlite_url: str, tmp_path: Path,
                                                                       receiver: WebhookReceiver) -> None:
    from tests.sla_support import at, fixed_clock_app

    start = at(2026, 11, 18, 9, 0)
    clock = FixedClock(start)
    async with fixed_clock_app(sqlite_url, tmp_path, clock, webhook_allow_private=True) as client:
        dispatcher = runtime_of(client).webhooks
        dispatcher.idle_s, dispatcher.backoff_base_s = 0.05, 3600.0
        subscription, down = await subscribe(client, receiver, "mes", events=["ticket.created"], fail_always=True)
        await report(client, "cust-dead")
        first = await settled(client, subscription.id, lambda d: d["attempts"] == 1 and d["status"] != "sending")
        assert first["status"] == "pending" and first["last_status"] == 500
        # the next attempt is due in about an hour; the one after that would come after the 3 days
        clock.set(start + timedelta(days=3) - timedelta(minutes=30))
        dispatcher.wake.set()
        dead = await settled(client, subscription.id, lambda d: d["attempts"] == 2 and d["status"] != "sending")
        assert dead["status"] == "dead" and down.requests == 2
        admin = Person(client, "admin")
        await admin.say("中枢 状态")
        status = await admin.last_text()
        assert "失败 1" in status and "1 条推送已进入死信" in status, status
        down.fail_always = False
        await admin.say("中枢 重推 失败 2026-11-18")
        assert "已重推 1 条" in await admin.last_text()
        await until(lambda: len(down.events) == 1)
        again = await settled(client, subscription.id, lambda d: d["status"] == "delivered")
        assert again["attempts"] == 3 and again["event_id"] == first["event_id"]
