"""DingTalk end to end: the real app (build_app, real SQLite/PostgreSQL, inbox, outbox, dispatcher)
with the DingTalk adapter talking to a fake DingTalk on loopback through DINGTALK_OPENAPI_ENDPOINT.

Every message below travels as DingTalk would carry it: stream frames in, acks back, OpenAPI calls
out (robot batchSend, DING, message-file download), recorded by tests/fakes/dingtalk_gateway.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from adapters.dingtalk.commands import command_text
from bot.runtime import Runtime
from bot.web.app import build_app
from core.model import Person, Role, Ticket, TicketStatus
from storage.tables import AuditEventRow, CardRow, InboxRow, OutboxRow, PersonRow
from tests.conftest import make_settings, runtime_of
from tests.fakes.dingtalk_gateway import (
    TOPIC_CARD,
    TOPIC_ROBOT,
    DingTalkUser,
    FakeDingTalkGateway,
    RobotOut,
    callback_frame,
    card_callback,
    event_frame,
    robot_message,
    system_frame,
)

OTO = "/v1.0/robot/oToMessages/batchSend"
TICKET_NUMBER = re.compile(r"GD-\d{8}-\d{4}")
CREATED = "已为您创建工单"
TECHNICIANS = ("tech-wang", "tech-zhang", "tech-liu", "tech-huang", "tech-xu")


@dataclass
class World:
    client: TestClient
    gateway: FakeDingTalkGateway
    runtime: Runtime

    def user(self, staff_id: str, nick: str = "张三") -> DingTalkUser:
        return DingTalkUser(self.gateway, staff_id, nick)

    async def tickets(self) -> list[Ticket]:
        async with self.runtime.uow() as uow:
            return await uow.list_tickets()

    async def ticket(self, number: str) -> Ticket:
        async with self.runtime.uow() as uow:
            ticket = await uow.get_ticket(number)
        assert ticket is not None, number
        return ticket

    async def person_of(self, staff_id: str) -> Person | None:
        async with self.runtime.uow() as uow:
            return await uow.person_by_identity("dingtalk", staff_id)

    async def add_person(self, person: Person, staff_id: str) -> None:
        """A directory person reachable on DingTalk: identities maps (dingtalk, staffId) to them."""
        async with self.runtime.uow() as uow:
            await uow.add_person(person, {"dingtalk": staff_id})
            await uow.commit()

    async def link(self, person_id: str, staff_id: str, nick: str = "") -> DingTalkUser:
        """Map an existing directory person to a DingTalk staff id, and answer them there."""
        async with self.runtime.uow() as uow:
            person = await uow.get_person(person_id)
            assert person is not None
            await uow.link_identity(person_id, "dingtalk", staff_id)
            person.preferred_channel = "dingtalk"
            await uow.save_person(person)
            await uow.commit()
        return DingTalkUser(self.gateway, staff_id, nick or person_id)

    async def scalar(self, statement: Any) -> Any:
        async with self.runtime.sessions() as session:
            return (await session.execute(statement)).scalar_one()

    async def rows(self, statement: Any) -> list[Any]:
        async with self.runtime.sessions() as session:
            return list((await session.execute(statement)).scalars())

    async def created_rows(self, person_id: str) -> list[OutboxRow]:
        """The outbox rows of the "ticket created" answer to this person."""
        rows = await self.rows(select(OutboxRow).where(OutboxRow.recipient_id == person_id).order_by(OutboxRow.id))
        return [r for r in rows if CREATED in (r.payload.get("text") or "")]

    async def created_row_settled(self, person_id: str, timeout_s: float = 5.0) -> OutboxRow:
        """The one "ticket created" row once its delivery is recorded: the fake sees the message
        before the dispatcher, back from the call, marks the row sent."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            (row,) = await self.created_rows(person_id)
            if row.status != "sending" or asyncio.get_running_loop().time() > deadline:
                return row
            await asyncio.sleep(0.02)

    async def audit_kinds(self) -> list[str]:
        return [r.kind for r in await self.rows(select(AuditEventRow).order_by(AuditEventRow.seq))]


