"""The traceability sample ZIP (bot/console/traceability.py): tickets closed through the real flow (report,
dispatch, check-in with a photo, work photos, 完工, the customer's signature), then drawn and zipped."""

from __future__ import annotations

import base64
import csv
import io
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image, ImageDraw
from sqlalchemy import select
from sqlmodel import col

from bot.photo_store import PhotoStore
from bot.signature_store import SignatureStore
from bot.web.app import build_app
from core.model import TicketStatus
from storage.tables import AuditEventRow, TicketRow
from tests.conftest import make_settings, runtime_of
from tests.console_support import sign_in
from tests.test_lifecycle_support import Person, in_progress, report, ticket

GOOD = {"cause_told": "true", "parts_confirmed": "true", "rating": "5"}


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    """The real app on SQLite, then PostgreSQL."""
    async with TestClient(TestServer(build_app(make_settings(database_url, tmp_path)))) as test_client:
        yield test_client


def handwriting() -> str:
    image = Image.new("RGBA", (400, 200), (255, 255, 255, 0))
    ImageDraw.Draw(image).line([(20, 150), (120, 40), (220, 160), (380, 30)], fill=(0, 0, 0, 255), width=6)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


async def closed(client: TestClient, customer: str, *, photos: int, with_image: bool = False) -> str:
    number = await in_progress(client, customer, "tech-wang", photos=photos)
    await Person(client, "tech-wang").say(f"完工 {number}")
    card = await Person(client, customer).last_card("signoff")
    values = dict(GOOD)
    if with_image:  # what the sign-off page submits: the same card plus the stored image's hash
        stored = await SignatureStore(runtime_of(client).settings.data_dir).store(
            handwriting(), number=number, signed_at=runtime_of(client).clock.now())
        values["signature_sha256"] = stored.sha256
    await Person(client, customer).press(card["id"], "sign", values)
    assert (await ticket(client, number)).status == TicketStatus.CLOSED
    return number


async def get_zip(client: TestClient, query: dict[str, str] | None = None) -> zipfile.ZipFile:
    resp = await client.get("/console/traceability.zip", params=query or {})
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "application/zip"
    assert "Content-Length" not in resp.headers  # streamed as it is written
    return zipfile.ZipFile(io.BytesIO(await resp.read()))


def summary(archive: zipfile.ZipFile) -> dict[str, dict[str, str]]:
    text = archive.read("summary.csv").decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    return {row["工单号"]: row for row in rows}


async def test_the_zip_holds_each_tickets_trail_photos_and_signature(client: TestClient) -> None:
    complete = await closed(client, "cust-trace-a", photos=3, with_image=True)
    short = "GD-20250101-0001"  # imported from the old system: closed, no trail, no photos
    runtime = runtime_of(client)
    async with runtime.sessions() as session:
        session.add(TicketRow(number=short, customer_id="cust-old", description="旧系统工单", status="closed",
                              created_at=runtime.clock.now(), updated_at=runtime.clock.now(),
                              closed_at=runtime.clock.now()))
        await session.commit()
    still_open = await report(client, "cust-trace-c", "刹车片磨损严重")
    await sign_in(client, runtime, "qa-sun")
    archive = await get_zip(client)
    names = archive.namelist()
    assert names[0] == "README.txt" and names[-1] == "summary.csv"
    assert not any(name.startswith(still_open) for name in names)  # only closed tickets are drawn
    table = summary(archive)
    assert set(table) == {complete, short}
    row = table[complete]
    assert row["检修照片数（不重复）"] == "3"
    assert (row["可追溯（全部满足）"], row["技师照片数"], row["已告知故障原因"], row["配件更换已确认"], row["评分"],
            row["签名图片"], row["技师"]) == ("是", "4", "是", "是", "5", "有", "技师 王师傅")
    assert row["技师签到时间"] and row["客户签字时间"]
    assert (table[short]["可追溯（全部满足）"], table[short]["技师照片数"], table[short]["客户签字时间"],
            table[short]["已告知故障原因"], table[short]["签名图片"]) == ("否", "0", "", "否", "无")
    assert json.loads(archive.read(f"{short}/ticket.json"))["trail"] == []

    photos = sorted(n for n in names if n.startswith(f"{complete}/photos/"))
    assert len(photos) == 4 and all(n.endswith(".png") and "技师王师傅" in n for n in photos)
    assert "签到" in photos[0] and all("检修" in n for n in photos[1:])
    store = PhotoStore(runtime.settings.data_dir)
    document = json.loads(archive.read(f"{complete}/ticket.json"))
    assert document["checks"]["complete"] is True and document["checks"]["both_confirmed"] is True
    for entry, name in zip(document["photos"], photos, strict=True):
        assert archive.read(name) == store.path_of(entry["sha256"]).read_bytes()
        assert entry["uploader_id"] == "tech-wang" and entry["at"]
    signed = (await ticket(client, complete)).data["signoff"]["signed"]
    assert archive.read(f"{complete}/signature.png") == SignatureStore(runtime.settings.data_dir).path_of(
        signed["signature_image"]).read_bytes()
    trail = list(csv.reader(io.StringIO(archive.read(f"{complete}/trail.csv").decode("utf-8-sig"))))
    assert trail[0] == ["时间", "操作人", "角色", "事件", "详情", "事件代码"]
    events = {r[5]: r for r in trail[1:]}
    assert events["signed_off"][3] == "客户签字" and events["signed_off"][2] == "客户"
    assert "已告知故障原因：已勾选" in events["signed_off"][4] and "配件更换已确认：已勾选" in events["signed_off"][4]
    uploads = [r for r in trail[1:] if r[5] == "photo_added"]
    assert len(uploads) == 4 and {r[1] for r in uploads} == {"技师 王师傅"} and uploads[0][2] == "技师"
    readme = archive.read("README.txt").decode("utf-8")
    assert "质量改进组 孙悦" in readme and "seed=" in readme


