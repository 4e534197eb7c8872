"""The "sms" delivery channel: outbox rows for customers reached by SMS go out as the notice template
(number, status, tracking link) through the provider's SDK, one SMS per state change, within the
per-phone hourly limit, and every outcome is in the ticket's trail. And the fallback other channels use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.runtime import Runtime
from bot.sms.fallback import queue_sms_instead
from core.cards import Notification
from core.clock import FixedClock
from core.commands import CancelTicket
from core.model import Person, Role
from core.ports import OutboundDelivery
from storage.tables import IdentityRow, OutboxRow
from tests.conftest import make_settings
from tests.fakes.sms_provider import FakeSmsProvider, SentSms
from tests.sms_support import sms_customer, sms_runtime, sms_settings

PHONE = "13800138000"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 12, 7, 2, 0, tzinfo=UTC))  # 10:00 in Shanghai, a Monday


@pytest.fixture(params=["aliyun", "tencent"])
async def runtime(request: pytest.FixtureRequest, database_url: str, tmp_path: Path, sms_fake: FakeSmsProvider,
                  clock: FixedClock) -> AsyncIterator[Runtime]:
    async with sms_runtime(sms_settings(database_url, tmp_path, sms_fake, request.param, sms_limit_per_phone_hour=2,
                                        public_base_url="https://gd.example.com"), clock) as rt:
        yield rt


async def outbox(runtime: Runtime) -> list[OutboxRow]:
    async with runtime.sessions() as session:
        return list((await session.execute(select(OutboxRow).where(OutboxRow.channel == "sms")
                                           .order_by(OutboxRow.id))).scalars())


async def trail(runtime: Runtime, number: str) -> list[tuple[str, dict[str, object]]]:
    async with runtime.uow() as uow:
        return [(e.kind, e.payload) for e in await uow.audit_for_ticket(number) if e.kind.startswith("sms_")]


def notice(sms_fake: FakeSmsProvider, sent: SentSms | None = None) -> dict[str, str]:
    """The variables of an SMS (default: the last one), whichever provider sent it."""
    sent = sent or sms_fake.sent[-1]
    if isinstance(sent.params, dict):
        return sent.params
    return dict(zip(("number", "status", "link"), sent.params, strict=True))


async def test_a_notice_goes_out_as_the_template_and_is_in_the_trail(runtime: Runtime,
                                                                     sms_fake: FakeSmsProvider) -> None:
    _person, number = await sms_customer(runtime, PHONE)
    rows = await outbox(runtime)
    assert rows and all(r.status == "pending" for r in rows)  # an outbox row like any chat message
    await runtime.dispatcher.run_once()
    assert len(sms_fake.texts_to(PHONE)) == 1  # the burst of the report: one SMS with the status now
    params = notice(sms_fake)
    async with runtime.uow() as uow:
        ticket = await uow.get_ticket(number)
    assert ticket is not None
    assert params["number"] == number and params["status"] == ticket.status.label
    assert params["link"].startswith("https://gd.example.com")
    assert sms_fake.sent[-1].template in {"SMS_100002", "100002"}
    rows = await outbox(runtime)
    assert {r.status for r in rows} == {"sent"}
    folded = ["folded"] * (len(rows) - 1)
    assert sorted(r.external_id or "" for r in rows) == sorted([sms_fake.sent[-1].message_id, *folded])
    kinds = await trail(runtime, number)
    [sent] = [payload for kind, payload in kinds if kind == "sms_sent"]
    assert sent["phone"] == "138****8000" and sent["message_id"] == sms_fake.sent[-1].message_id
    assert {kind for kind, _ in kinds} <= {"sms_sent", "sms_folded"}  # the rest of the burst folded
    assert PHONE not in str(kinds)  # the trail keeps the phone masked


async def test_one_sms_per_state_change(runtime: Runtime, sms_fake: FakeSmsProvider) -> None:
    person, number = await sms_customer(runtime, PHONE)
    await runtime.dispatcher.run_once()
    await runtime.service.handle(CancelTicket(number, "已自行修好"), person)
    await runtime.dispatcher.run_once()
    texts = sms_fake.texts_to(PHONE)
    assert len(texts) == 2 and notice(sms_fake)["status"] == "已取消"
    assert [kind for kind, _ in await trail(runtime, number)].count("sms_sent") == 2


async def test_a_notice_already_told_is_folded(runtime: Runtime, sms_fake: FakeSmsProvider) -> None:
    person, number = await sms_customer(runtime, PHONE)
    await runtime.dispatcher.run_once()
    assert await queue_sms_instead(runtime, OutboundDelivery(0, "wecom_kf", "x", Notification(
        person.id, text="补充消息", ticket_number=number)))
    await runtime.dispatcher.run_once()
    assert len(sms_fake.texts_to(PHONE)) == 1
    assert [k for k, _ in await trail(runtime, number)][-1] == "sms_folded"
    assert (await outbox(runtime))[-1].external_id == "folded"


async def test_the_per_phone_limit_defers(runtime: Runtime, sms_fake: FakeSmsProvider, clock: FixedClock) -> None:
    person, number = await sms_customer(runtime, PHONE)
    await runtime.dispatcher.run_once()
    await runtime.service.handle(CancelTicket(number, "已自行修好"), person)
    await runtime.dispatcher.run_once()
    _, second = await sms_customer(runtime, PHONE, "空调不制冷")  # a new ticket: a third SMS in the hour
    await runtime.dispatcher.run_once()
    assert len(sms_fake.texts_to(PHONE)) == 2  # the limit is 2 an hour
    waiting = [r for r in await outbox(runtime) if r.status == "pending"]
    assert waiting and "per-phone SMS limit" in (waiting[0].error or "")
    assert {k for k, _ in await trail(runtime, second)} == {"sms_deferred"}  # each waiting row, once
    clock.advance(timedelta(hours=1, minutes=1))
    await runtime.dispatcher.run_once()
    assert len(sms_fake.texts_to(PHONE)) == 3 and notice(sms_fake)["number"] == second


async def test_provider_throttling_retries_and_a_bad_template_is_dead(runtime: Runtime,
                                                                      sms_fake: FakeSmsProvider) -> None:
    _person, number = await sms_customer(runtime, PHONE)
    sms_fake.throttle_next = len(await outbox(runtime))  # the provider refuses the whole burst
    await runtime.dispatcher.run_once()
    rows = await outbox(runtime)
    assert sms_fake.sent == [] and {(r.status, r.attempts) for r in rows} == {("pending", 1)}
    sms_fake.templates.clear()
    runtime.clock.advance(timedelta(minutes=5))  # type: ignore[attr-defined]
    await runtime.dispatcher.run_once()
    rows = await outbox(runtime)
    assert {r.status for r in rows} == {"dead"} and "TEMPLATE" in (rows[0].error or "").upper()
    assert "sms_failed" in [k for k, _ in await trail(runtime, number)]


async def test_the_link_is_the_one_on_the_notification(runtime: Runtime, sms_fake: FakeSmsProvider) -> None:
    await sms_customer(runtime, PHONE)
    for row in await outbox(runtime):  # what core/tracking adds to every customer notice
        async with runtime.sessions() as session, session.begin():
            stored = await session.get(OutboxRow, row.id)
            assert stored is not None
            stored.payload = {**stored.payload, "extra": {"tracking_url": "https://gd.example.com/t/TOKEN123"}}
    await runtime.dispatcher.run_once()
    assert notice(sms_fake)["link"] == "https://gd.example.com/t/TOKEN123"


async def test_fallback_queues_for_a_person_with_a_mobile(runtime: Runtime, sms_fake: FakeSmsProvider) -> None:
    wechat = Person(id="c-kf-1", name="微信客户", role=Role.CUSTOMER, phone="139 0000 1111",
                    preferred_channel="local")
    _, number = await sms_customer(runtime, "13700000000")
    async with runtime.uow() as uow:
        await uow.add_person(wechat, {"wecom_kf": "wmXYZ"})
        await uow.add_person(Person(id="c-nophone", name="无手机", role=Role.CUSTOMER), {})
        await uow.commit()
    notification = Notification(wechat.id, text="技师已接单", ticket_number=number)
    assert await queue_sms_instead(runtime, OutboundDelivery(1, "wecom_kf", "wmXYZ", notification))
    assert not await queue_sms_instead(runtime, OutboundDelivery(2, "wecom_kf", "wm2", Notification(
        "c-nophone", text="x", ticket_number=number)))
    async with runtime.sessions() as session:
        identity = await session.get(IdentityRow, ("sms", "13900001111"))
    assert identity is not None and identity.person_id == wechat.id
    await runtime.dispatcher.run_once()
    # The customer's own notice may go out before or after it (the background dispatcher runs too).
    to_wechat_user = [sms for sms in sms_fake.sent if sms.phone.endswith("13900001111")]
    assert [notice(sms_fake, sms)["number"] for sms in to_wechat_user] == [number]


async def test_fallback_without_sms_is_false(sqlite_url: str, tmp_path: Path) -> None:
    async with sms_runtime(make_settings(sqlite_url, tmp_path, load_demo="off")) as rt:
        assert not await queue_sms_instead(rt, OutboundDelivery(1, "wecom_kf", "x", Notification("c-1", text="x")))