def dingtalk_settings(database_url: str, tmp_path: Path, **overrides: object) -> Any:
    return make_settings(
        database_url, tmp_path, dingtalk_client_id="ding-app", dingtalk_client_secret="s3cret", **overrides
    )


@pytest.fixture
async def gateway(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDingTalkGateway]:
    fake = FakeDingTalkGateway()
    monkeypatch.setenv("DINGTALK_OPENAPI_ENDPOINT", await fake.start())
    yield fake
    await fake.close()


@pytest.fixture
async def world(database_url: str, tmp_path: Path, gateway: FakeDingTalkGateway) -> AsyncIterator[World]:
    app = build_app(dingtalk_settings(database_url, tmp_path))
    async with TestClient(TestServer(app)) as client:
        await gateway.wait_connections(1, timeout=15)
        yield World(client, gateway, runtime_of(client))


def number_in(text: str) -> str:
    match = TICKET_NUMBER.search(text)
    assert match, text
    return match.group(0)


# --- wiring ---


async def test_runtime_builds_the_dingtalk_adapter_from_settings(world: World):
    (adapter,) = world.runtime.adapters
    assert adapter.platform == "dingtalk"
    assert world.runtime.dispatcher.senders["dingtalk"] is adapter.sender
    opened = world.gateway.opens[0]
    assert (opened["clientId"], opened["clientSecret"]) == ("ding-app", "s3cret")


# --- intake over the wire ---


async def test_text_from_unknown_staff_is_acked_after_commit_and_answered_over_batchsend(world: World):
    seen_at_ack: dict[str, int] = {}

    async def look_at_inbox(ack: dict[str, Any]) -> None:
        # Runs when the ack reaches DingTalk: the inbox row must already be committed (visible to others).
        count = select(func.count()).select_from(InboxRow).where(InboxRow.event_key == "msg:m-wash-1")
        seen_at_ack[ack["headers"]["messageId"]] = await world.scalar(count)

    world.gateway.ack_observers.append(look_at_inbox)
    user = world.user("staff-new-001", nick="王阿姨")
    frame_id = await user.say("洗衣机脱水时异响", msg_id="m-wash-1")
    ack = await world.gateway.wait_ack(frame_id)
    assert ack["code"] == 200
    assert seen_at_ack[frame_id] == 1

    reply = await user.wait_message(lambda m: CREATED in m.text)
    number = number_in(reply.text)
    assert "机械类" in reply.text
    call = next(c for c in world.gateway.calls(OTO) if c.body["userIds"] == ["staff-new-001"])
    assert call.body["robotCode"] == "ding-app" and call.body["msgKey"] == "sampleText"

    ticket = await world.ticket(number)
    assert ticket.description == "洗衣机脱水时异响" and ticket.category == "机械类"
    person = await world.person_of("staff-new-001")
    assert person is not None and person.role is Role.CUSTOMER
    assert person.name == "王阿姨" and person.preferred_channel == "dingtalk"
    assert ticket.customer_id == person.id
    row = await world.created_row_settled(person.id)
    assert (row.channel, row.status) == ("dingtalk", "sent")


async def test_duplicate_deliveries_make_one_ticket(world: World):
    data = robot_message(msg_id="m-dup-1", sender="staff-dup", text="烘干机不加热了，有焦味")
    frames = [callback_frame(TOPIC_ROBOT, data, f"dup-frame-{i}") for i in range(3)]
    for frame in frames:
        await world.gateway.push(frame)
    for frame in frames:
        assert (await world.gateway.wait_ack(frame["headers"]["messageId"]))["code"] == 200
    user = world.user("staff-dup")
    await user.wait_message(lambda m: CREATED in m.text)
    await asyncio.sleep(0.5)  # room for a wrong second ticket or reply to show up
    assert len(await world.tickets()) == 1
    assert sum(CREATED in m.text for m in user.received()) == 1
    count = select(func.count()).select_from(InboxRow).where(InboxRow.platform == "dingtalk")
    assert await world.scalar(count) == 1


