"""Bad input in the lifecycle: clear replies, nothing changed."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from core.commands import AddPhoto, Transition
from core.errors import IllegalTransition, NotAllowed
from core.lifecycle.work import StartWork
from core.model import TicketStatus
from storage.tables import PhotoRow
from tests.conftest import runtime_of
from tests.test_lifecycle_support import Person, accept, in_progress, png, report, snapshot, ticket

S = TicketStatus


async def photo_rows(client: TestClient) -> int:
    async with runtime_of(client).sessions() as session:
        return int((await session.execute(select(func.count()).select_from(PhotoRow))).scalar_one())


def stored_files(client: TestClient) -> list[str]:
    folder = runtime_of(client).settings.data_dir / "photos"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def test_photos_from_someone_not_assigned_are_refused(app_client: TestClient) -> None:
    number = await in_progress(app_client, "cust-photo-x", "tech-wang")
    before, rows, files = await snapshot(app_client, number), await photo_rows(app_client), stored_files(app_client)
    other = Person(app_client, "tech-zhang")
    await other.image()
    assert "没有进行中的工单" in await other.last_text()
    keeper = Person(app_client, "wh-zhao")
    await keeper.image()
    assert "只有负责该工单的技师" in await keeper.last_text()
    runtime = runtime_of(app_client)
    async with runtime.uow() as uow:
        zhang = await uow.get_person("tech-zhang")
    with pytest.raises(NotAllowed, match="不是派给您的"):
        await runtime.service.handle(AddPhoto("a" * 64, "photos/x", 3, number), zhang)  # type: ignore[arg-type]
    assert await snapshot(app_client, number) == before
    assert await photo_rows(app_client) == rows and stored_files(app_client) == files


async def test_non_images_are_refused(app_client: TestClient) -> None:
    number = await in_progress(app_client, "cust-photo-bad", "tech-wang")
    before, rows = await snapshot(app_client, number), await photo_rows(app_client)
    tech = Person(app_client, "tech-wang")
    await tech.image(b"MZ\x90\x00 not an image")
    assert "不是可识别的图片" in await tech.last_text()
    assert await snapshot(app_client, number) == before and await photo_rows(app_client) == rows
    assert not [n for n in stored_files(app_client) if n.startswith(".incoming")]


async def test_the_same_photo_twice_counts_once(app_client: TestClient) -> None:
    number = await in_progress(app_client, "cust-photo-dup", "tech-wang")
    tech = Person(app_client, "tech-wang")
    for _ in range(3):
        await tech.image(png("same"))
    assert "1/3" in await tech.last_text()
    await tech.say("完工")
    assert "至少 3 张" in await tech.last_text()
    assert (await ticket(app_client, number)).status == S.IN_PROGRESS


async def test_transitions_out_of_order_are_refused(app_client: TestClient) -> None:
    number = await report(app_client, "cust-order")
    await accept(app_client, number, "tech-wang")
    tech = Person(app_client, "tech-wang")
    before = await snapshot(app_client, number)
    await tech.say("完工")
    assert "不能执行「完工」" in await tech.last_text()
    await tech.say("开始")
    assert "需要先签到" in await tech.last_text()
    await tech.say("备件到位")
    assert "不能执行「备件到位」" in await tech.last_text()
    await tech.say("方案 换个零件")
    assert "不能执行「提交方案」" in await tech.last_text()
    runtime = runtime_of(app_client)
    async with runtime.uow() as uow:
        wang = await uow.get_person("tech-wang")
    with pytest.raises(IllegalTransition):
        await runtime.service.handle(Transition(number, "start_work"), wang)  # type: ignore[arg-type]
    assert await snapshot(app_client, number) == before


async def test_check_in_needs_both_within_the_window(app_client: TestClient) -> None:
    number = await report(app_client, "cust-window")
    await accept(app_client, number, "tech-wang")
    tech = Person(app_client, "tech-wang")
    await tech.say("签到")
    assert "现场位置、一张现场照片" in await tech.last_text()
    await tech.location(31.2, 121.5)
    assert (await ticket(app_client, number)).status == S.ACCEPTED
    # Someone else's start is refused; the location alone is not enough.
    runtime = runtime_of(app_client)
    async with runtime.uow() as uow:
        zhang = await uow.get_person("tech-zhang")
    with pytest.raises(NotAllowed):
        await runtime.service.handle(StartWork(number), zhang)  # type: ignore[arg-type]
    async with runtime.uow() as uow:
        wang = await uow.get_person("tech-wang")
    with pytest.raises(Exception, match="签到需要一张现场照片"):
        await runtime.service.handle(Transition(number, "check_in"), wang)  # type: ignore[arg-type]
    assert (await ticket(app_client, number)).status == S.ACCEPTED


async def test_customer_commands_are_refused_for_technicians_and_vice_versa(app_client: TestClient) -> None:
    number = await in_progress(app_client, "cust-roles", "tech-wang")
    before = await snapshot(app_client, number)
    customer, tech = Person(app_client, "cust-roles"), Person(app_client, "tech-wang")
    await customer.say("完工")
    assert "只有技师可以使用" in await customer.last_text()
    await tech.say("仍未修好")
    assert "只有客户可以使用" in await tech.last_text()
    await customer.say(f"质检通过 {number}")
    assert "只有" in await customer.last_text()
    assert await snapshot(app_client, number) == before


async def test_customer_location_sets_the_site(app_client: TestClient) -> None:
    number = await report(app_client, "cust-site")
    customer = Person(app_client, "cust-site")
    await customer.location(30.2, 120.2)
    t = await ticket(app_client, number)
    assert (t.site_lat, t.site_lng) == (30.2, 120.2)
    assert "现场位置" in await customer.last_text()


async def test_typed_position_counts_as_a_shared_location(app_client: TestClient) -> None:
    number = await report(app_client, "cust-typed")
    customer = Person(app_client, "cust-typed")
    for bad in ("位置", "位置 北京", "位置 95,121"):
        await customer.say(bad)
        assert "用法" in await customer.last_text()
    assert (await ticket(app_client, number)).site_lat is None
    await customer.say("位置 30.25，120.15")
    t = await ticket(app_client, number)
    assert (t.site_lat, t.site_lng) == (30.25, 120.15)
