"""The store report page with SMS configured: the phone is confirmed by a code (two steps, each
working without JavaScript), the web customer is reached by SMS afterwards (the ticket's notices go out
as SMS with the tracking link), and a confirmed phone may prefill its plate/VIN/SN from master data."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.web.app import build_app
from core.masterdata.model import AssetRecord, CustomerRecord
from core.model import Person, Role
from storage.tables import IdentityRow
from storage.tables_sms import SmsCodeRow
from tests.conftest import runtime_of
from tests.fakes.sms_provider import FakeSmsProvider
from tests.sms_support import STORE, add_stores, jpeg, report_form, sms_settings

PHONE = "13800138000"
FORM = {"phone": PHONE, "subject": "", "description": "空调外机漏水", "address": "世纪大道 8 号", "lat": "",
        "lng": "", "website": ""}


@pytest.fixture(params=["aliyun", "tencent"])
async def client(request: pytest.FixtureRequest, database_url: str, tmp_path: Path,
                 sms_fake: FakeSmsProvider) -> AsyncIterator[TestClient]:
    settings = sms_settings(database_url, tmp_path, sms_fake, request.param, report_page_limit_per_ip_hour=3,
                            public_base_url="https://gd.example.com")
    async with TestClient(TestServer(build_app(settings))) as c:
        await add_stores(runtime_of(c))
        yield c


def code_in(sms_fake: FakeSmsProvider) -> str:
    params = sms_fake.sent[-1].params
    return str(params["code"] if isinstance(params, dict) else params[0])


async def wait_for(predicate: object, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_code_then_report_then_sms_notices(client: TestClient, sms_fake: FakeSmsProvider) -> None:
    runtime = runtime_of(client)
    page = await (await client.get("/r/S01")).text()
    assert "获取验证码" in page and 'name="code"' in page
    # Step 1: 获取验证码, with the form filled and a photo chosen (a browser submits it all).
    step1 = await client.post("/r/S01", data=report_form({**FORM, "action": "send_code"}, [("leak.jpg", jpeg())]))
    body = await step1.text()
    assert step1.status == 200 and "验证码已发送至 138****8000" in body
    assert "空调外机漏水" in body and "世纪大道 8 号" in body and "已保存 1 张照片" in body
    tokens = re.findall(r'name="kept" value="([^"]+)"', body)
    code = code_in(sms_fake)
    assert sms_fake.sent[-1].template in {"SMS_100001", "100001"}
    # Step 2: a wrong code keeps everything; the right one creates the ticket.
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    refused = await client.post("/r/S01", data=report_form({**FORM, "action": "submit", "code": wrong}, kept=tokens))
    refused_body = await refused.text()
    assert refused.status == 400 and "验证码错误或已过期" in refused_body and "空调外机漏水" in refused_body
    tokens = re.findall(r'name="kept" value="([^"]+)"', refused_body)
    assert len(tokens) == 1
    done = await client.post("/r/S01", data=report_form({**FORM, "action": "submit", "code": code}, kept=tokens))
    done_body = await done.text()
    assert done.status == 200, done_body
    number = re.search(r'id="ticket-number">([^<]+)<', done_body).group(1)  # type: ignore[union-attr]
    assert "已附上 1 张照片" in done_body and "短信通知" in done_body
    async with runtime.uow() as uow:
        ticket = await uow.get_ticket(number)
        assert ticket is not None
        customer = await uow.get_person(ticket.customer_id)
    assert customer is not None and customer.preferred_channel == "sms" and ticket.store_id == STORE.code
    async with runtime.sessions() as session:
        identity = await session.get(IdentityRow, ("sms", PHONE))
        assert identity is not None and identity.person_id == customer.id
        assert (await session.execute(select(SmsCodeRow))).first() is None  # the code is used up
    # The ticket's notice reaches the customer by SMS, with its number and tracking link.
    await wait_for(lambda: any(s.template in {"SMS_100002", "100002"} for s in sms_fake.sent))
    notice = next(s for s in sms_fake.sent if s.template in {"SMS_100002", "100002"})
    values = list(notice.params.values()) if isinstance(notice.params, dict) else notice.params
    assert values[0] == number and values[2].startswith("https://gd.example.com/")
    # The same code cannot report twice (a double submit).
    again = await client.post("/r/S01", data=report_form({**FORM, "action": "submit", "code": code}))
    assert again.status == 400 and "验证码错误或已过期" in await again.text()


async def test_submit_without_a_code_asks_for_one(client: TestClient, sms_fake: FakeSmsProvider) -> None:
    response = await client.post("/r/S01", data=report_form({**FORM, "action": "submit"}))
    body = await response.text()
    assert response.status == 400 and "获取验证码" in body and "空调外机漏水" in body
    async with runtime_of(client).uow() as uow:
        assert await uow.list_tickets() == []


async def test_code_requests_have_their_own_limits(client: TestClient, sms_fake: FakeSmsProvider) -> None:
    first = await client.post("/r/S01", data=report_form({**FORM, "action": "send_code"}))
    assert first.status == 200
    again = await client.post("/r/S01", data=report_form({**FORM, "action": "send_code"}))
    assert again.status == 400 and "发送过于频繁" in await again.text()  # a minute between codes
    bad = await client.post("/r/S01", data=report_form({**FORM, "phone": "12345", "action": "send_code"}))
    assert bad.status == 400 and "正确的 11 位手机号" in await bad.text()
    other = await client.post("/r/S01", data=report_form({**FORM, "phone": "13900000001", "action": "send_code"}))
    assert other.status == 200
    # Three requests from this address this hour (the refused resend counted too): the fourth is refused.
    over = await client.post("/r/S01", data=report_form({**FORM, "phone": "13900000002", "action": "send_code"}))
    assert over.status == 400 and "获取验证码过于频繁" in await over.text()
    assert len(sms_fake.sent) == 2


async def test_a_confirmed_phone_prefills_from_master_data(client: TestClient, sms_fake: FakeSmsProvider) -> None:
    runtime = runtime_of(client)
    async with runtime.uow() as uow:
        await uow.add_person(Person("C001", "王女士", Role.CUSTOMER, phone=PHONE), {})
        md = uow.masterdata()
        await md.upsert_customer(CustomerRecord("C001", "王女士", phones=(PHONE,), store_code="S01"),
                                 at=runtime.clock.now())
        await md.upsert_asset(AssetRecord("CAR-1", plate="粤B12345", customer_id="C001", display_id="粤B·12345"))
        await uow.commit()
    lookup = await client.get("/r/S01/lookup", params={"phone": PHONE})
    assert (await lookup.json()) == {"subjects": []}  # not confirmed: nothing revealed
    await client.post("/r/S01", data=report_form({**FORM, "action": "send_code"}))
    code = code_in(sms_fake)
    wrong = await client.get("/r/S01/lookup", params={"phone": PHONE, "code": "000000" if code != "000000" else "1"})
    assert wrong.status == 403 and (await wrong.json())["subjects"] == []
    right = await client.get("/r/S01/lookup", params={"phone": PHONE, "code": code})
    assert (await right.json()) == {"subjects": ["粤B·12345"]}
    # The peek did not use the code up: the report goes through as the known customer.
    done = await client.post("/r/S01", data=report_form({**FORM, "action": "submit", "code": code,
                                                         "subject": "粤B·12345"}))
    assert done.status == 200
    async with runtime.uow() as uow:
        [ticket] = await uow.list_tickets()
    assert ticket.customer_id == "C001" and ticket.asset_id == "CAR-1"