async def test_known_identity_acts_as_the_directory_person(world: World):
    await world.add_person(
        Person(id="sup-ding", name="主管 丁一", role=Role.SUPERVISOR, preferred_channel="dingtalk"), "staff-sup-1"
    )
    customer = world.user("staff-cust-9")
    await customer.say("空压机漏气，压力上不去")
    number = number_in((await customer.wait_message(lambda m: CREATED in m.text)).text)

    supervisor = world.user("staff-sup-1", nick="丁一")
    await supervisor.say("我的工单")
    listing = await supervisor.wait_message(lambda m: number in m.text)
    assert "最近的工单" in listing.text  # a supervisor sees every ticket, a customer only their own
    assert (await world.person_of("staff-sup-1")).id == "sup-ding"  # type: ignore[union-attr]
    people = select(func.count()).select_from(PersonRow).where(PersonRow.name == "丁一")
    assert await world.scalar(people) == 0  # no stray customer was made for the known staff id


async def test_group_message_is_answered_in_the_group(world: World):
    data = robot_message(
        msg_id="m-group-1",
        sender="staff-grp",
        text="@工单助手 进度",
        conversation_type="2",
        conversation_id="cid-workshop",
    )
    await world.gateway.push(callback_frame(TOPIC_ROBOT, data, "group-frame-1"))
    await world.gateway.wait_for(lambda: bool(world.gateway.messages_to_group("cid-workshop")), timeout=10)
    (answer,) = world.gateway.messages_to_group("cid-workshop")
    assert "您目前没有工单" in answer.text
    assert world.gateway.messages_to("staff-grp") == []


# --- bad input end to end ---


async def test_malformed_frames_and_unknown_topics_are_acked_ignored_and_logged(
    world: World, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="adapters.dingtalk")
    gateway = world.gateway
    await gateway.push("{this is not json")
    await gateway.push(callback_frame(TOPIC_ROBOT, "{not json either", "bad-data"))
    await gateway.push(callback_frame(TOPIC_ROBOT, {"msgtype": "text", "msgId": "x"}, "no-sender"))
    await gateway.push(callback_frame(TOPIC_CARD, {"outTrackId": "c", "content": "{}", "extension": "{}"}, "bad-card"))
    await gateway.push(callback_frame("/v1.0/im/unknown/topic", {"a": 1}, "unknown-topic"))
    await gateway.push({"specVersion": "1.0", "type": "MYSTERY", "headers": {"messageId": "mystery"}, "data": "{}"})
    audio = robot_message(msg_id="m-audio", sender="staff-x", text="")
    audio.update({"msgtype": "audio", "content": {"duration": 3, "downloadCode": "a"}})
    audio.pop("text")
    await gateway.push(callback_frame(TOPIC_ROBOT, audio, "audio"))
    for frame_id in ("bad-data", "no-sender", "bad-card", "unknown-topic", "mystery", "audio"):
        assert (await gateway.wait_ack(frame_id))["code"] == 200, frame_id
    logged = caplog.text
    assert "malformed frame (not JSON)" in logged
    assert "unknown frame type/topic" in logged and "/v1.0/im/unknown/topic" in logged
    assert "malformed robot message" in logged and "malformed card callback" in logged

    count = select(func.count()).select_from(InboxRow)
    assert await world.scalar(count) == 0  # nothing reached the service
    user = world.user("staff-after")
    await user.say("冷库温度报警，压缩机不启动")
    await user.wait_message(lambda m: CREATED in m.text)
    assert gateway.connections == 1  # one connection survived all of it


