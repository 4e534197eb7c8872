"""The store report page /r/{store_code} without SMS: a report from a phone browser becomes a ticket
through the chat's ReportFault, with the page's store and the customer's photos; every kind of bad
input named in issue 21 is refused with a clear Chinese message and loses nothing else."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.web.app import build_app
from core.model import Role
from tests.conftest import make_settings, runtime_of
from tests.sms_support import STORE, add_stores, jpeg, report_form


async def _client(database_url: str, tmp_path: Path, **overrides: object) -> AsyncIterator[TestClient]:
    settings = make_settings(database_url, tmp_path, load_demo="off", **overrides)
    async with TestClient(TestServer(build_app(settings))) as client:
        await add_stores(runtime_of(client))
        yield client


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    async for c in _client(database_url, tmp_path):
        yield c


@pytest.fixture
async def sqlite_client(sqlite_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    async for c in _client(sqlite_url, tmp_path, report_page_limit_per_ip_hour=3, report_limit_per_sender=2):
        yield c


GOOD = {"phone": "138 0013 8000", "subject": "粤B12345", "description": "刹车时底盘有异响", "address": "",
        "lat": "31.2310", "lng": "121.5210", "website": "", "action": "submit"}


async def test_get_form_is_chinese_and_light(client: TestClient) -> None:
    response = await client.get("/r/S01")
    body = await response.text()
    assert response.status == 200
    assert "故障报修" in body and "浦东一店" in body and 'name="website"' in body
    assert 'enctype="multipart/form-data"' in body and "获取验证码" not in body  # no SMS configured
    assert response.headers["Cache-Control"] == "no-store"
    assert len(body.encode()) < 150_000


async def test_report_creates_a_ticket_with_store_photos_and_location(client: TestClient) -> None:
    runtime = runtime_of(client)
    photos = [("a.jpg", jpeg()), ("b.jpg", jpeg(color=(1, 2, 3)))]
    response = await client.post("/r/S01", data=report_form(GOOD, photos))
    body = await response.text()
    assert response.status == 200, body
    number = re.search(r'id="ticket-number">([^<]+)<', body).group(1)  # type: ignore[union-attr]
    assert "已为您创建工单" in body and "已附上 2 张照片" in body
    async with runtime.uow() as uow:
        ticket = await uow.get_ticket(number)
        assert ticket is not None
        customer = await uow.get_person(ticket.customer_id)
        photos = await uow.list_photos(number)
        events = [e.kind for e in await uow.audit_for_ticket(number)]
    assert customer is not None and customer.role is Role.CUSTOMER and customer.phone == "13800138000"
    assert customer.preferred_channel == "local"  # no SMS configured
    assert ticket.store_id == STORE.code and ticket.subject == "粤B12345"
    assert (ticket.site_lat, ticket.site_lng) == (31.231, 121.521)
    assert ticket.description == "刹车时底盘有异响"
    assert [p.purpose for p in photos] == ["customer", "customer"]
    assert all((runtime.settings.data_dir / p.path).is_file() for p in photos)
    assert events.count("photo_added") == 2 and "ticket_created" in events


async def test_the_same_phone_is_the_same_customer_and_a_typed_address_is_kept(client: TestClient) -> None:
    runtime = runtime_of(client)
    first = await client.post("/r/S01", data=report_form({**GOOD, "lat": "", "lng": ""}))
    second = await client.post("/r/S01", data=report_form({**GOOD, "subject": "", "lat": "", "lng": "",
                                                          "description": "空调不制冷", "address": "世纪大道 8 号 3 楼",
                                                          "new_problem": "1"}))
    numbers = [re.search(r'id="ticket-number">([^<]+)<', await r.text()).group(1)  # type: ignore[union-attr]
               for r in (first, second)]
    async with runtime.uow() as uow:
        tickets = [await uow.get_ticket(n) for n in numbers]
    assert tickets[0] is not None and tickets[1] is not None
    assert tickets[0].customer_id == tickets[1].customer_id
    assert tickets[1].description.endswith("地址：世纪大道 8 号 3 楼")


async def test_a_repeat_is_a_follow_up_on_the_open_ticket(sqlite_client: TestClient) -> None:
    first = await sqlite_client.post("/r/S01", data=report_form(GOOD))
    again = await sqlite_client.post("/r/S01", data=report_form({**GOOD, "description": "刹车异响更严重了"}))
    number = re.search(r'id="ticket-number">([^<]+)<', await first.text()).group(1)  # type: ignore[union-attr]
    body = await again.text()
    assert again.status == 200 and f'id="ticket-number">{number}<' in body and "补充说明" in body


async def test_unknown_and_inactive_stores_are_404_in_chinese(client: TestClient) -> None:
    for path in ("/r/NOPE", "/r/S99"):
        response = await client.get(path)
        assert response.status == 404 and "找不到这家门店" in await response.text()
        posted = await client.post(path, data=report_form(GOOD))
        assert posted.status == 404
    async with runtime_of(client).uow() as uow:
        assert await uow.list_tickets() == []


async def test_honeypot_refuses_and_keeps_the_form(sqlite_client: TestClient) -> None:
    response = await sqlite_client.post("/r/S01", data=report_form({**GOOD, "website": "http://spam.example"}))
    body = await response.text()
    assert response.status == 400 and "应留空的隐藏项" in body
    assert "刹车时底盘有异响" in body and "13800138000" in body.replace(" ", "")  # nothing lost
    assert "http://spam.example" not in body
    async with runtime_of(sqlite_client).uow() as uow:
        assert await uow.list_tickets() == []


async def test_per_ip_limit(sqlite_client: TestClient) -> None:
    statuses = []
    for i in range(4):
        response = await sqlite_client.post("/r/S01", data=report_form(
            {**GOOD, "phone": f"1390000000{i}", "description": f"第{i}个故障：发动机异响"}))
        statuses.append(response.status)
        body = await response.text()
    assert statuses == [200, 200, 200, 429]
    assert "该网络提交的报修过多" in body and "第3个故障" in body  # refused, the form kept
    async with runtime_of(sqlite_client).uow() as uow:
        assert len(await uow.list_tickets()) == 3


async def test_per_phone_limit_is_the_intake_limit(sqlite_client: TestClient) -> None:
    texts = ["发动机异响", "空调不制冷", "车窗无法升降"]
    statuses = []
    for text in texts:
        response = await sqlite_client.post("/r/S01", data=report_form(
            {**GOOD, "subject": "", "description": text, "new_problem": "1"}))
        statuses.append(response.status)
    body = await response.text()
    assert statuses == [200, 200, 429] and "暂未建单" in body
    async with runtime_of(sqlite_client).uow() as uow:
        assert len(await uow.list_tickets()) == 2


async def test_oversized_and_non_image_photos_are_named_and_nothing_else_is_lost(sqlite_client: TestClient) -> None:
    runtime = runtime_of(sqlite_client)
    big = b"\xff\xd8\xff" + b"0" * (runtime.settings.report_page_max_photo_bytes + 10)
    response = await sqlite_client.post("/r/S01", data=report_form(GOOD, [
        ("good.jpg", jpeg()), ("huge.jpg", big), ("notes.jpg", b"%PDF-1.4 not an image")]))
    body = await response.text()
    assert response.status == 400
    assert "照片「huge.jpg」太大" in body and "照片「notes.jpg」未保存" in body and "不是可识别的图片" in body
    assert "刹车时底盘有异响" in body and "粤B12345" in body  # the typed fields are back
    tokens = re.findall(r'name="kept" value="([^"]+)"', body)
    assert len(tokens) == 1 and "已保存 1 张照片" in body  # the good photo is kept, not lost
    async with runtime.uow() as uow:
        assert await uow.list_tickets() == []
    # Sent again with the kept photo (file inputs cannot be refilled): the ticket has it.
    again = await sqlite_client.post("/r/S01", data=report_form(GOOD, kept=tokens))
    assert again.status == 200 and "已附上 1 张照片" in await again.text()


async def test_malformed_multipart_is_a_clear_400(sqlite_client: TestClient) -> None:
    broken = (b"--XYZ\r\nContent-Disposition: form-data; name=\"phone\"\r\n\r\n13800138000\r\n"
              b"--XYZ\r\nContent-Disposition: form-data; name=\"description\"\r\n\r\n\xe6\x95\x85")  # cut off
    response = await sqlite_client.post("/r/S01", data=broken,
                                        headers={"Content-Type": "multipart/form-data; boundary=XYZ"})
    assert response.status == 400 and "表单数据不完整" in await response.text()
    no_boundary = await sqlite_client.post("/r/S01", data=b"x", headers={"Content-Type": "multipart/form-data"})
    assert no_boundary.status == 400
    wrong_type = await sqlite_client.post("/r/S01", data=b"{}", headers={"Content-Type": "application/json"})
    assert wrong_type.status == 415 and "表单格式不正确" in await wrong_type.text()


async def test_missing_fields_and_bad_location_are_named(sqlite_client: TestClient) -> None:
    response = await sqlite_client.post("/r/S01", data=report_form(
        {**GOOD, "phone": "12345", "description": "", "lat": "999", "lng": "abc"}))
    body = await response.text()
    assert response.status == 400
    assert "正确的 11 位手机号" in body and "请描述一下故障情况" in body and "位置信息" in body
    assert "粤B12345" in body


async def test_a_form_without_photos_posted_urlencoded_works(sqlite_client: TestClient) -> None:
    response = await sqlite_client.post("/r/S01", data={**GOOD})
    assert response.status == 200 and "已为您创建工单" in await response.text()


async def test_lookup_reveals_nothing_without_a_confirmed_phone(sqlite_client: TestClient) -> None:
    response = await sqlite_client.get("/r/S01/lookup", params={"phone": "13800138000"})
    assert response.status == 200 and (await response.json()) == {"subjects": []}
    assert (await sqlite_client.get("/r/NOPE/lookup", params={"phone": "13800138000"})).status == 404


async def test_too_many_photos_and_a_body_over_the_cap(sqlite_url: str, tmp_path: Path) -> None:
    async for client in _client(sqlite_url, tmp_path, report_page_max_photo_bytes=64 * 1024):
        photos = [(f"p{i}.jpg", jpeg(color=(i * 30, 10, 10))) for i in range(7)]
        response = await client.post("/r/S01", data=report_form(GOOD, photos))
        body = await response.text()
        assert response.status == 400 and "照片「p6.jpg」未保存：最多 6 张照片" in body and "已保存 6 张照片" in body
        tokens = re.findall(r'name="kept" value="([^"]+)"', body)
        again = await client.post("/r/S01", data=report_form(GOOD, kept=tokens))
        assert again.status == 200 and "已附上 6 张照片" in await again.text()
        video = b"\xff\xd8\xff" + b"0" * 2_000_000
        huge = await client.post("/r/S01", data=report_form({**GOOD, "new_problem": "1"}, [("video.jpg", video)]))
        assert huge.status == 413 and "提交的内容过大" in await huge.text()
