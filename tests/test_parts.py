"""Waiting for parts: warehouse to-do, the freeze, progress updates and 紧急缺件 after 48 h."""

from __future__ import annotations

from datetime import timedelta

from aiohttp.test_utils import TestClient

from core.clock import FixedClock
from core.model import TicketStatus
from tests.conftest import runtime_of
from tests.test_lifecycle_support import Person, clock_client, in_progress, snapshot, ticket  # noqa: F401

S = TicketStatus


async def test_everything_but_parts_ready_and_cancel_is_frozen(app_client: TestClient) -> None:
    number = await in_progress(app_client, "cust-frozen", "tech-wang", photos=3)
    tech = Person(app_client, "tech-wang")
    await tech.say("等待备件 刹车片 ×4")
    assert (await ticket(app_client, number)).status == S.WAITING_PARTS
    before = await snapshot(app_client, number)
    for text in ("完工", f"完工 {number}", "方案 换刹车盘", "开始", "签到", "等待备件 再来一个"):
        await tech.say(text)
        assert "等待备件，已冻结" in await tech.last_text(), text
    await tech.image()
    assert "已冻结" in await tech.last_text()
    assert await snapshot(app_client, number) == before
    # Parts ready is allowed (and so is cancel, below).
    await tech.say("备件到位")
    assert (await ticket(app_client, number)).status == S.IN_PROGRESS
    await tech.say("完工")
    assert (await ticket(app_client, number)).status == S.PENDING_SIGNOFF


async def test_parts_request_needs_a_description(app_client: TestClient) -> None:
    number = await in_progress(app_client, "cust-parts-empty", "tech-wang")
    tech = Person(app_client, "tech-wang")
    before = await snapshot(app_client, number)
    await tech.say("等待备件")
    assert "请写明配件" in await tech.last_text()
    assert await snapshot(app_client, number) == before


async def test_only_the_right_people_report_parts_ready(app_client: TestClient) -> None:
    number = await in_progress(app_client, "cust-parts-who", "tech-wang")
    await Person(app_client, "tech-wang").say("等待备件 继电器")
    before = await snapshot(app_client, number)
    stranger, other_tech = Person(app_client, "cust-parts-who"), Person(app_client, "tech-zhang")
    await stranger.say(f"备件到位 {number}")
    assert "只有" in await stranger.last_text()
    await other_tech.say(f"备件到位 {number}")
    assert "不是派给您的" in await other_tech.last_text()
    assert await snapshot(app_client, number) == before
    keeper = Person(app_client, "wh-zhao")
    await keeper.say("备件到位")  # the only ticket waiting: no number needed
    assert (await ticket(app_client, number)).status == S.IN_PROGRESS


async def test_48_hours_without_update_escalates_to_purchasing(
        clock_client: tuple[TestClient, FixedClock]) -> None:  # noqa: F811
    client, clock = clock_client
    runtime = runtime_of(client)
    number = await in_progress(client, "cust-shortage", "tech-wang")
    await Person(client, "tech-wang").say("等待备件 压缩机 B325")
    keeper, admin, boss = Person(client, "wh-zhao"), Person(client, "admin"), Person(client, "sup-li")

    clock.advance(timedelta(hours=30))
    await keeper.say(f"备件进度 {number} 已下单，预计周三到货")  # an update restarts the 48 h
    clock.advance(timedelta(hours=30))
    await runtime.timer_engine.fire_due()
    assert not [c for c in await admin.cards("task") if "紧急缺件" in c["title"]]

    clock.advance(timedelta(hours=19))
    await runtime.timer_engine.fire_due()
    for person in (admin, boss):
        urgent = [c for c in await person.cards("task") if "紧急缺件" in c["title"]]
        assert len(urgent) == 1 and urgent[0]["urgent"], person.user
    t = await ticket(client, number)
    assert t.data["parts"]["escalated"] is True and t.status == S.WAITING_PARTS

    # Parts arrive: the ticket thaws and no further escalation follows.
    await keeper.say(f"备件到位 {number}")
    assert (await ticket(client, number)).status == S.IN_PROGRESS


async def test_parts_ready_cancels_the_escalation(clock_client: tuple[TestClient, FixedClock]) -> None:  # noqa: F811
    client, clock = clock_client
    runtime = runtime_of(client)
    number = await in_progress(client, "cust-parts-quick", "tech-wang")
    await Person(client, "tech-wang").say("等待备件 火花塞")
    clock.advance(timedelta(hours=2))
    await Person(client, "wh-zhao").say(f"备件到位 {number}")
    clock.advance(timedelta(hours=60))
    await runtime.timer_engine.fire_due()
    assert not [c for c in await Person(client, "admin").cards("task") if "紧急缺件" in c["title"]]


async def test_a_frozen_ticket_can_still_be_cancelled(app_client: TestClient) -> None:
    from core.commands import Transition

    runtime = runtime_of(app_client)
    number = await in_progress(app_client, "cust-cancel-frozen", "tech-wang")
    await Person(app_client, "tech-wang").say("等待备件 电机")
    async with runtime.uow() as uow:  # after acceptance only staff may cancel (issue 19 item 28)
        supervisor = await uow.get_person("sup-li")
    await runtime.service.handle(Transition(number, "cancel"), supervisor)  # type: ignore[arg-type]
    assert (await ticket(app_client, number)).status == S.CANCELLED