async def test_card_action_from_someone_else_is_refused_and_audited(world: World):
    owner = world.user("staff-owner")
    await owner.say("电梯门关不上")
    number = number_in((await owner.wait_message(lambda m: CREATED in m.text)).text)
    await owner.say(f"工单 {number}")
    await owner.wait_message(lambda m: number in m.title)
    owner_person = await world.person_of("staff-owner")
    assert owner_person is not None
    (card,) = await world.rows(select(CardRow).where(CardRow.ticket_number == number,
                                                     CardRow.recipient_id == owner_person.id))
    before = await world.ticket(number)

    intruder = world.user("staff-intruder")
    # Typed (or forwarded) button text naming someone else's card ...
    await intruder.say(command_text("确认", card.id, "confirm"))
    refusal = await intruder.wait_message(lambda m: "不是发给您的" in m.text)
    # ... and a card-platform callback for it (template mode) are both refused.
    callback = card_callback(out_track_id=card.id, user_id="staff-intruder", params={"action": "x"}, action_ids=["x"])
    await world.gateway.push(callback_frame(TOPIC_CARD, callback, "intruder-callback"))
    await world.gateway.wait_ack("intruder-callback")
    await intruder.wait_message(lambda m: "不是发给您的" in m.text, after=intruder.received().index(refusal) + 1)

    refused = await world.rows(select(AuditEventRow).where(AuditEventRow.kind == "card_action_refused"))
    assert len(refused) == 2
    assert {r.payload["card_id"] for r in refused} == {card.id}
    intruder_person = await world.person_of("staff-intruder")
    assert intruder_person is not None and {r.actor_id for r in refused} == {intruder_person.id}
    (after_card,) = await world.rows(select(CardRow).where(CardRow.id == card.id))
    assert after_card.state == "open"
    after = await world.ticket(number)
    assert (after.status, after.version) == (before.status, before.version)


async def test_disconnect_before_the_ack_redelivers_and_loses_nothing(world: World):
    gateway = world.gateway
    gateway.redeliver_unacked = True
    user = world.user("staff-flaky")
    frame_id = "frame-flaky-1"
    gateway.lose_acks.add(frame_id)  # the ack is lost with the connection: DingTalk redelivers the frame
    await user.say("注塑机液压油温过高报警", frame_id=frame_id)
    await gateway.wait_for(lambda: bool(gateway.lost_acks), timeout=10)
    second = await user.say("空调外机噪音很大")  # sent while the connection is down: queued by DingTalk
    await gateway.wait_connections(2, timeout=15)
    await gateway.wait_ack(frame_id, timeout=15)
    await gateway.wait_ack(second, timeout=15)
    await user.wait_message(lambda m: CREATED in m.text and "注塑机" not in m.text, timeout=10)
    await gateway.wait_for(lambda: sum(CREATED in m.text for m in user.received()) >= 2, timeout=10)
    await asyncio.sleep(0.5)
    descriptions = sorted(t.description for t in await world.tickets())
    assert descriptions == sorted(["注塑机液压油温过高报警", "空调外机噪音很大"])
    assert sum(CREATED in m.text for m in user.received()) == 2
    assert [a["headers"]["messageId"] for a in gateway.lost_acks] == [frame_id]
    assert len(gateway.acks_for(frame_id)) == 1  # the redelivery's ack


async def test_server_asks_to_reconnect_and_the_flow_continues(world: World):
    await world.gateway.push(system_frame("disconnect", "bye"))
    await world.gateway.wait_connections(2, timeout=15)
    user = world.user("staff-after-bye")
    await user.say("包装机传动轴异响")
    await user.wait_message(lambda m: CREATED in m.text)


@pytest.mark.parametrize(
    ("status", "body"),
    [(503, None), (429, None), (400, {"code": "send.too.fast", "message": "slow down"})],
    ids=["503", "429", "400-throttled"],
)
async def test_api_errors_are_retried_later_by_the_outbox(world: World, status: int, body: dict[str, str] | None):
    world.gateway.fail(OTO, status, body=body)
    user = world.user(f"staff-retry-{status}")
    await user.say("叉车刹车失灵")
    reply = await user.wait_message(lambda m: CREATED in m.text, timeout=15)  # maybe after the outbox's backoff
    assert number_in(reply.text)
    person = await world.person_of(user.staff_id)
    assert person is not None
    rows: list[OutboxRow] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # the failed one is sent again after its backoff (2 s)
        rows = await world.rows(select(OutboxRow).where(OutboxRow.recipient_id == person.id))
        if sum(r.attempts for r in rows) > len(rows) and all(r.status == "sent" for r in rows):
            break
        await asyncio.sleep(0.1)
    assert all(r.status == "sent" for r in rows), [(r.status, r.error) for r in rows]
    assert sorted(r.attempts for r in rows) == [1] * (len(rows) - 1) + [2]  # exactly one was retried
    assert len([c for c in world.gateway.calls(OTO) if c.body["userIds"] == [user.staff_id]]) == len(rows) + 1
    assert len(user.received()) == len(rows)  # nothing lost, nothing twice