async def test_the_draw_is_random_reproducible_with_a_seed_and_audited(client: TestClient) -> None:
    drawn = {await closed(client, f"cust-seed-{i}", photos=3) for i in range(3)}
    runtime = runtime_of(client)
    await sign_in(client, runtime, "admin")
    first = set(summary(await get_zip(client, {"n": "2", "seed": "7"})))
    again = set(summary(await get_zip(client, {"n": "2", "seed": "7"})))
    assert first == again and len(first) == 2 and first <= drawn
    assert set(summary(await get_zip(client, {"n": "100"}))) == drawn  # fewer closed than asked: all of them
    async with runtime.sessions() as session:
        events = (await session.execute(select(AuditEventRow).where(col(AuditEventRow.kind) == "console_export")
                                        .order_by(col(AuditEventRow.seq)))).scalars().all()
    assert [e.payload["what"] for e in events] == ["traceability.zip"] * 3
    assert events[0].actor_id == "admin" and events[0].payload["seed"] == 7
    assert set(events[0].payload["tickets"]) == first
    assert isinstance(events[2].payload["seed"], int)  # a drawn seed is recorded: the sample can be drawn again


@pytest.mark.parametrize(("query", "field"), [({"n": "0"}, "n"), ({"n": "abc"}, "n"), ({"n": "1001"}, "n"),
                                              ({"seed": "-1"}, "seed"), ({"status": "triage"}, "status")])
async def test_nonsense_sample_parameters_answer_400(client: TestClient, query: dict[str, str], field: str) -> None:
    await sign_in(client, runtime_of(client), "admin")
    resp = await client.get("/console/traceability.zip", params=query)
    assert resp.status == 400 and resp.headers["X-Filter-Field"] == field and f"（{field}）" in await resp.text()


async def test_a_store_supervisor_draws_only_from_their_stores(client: TestClient) -> None:
    number = await closed(client, "cust-scope", photos=3)
    runtime = runtime_of(client)
    await sign_in(client, runtime, "sup-chen")  # S03; the ticket has no store or another one
    archive = await get_zip(client)
    assert summary(archive) == {} and not any(n.startswith(number) for n in archive.namelist())
    assert (await client.get("/console/traceability.zip", params={"store": "S01"})).status == 403


async def test_a_photo_missing_on_disk_is_reported_not_skipped(client: TestClient) -> None:
    number = await closed(client, "cust-missing", photos=3)
    runtime = runtime_of(client)
    async with runtime.uow() as uow:
        photos = await uow.list_photos(number)
    PhotoStore(runtime.settings.data_dir).path_of(photos[1].sha256).unlink()
    await sign_in(client, runtime, "admin")
    archive = await get_zip(client)
    row = summary(archive)[number]
    assert row["缺失文件"].startswith("02_") and row["技师照片数"] == "4"
    assert len([n for n in archive.namelist() if n.startswith(f"{number}/photos/")]) == 3
    document = json.loads(archive.read(f"{number}/ticket.json"))
    assert document["missing_files"] == [row["缺失文件"]] and document["photos"][1]["missing"] is True
