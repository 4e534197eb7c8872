"""Photo downloads stop at the cap on all three platforms (issue 19, item 9).

The fake platforms stream a 64 MB body (with a Content-Length, and chunked without one); the download
must give up at 5 MB with MediaTooLarge (a message for the sender) and hang up, so the fake never gets
to write most of it. End to end over WeCom, the person who sent the photo is told why it was not taken.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.dingtalk import DingTalkConfig, DingTalkSender
from adapters.feishu import FeishuConfig, create_feishu_adapter
from adapters.media import MAX_MEDIA_BYTES, MediaTooLarge
from adapters.wecom import WeComConfig
from adapters.wecom.sender import WeComSender
from core.errors import InvalidInput
from core.inbound import InboundMessage
from core.ports import ChannelSender
from tests.fakes.dingtalk_gateway import FakeDingTalkGateway
from tests.fakes.feishu_server import APP_ID, APP_SECRET, FakeFeishu
from tests.fakes.huge_body import HugeBody
from tests.fakes.wecom_server import SAMPLE_AES_KEY, FakeWeCom

SIZE = 64 * 1024 * 1024


class MemoryTokens:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.values.get(key)

    async def set(self, key: str, value: str, ttl_s: float) -> None:
        self.values[key] = value

    async def delete(self, key: str) -> None:
        self.values.pop(key, None)


class NoInbox:
    async def accept(self, message: InboundMessage) -> bool:
        raise AssertionError("not used")


async def _wecom(huge: dict[str, HugeBody], small: dict[str, bytes]) -> AsyncIterator[ChannelSender]:
    fake = FakeWeCom()
    await fake.start()
    fake.huge_media.update(huge)
    fake.media.update({key: (data, "image/jpeg") for key, data in small.items()})
    config = WeComConfig(corp_id=fake.corp_id, agent_id=str(fake.agent_id), secret=fake.secret, token="tok",
                         encoding_aes_key=SAMPLE_AES_KEY, api_base=fake.base_url)
    sender = WeComSender(config, MemoryTokens())
    try:
        yield sender
    finally:
        await sender.close()
        await fake.close()


async def _feishu(huge: dict[str, HugeBody], small: dict[str, bytes]) -> AsyncIterator[ChannelSender]:
    fake = FakeFeishu()
    await fake.start()
    fake.huge_images.update(huge)
    fake.images.update(small)
    adapter = create_feishu_adapter(FeishuConfig(APP_ID, APP_SECRET, encrypt_key="k", domain=fake.url), NoInbox(),
                                    MemoryTokens())
    try:
        yield adapter.sender
    finally:
        await adapter.stop()
        await fake.close()


async def _dingtalk(huge: dict[str, HugeBody], small: dict[str, bytes]) -> AsyncIterator[ChannelSender]:
    fake = FakeDingTalkGateway()
    endpoint = await fake.start()
    fake.huge_files.update(huge)
    fake.files.update(small)
    sender = DingTalkSender(DingTalkConfig(client_id="ding-app", client_secret="s3cret", openapi_endpoint=endpoint),
                            MemoryTokens())
    try:
        yield sender
    finally:
        await sender.close()
        await fake.close()


PLATFORMS = {"wecom": (_wecom, "MEDIA_1"), "feishu": (_feishu, "om_1:img_1"), "dingtalk": (_dingtalk, "dl-1")}


def _key(media_ref: str) -> str:
    return media_ref.rpartition(":")[2]


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "chunked"])
async def test_oversized_download_stops_at_the_cap(platform: str, declare_length: bool) -> None:
    make, media_ref = PLATFORMS[platform]
    huge = HugeBody(size=SIZE, declare_length=declare_length)
    async for sender in make({_key(media_ref): huge}, {}):
        with pytest.raises(MediaTooLarge) as raised:
            await asyncio.wait_for(sender.fetch_media(media_ref), 10)
        assert isinstance(raised.value, InvalidInput) and "5 MB" in raised.value.user_message
        await asyncio.wait_for(huge.done.wait(), 10)  # the fake noticed the hang-up
    assert not huge.finished
    # Loopback socket buffers take a few MB more than what was read; never the 64 MB.
    assert huge.written < SIZE // 4, huge.written


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_photo_at_the_cap_is_downloaded_whole(platform: str) -> None:
    make, media_ref = PLATFORMS[platform]
    photo = b"\xff\xd8\xff\xe0" + bytes(MAX_MEDIA_BYTES - 4)
    async for sender in make({}, {_key(media_ref): photo}):
        assert await sender.fetch_media(media_ref) == photo


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "chunked"])
async def test_one_byte_over_the_cap_is_refused(declare_length: bool) -> None:
    huge = HugeBody(size=MAX_MEDIA_BYTES + 1, declare_length=declare_length)
    async for sender in _wecom({"MEDIA_1": huge}, {}):
        with pytest.raises(MediaTooLarge):
            await sender.fetch_media("MEDIA_1")


async def test_the_sender_of_an_oversized_photo_is_told_why(sqlite_url: str, tmp_path: Path) -> None:
    from tests.test_e2e_wecom import eventually, start_world

    fake = FakeWeCom()
    fake.users.add("kehu-li")
    await fake.start()
    world, client = await start_world(sqlite_url, tmp_path, fake)
    try:
        customer = world.member("kehu-li")
        huge = HugeBody(size=SIZE, declare_length=False)
        fake.huge_media["MEDIA_HUGE"] = huge
        from tests.fakes.wecom_server import image_xml

        answer = await customer.post(image_xml("kehu-li", "MEDIA_HUGE", msg_id=424242, created=customer._now()))
        assert answer.status == 200  # stored in the inbox and acknowledged at once
        texts = await eventually(lambda: [t for t in customer.texts() if "图片太大" in t], what="the answer")
        assert "5 MB" in texts[0]
        await asyncio.wait_for(huge.done.wait(), 10)
        assert not huge.finished and huge.written < SIZE // 4
    finally:
        await client.close()
        await fake.close()