async def test_revoked_token_is_refreshed_and_the_message_still_arrives(world: World):
    user = world.user("staff-token")
    await user.say("你好")
    await user.wait_message()
    world.gateway.revoke_tokens()
    await user.say("传送带跑偏")
    await user.wait_message(lambda m: CREATED in m.text)
    assert len(world.gateway.calls("/v1.0/oauth2/accessToken")) == 2


async def test_permanent_rejection_is_kept_as_dead_letter_with_the_reason(world: World):
    world.gateway.fail(OTO, 400, body={"code": "invalidParameter.userIds", "message": "user not in org"})
    user = world.user("staff-gone")
    await user.say("水泵漏水")
    deadline = time.monotonic() + 10
    rows: list[OutboxRow] = []
    while time.monotonic() < deadline:
        person = await world.person_of(user.staff_id)
        if person is not None:
            rows = await world.rows(select(OutboxRow).where(OutboxRow.recipient_id == person.id))
            if rows and all(r.status in {"sent", "dead"} for r in rows) and any(r.status == "dead" for r in rows):
                break
        await asyncio.sleep(0.1)
    # The one message DingTalk refused is a dead row with DingTalk's reason; the others arrived.
    (dead,) = [r for r in rows if r.status == "dead"]
    assert "invalidParameter.userIds" in (dead.error or "") and dead.attempts == 1
    assert all(r.status == "sent" for r in rows if r is not dead)
    assert len(user.received()) == len(rows) - 1
    assert len(await world.tickets()) == 1  # the ticket itself stands; only that message failed


# --- the service's event loop ---


async def test_app_loop_stays_responsive_and_sdk_blocking_calls_are_not_used(world: World):
    """Stream traffic is handled on the stream thread: frames that never reach the service (pings,
    ignored events, unknown topics, a reconnect) leave the application's loop idle. A blocking SDK
    call on this loop would stall it until the fake, served by this very loop, answered: a hang."""
    gateway = world.gateway
    # The service's own one-off costs first (jieba's dictionary is loaded in a thread at start and
    # holds the GIL while it unmarshals): one full round trip.
    await world.runtime.rulebook.warm()
    first = world.user("staff-warm-up")
    await first.say("0号线传送带异响")
    await first.wait_message(lambda m: CREATED in m.text)
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - start - 0.01)

    task = asyncio.create_task(ticker())
    try:
        for i in range(150):
            if i % 3 == 0:
                await gateway.push(system_frame("ping", f"ping-{i}"))
            elif i % 3 == 1:
                await gateway.push(event_frame("user_modify_org", {"userId": [f"u{i}"]}, f"ev-{i}", f"event-{i}"))
            else:
                await gateway.push(callback_frame("/v1.0/im/unknown/topic", {"i": i}, f"unknown-{i}"))
        await gateway.wait_for(lambda: len(gateway.acks) >= 150, timeout=15)
        await gateway.push(system_frame("disconnect", "reconnect-under-load"))
        await gateway.wait_connections(2, timeout=15)
    finally:
        task.cancel()
    user = world.user("staff-after-load")
    await user.say("3号线传送带异响")
    await user.wait_message(lambda m: CREATED in m.text)
    print(f"app loop lag during stream traffic: max {max(lags) * 1000:.0f} ms, "
          f"p50 {sorted(lags)[len(lags) // 2] * 1000:.1f} ms over {len(lags)} ticks")
    assert lags and max(lags) < 0.25, max(lags)
    (adapter,) = world.runtime.adapters
    assert adapter.stream._thread is not None and adapter.stream._thread.ident != threading.get_ident()
    # The SDK's own open_connection/get_access_token/reply_* use `requests`: none of them ran.
    agents = [h.get("User-Agent", "") for h in gateway.open_headers]
    agents += [r.headers.get("User-Agent", "") for r in gateway.requests]
    assert len(gateway.open_headers) == 2 and agents
    assert not [a for a in agents if "python-requests" in a], agents


