"""enter_session: a customer scanning a store's QR code (scene_param = store code) belongs to that
store, and the welcome_code is used once with kf/send_msg_on_event. Images (media/get with the kf
token) and locations reach the ticket; the kf adapter shares /wecom/callback with the WeCom app."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import update

from core.masterdata.model import StoreRecord
from storage.tables import TicketRow
from storage.tables_kf import KfCursorRow
from tests.fakes.wecom_kf_server import FakeWeComKf
from tests.fakes.wecom_server import WeComMember
from tests.wecom_kf_support import KfWorld, eventually, kf_fake, kf_world, start_kf_world  # noqa: F401 (fixtures)

STORE = StoreRecord("S07", "徐汇三店", "上海市徐汇区漕溪北路 88 号", 31.19, 121.43)


async def _add_store(world: KfWorld) -> None:
    async with world.runtime.uow() as uow:
        await uow.masterdata().upsert_store(STORE)
        await uow.commit()


async def test_entering_from_a_store_qr_code_binds_the_store_and_uses_the_welcome_code_once(
        kf_world: KfWorld) -> None:  # noqa: F811
    await _add_store(kf_world)
    xu = kf_world.customer("wmXU")
    code = await xu.enter(scene="S07", scene_param="S07")
    (welcome,) = await eventually(lambda: kf_world.fake.on_event_sent, what="the welcome")
    assert welcome["code"] == code and welcome["msgtype"] == "text"
    assert "底盘有异响" in welcome["text"]["content"]  # tells them how to report
    person = await kf_world.person_of(xu)
    assert person is not None and person.store_id == "S07" and person.preferred_channel == "wecom_kf"
    assert kf_world.fake.kf_sent == []  # the welcome cost nothing of the 5-message budget

    async with kf_world.runtime.sessions() as session:  # pulled again: no second use of the code
        await session.execute(update(KfCursorRow).values(cursor=""))
        await session.commit()
    await xu.notify()
    await kf_world.synced()
    await asyncio.sleep(0.3)
    assert len(kf_world.fake.on_event_sent) == 1 and kf_world.fake.refused == []

    await xu.say("空调不制冷")
    await eventually(lambda: [t for t in xu.texts() if "已为您创建工单" in t], what="the reply")
    assert await kf_world.count(TicketRow, TicketRow.store_id == "S07", TicketRow.customer_id == person.id) == 1


async def test_an_unknown_store_in_scene_param_is_logged_and_the_welcome_still_goes_out(
        kf_world: KfWorld) -> None:  # noqa: F811
    he = kf_world.customer("wmHEX")
    await he.enter(scene_param="NOPE")
    await eventually(lambda: kf_world.fake.on_event_sent, what="the welcome")
    person = await kf_world.person_of(he)
    assert person is not None and person.store_id is None


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 120, 200)).save(buffer, "JPEG")
    return buffer.getvalue()


async def test_a_photo_is_downloaded_with_the_kf_token_and_a_location_is_taken(kf_world: KfWorld) -> None:  # noqa: F811
    lin = kf_world.customer("wmLIN")
    await lin.say("底盘有异响")
    await eventually(lambda: [t for t in lin.texts() if "已为您创建工单" in t], what="the reply")
    await lin.send_image(_jpeg())
    downloads = await eventually(lambda: [r for r in kf_world.fake.requests if r.path.endswith("media/get")],
                                 what="the media download")
    assert downloads[0].query["access_token"].startswith("kftok-")
    await lin.send("location", {"latitude": 31.2, "longitude": 121.5, "name": "徐汇", "address": "漕溪北路"})
    await kf_world.synced()
    await asyncio.sleep(0.5)
    assert len(lin.texts()) >= 2  # the photo (and the location) were answered


@pytest.fixture
async def both_world(database_url: str, tmp_path: Path, kf_fake: FakeWeComKf) -> AsyncIterator[KfWorld]:  # noqa: F811
    world = await start_kf_world(database_url, tmp_path, kf_fake, with_app=True)
    try:
        yield world
    finally:
        await world.client.close()


async def test_with_the_wecom_app_configured_too_one_route_serves_both(both_world: KfWorld) -> None:
    member = WeComMember(both_world.client, both_world.fake, both_world.signer, "zhangsan",
                         clock=both_world.clock.timestamp)
    await member.say("底盘有异响")
    await eventually(lambda: [t for t in member.texts() if "已为您创建工单" in t], what="the member's reply")
    wang = both_world.customer("wmWANGB")
    await wang.say("中控黑屏")
    await eventually(lambda: [t for t in wang.texts() if "已为您创建工单" in t], what="the WeChat user's reply")
    assert both_world.fake.gettoken_calls == 1 and both_world.fake.kf_gettoken_calls == 1  # two tokens
