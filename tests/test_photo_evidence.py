"""Photo evidence is a decodable image of a plausible size, and a duplicate says it did not count
(issue 19, items 10 and 23)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from PIL import Image
from sqlalchemy import func, select

from bot.photo_store import MIN_SIDE_PX, PhotoStore
from core.errors import InvalidInput
from storage.tables import AuditEventRow, PhotoRow
from tests.conftest import runtime_of
from tests.test_lifecycle_support import Person, in_progress, jpeg, png


def image(kind: str, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format=kind)
    return buffer.getvalue()


FAKES = {
    "jpeg header + random bytes": b"\xff\xd8\xff\xe0" + os.urandom(4096),
    "png header + random bytes": b"\x89PNG\r\n\x1a\n" + os.urandom(4096),
    "a real jpeg cut in half": jpeg("cut")[: len(jpeg("cut")) // 2],
}


@pytest.mark.parametrize("data", [jpeg("a"), png("b"), image("GIF", (80, 64)), image("BMP", (64, 90)),
                                  image("WEBP", (128, 128))], ids=["jpeg", "png", "gif", "bmp", "webp"])
async def test_real_images_are_staged_with_their_dimensions(tmp_path: Path, data: bytes) -> None:
    store = PhotoStore(tmp_path)
    staged = await store.stage(data)
    with Image.open(io.BytesIO(data)) as opened:
        assert (staged.width, staged.height) == opened.size
    assert staged.width >= MIN_SIDE_PX and staged.height >= MIN_SIDE_PX
    await store.keep(staged)
    assert store.path_of(staged.sha256).read_bytes() == data


@pytest.mark.parametrize("data", list(FAKES.values()), ids=list(FAKES))
async def test_bytes_behind_an_image_header_are_not_a_photo(tmp_path: Path, data: bytes) -> None:
    store = PhotoStore(tmp_path)
    with pytest.raises(InvalidInput, match="无法识别") as refused:
        await store.stage(data)
    assert "没有计入" in refused.value.user_message
    assert not any((tmp_path / "photos").glob("*")) if (tmp_path / "photos").exists() else True


@pytest.mark.parametrize("size", [(16, 16), (640, 40), (1, 4000)])
async def test_a_thumbnail_sized_image_is_not_evidence(tmp_path: Path, size: tuple[int, int]) -> None:
    with pytest.raises(InvalidInput, match=f"{size[0]}×{size[1]}") as refused:
        await PhotoStore(tmp_path).stage(image("PNG", size))
    assert "没有计入" in refused.value.user_message and f"{MIN_SIDE_PX}×{MIN_SIDE_PX}" in refused.value.user_message


async def photo_rows(client: TestClient) -> int:
    async with runtime_of(client).sessions() as session:
        return int((await session.execute(select(func.count()).select_from(PhotoRow))).scalar_one())


async def test_three_fake_photos_do_not_let_a_technician_finish(app_client: TestClient) -> None:
    number = await in_progress(app_client, "cust-fake", "tech-wang")
    before = await photo_rows(app_client)
    tech = Person(app_client, "tech-wang")
    for _ in range(3):
        await tech.image(b"\xff\xd8\xff\xe0" + os.urandom(2048))
        answer = await tech.last_text()
        assert "无法识别" in answer and "没有计入" in answer
    assert await photo_rows(app_client) == before
    await tech.say(f"完工 {number}")
    assert "目前只有 0 张" in await tech.last_text()
    for tag in ("part", "meter", "plate"):
        await tech.image(jpeg(tag))
    await tech.say(f"完工 {number}")
    assert "已完工" in await tech.last_text()


async def test_the_core_records_the_dimensions_it_was_given(app_client: TestClient) -> None:
    number = await in_progress(app_client, "cust-dims", "tech-wang")
    tech = Person(app_client, "tech-wang")
    await tech.image(image("JPEG", (320, 240)))
    async with runtime_of(app_client).sessions() as session:
        events = (await session.execute(select(AuditEventRow).where(
            AuditEventRow.kind == "photo_added", AuditEventRow.ticket_number == number)
            .order_by(AuditEventRow.seq))).scalars().all()
    assert (events[-1].payload["width"], events[-1].payload["height"]) == (320, 240)


async def test_a_duplicate_photo_is_said_not_to_count(app_client: TestClient) -> None:
    number = await in_progress(app_client, "cust-dup", "tech-wang")
    tech = Person(app_client, "tech-wang")
    first = jpeg("same")
    await tech.image(first)
    assert f"工单 {number} 已收到检修照片 1/3" in await tech.last_text()
    await tech.image(first)
    answer = await tech.last_text()
    assert "重复" in answer and "没有计入" in answer and "1/3" in answer and "还需要 2 张" in answer
    assert "已收到检修照片" not in answer
    await tech.image(jpeg("other"))
    assert "已收到检修照片 2/3" in await tech.last_text()