def _delivered(world: World) -> list[RobotOut]:
    return [RobotOut.of(r) for r in world.gateway.delivered]


async def test_decline_button_with_reason_offers_the_next_technician(world: World):
    techs = {pid: await world.link(pid, f"staff-{pid}") for pid in TECHNICIANS}
    customer = world.user("staff-cust-decline")
    await customer.say("洗衣机脱水时异响")
    number = number_in((await customer.wait_message(lambda m: CREATED in m.text)).text)
    first = (await world.ticket(number)).assignee_id
    offer = await techs[first or ""].wait_message(lambda m: number in m.title and bool(m.buttons))
    # One 拒单 button per reason (the offer card's optional select goes with 拒单); 接单 stays plain.
    assert offer.buttons[0].label == "接单"
    assert [b.label for b in offer.buttons[1:]] == [
        "⚠ 距离太远 · 拒单", "⚠ 手头工单已满 · 拒单", "⚠ 技能/资质不符 · 拒单", "⚠ 其他原因 · 拒单"]
    seen = len(customer.received())
    await techs[first or ""].press(offer.button("手头工单已满"))
    await customer.wait_message(lambda m: "改派" in m.text and number in m.text, after=seen)
    moved = await world.ticket(number)
    assert moved.status is TicketStatus.DISPATCHED and moved.assignee_id not in {None, first}
    await techs[moved.assignee_id or ""].wait_message(lambda m: number in m.title and bool(m.buttons))
    declines = [e for e in await world.audit_kinds() if e == "offer_declined"]
    assert declines == ["offer_declined"]


# --- optional template mode ---


@pytest.fixture
async def template_world(database_url: str, tmp_path: Path, gateway: FakeDingTalkGateway) -> AsyncIterator[World]:
    app = build_app(dingtalk_settings(database_url, tmp_path, dingtalk_card_template_id="ticketbot-card.schema"))
    async with TestClient(TestServer(app)) as client:
        await gateway.wait_connections(1, timeout=15)
        yield World(client, gateway, runtime_of(client))


async def test_template_mode_offer_card_callback_accepts_and_updates_the_card_in_place(template_world: World):
    world, gateway = template_world, template_world.gateway
    techs = {pid: await world.link(pid, f"staff-{pid}") for pid in TECHNICIANS}
    customer = world.user("staff-cust-tpl")
    await customer.say("洗衣机脱水时异响")
    number = number_in((await customer.wait_message(lambda m: CREATED in m.text)).text)
    ticket = await world.ticket(number)
    tech = techs[ticket.assignee_id or ""]

    create_path = "/v1.0/card/instances/createAndDeliver"
    await gateway.wait_for(lambda: bool(gateway.calls(create_path)), timeout=10)
    (created,) = gateway.calls(create_path)
    params = created.body["cardData"]["cardParamMap"]
    assert created.body["cardTemplateId"] == "ticketbot-card.schema"
    assert created.body["openSpaceId"] == f"dtv1.card//IM_ROBOT.{tech.staff_id}"
    assert params["kind"] == "offer" and params["ticket_number"] == number
    assert [a["label"] for a in json.loads(params["actions"])] == ["接单", "拒单"]
    card_id = created.body["outTrackId"]

    # The technician presses 接单 on the card: a card callback on the stream.
    callback = card_callback(out_track_id=card_id, user_id=tech.staff_id, params={"action": "accept"},
                             action_ids=["accept"])
    await gateway.push(callback_frame(TOPIC_CARD, callback, "tpl-accept"))
    assert (await gateway.wait_ack("tpl-accept"))["code"] == 200
    await gateway.wait_for(lambda: bool(gateway.calls("/v1.0/card/instances")), timeout=10)
    (update,) = gateway.calls("/v1.0/card/instances")
    assert update.method == "PUT" and update.body["outTrackId"] == card_id
    updated = update.body["cardData"]["cardParamMap"]
    assert updated["closed"] == "true" and updated["closed_note"] and json.loads(updated["actions"]) == []
    assert (await world.ticket(number)).status is TicketStatus.ACCEPTED
