"""Intake prefill from master data, end to end through the playground (core/masterdata/prefill.py,
core/intake/details.py): customer, asset, store, site, contract and warranty on the new ticket before
dispatch ranks it; the location a customer sends before (or after) reporting; `地址` and `设备编号`."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.web.app import build_app
from core.masterdata.model import Address, AssetRecord, ContractRecord, CustomerRecord, StoreRecord
from core.masterdata.prefill import identifier_of, nearest_store, phone_in, pick_contract
from core.model import Ticket
from tests.conftest import make_settings, runtime_of
from tests.playground_client import PlaygroundUser

NUMBER = re.compile(r"GD-\d{8}-\d{4}")
HOME = (31.2050, 121.5900)  # near the demo store S01 (张江), where tech-wang's position is


def today() -> date:
    return datetime.now(ZoneInfo("Asia/Shanghai")).date()


async def seed(client: TestClient, *, link_identity: bool = True) -> None:
    """Store S09, customer C001 (two phones, a home address with coordinates), the air conditioner
    AC-001 in warranty, contract HT-001 covering it; C001 writes in the playground as `C001`."""
    rt = runtime_of(client)
    day = today()
    async with rt.uow() as uow:
        md = uow.masterdata()
        await md.upsert_store(StoreRecord("S09", "张江二店", "上海市浦东新区碧波路 500 号", 31.2100, 121.6000))
        await md.upsert_customer(CustomerRecord(
            "C001", "王女士", phones=("13812345678", "02161234567"),
            addresses=(Address("家", "上海市浦东新区张江路 200 弄 5 号", *HOME),), company="张江科技",
            service_level="VIP", store_code="S09"), at=rt.clock.now())
        await md.upsert_asset(AssetRecord("AC-001", sn="KFR35GWN8HR3", brand="格力", model="KFR-35GW",
                                          store_code="S09", customer_id="C001",
                                          warranty_end=day + timedelta(days=300), display_id="KFR-35GW/N8HR3"))
        await md.upsert_contract(ContractRecord("HT-001", "C001", ("AC-001",), "金牌", day - timedelta(days=10),
                                                day + timedelta(days=355)))
        if link_identity:
            await uow.link_identity("C001", "local", "C001")
        await uow.commit()


async def locate(client: TestClient, user: str, lat: float, lng: float) -> int:
    """A location message through the playground API; the HTTP status."""
    resp = await client.post("/playground/api/messages", json={"user": user, "location": {"lat": lat, "lng": lng}})
    return resp.status


async def ticket_of(client: TestClient, user: PlaygroundUser) -> Ticket:
    texts = " ".join(await user.texts())
    numbers = NUMBER.findall(texts)
    assert numbers, texts
    async with runtime_of(client).uow() as uow:
        ticket = await uow.get_ticket(numbers[-1])
    assert ticket is not None
    return ticket


async def offer_card(client: TestClient, ticket: Ticket) -> dict[str, Any]:
    async with runtime_of(client).uow() as uow:
        sent = [e for e in await uow.audit_for_ticket(ticket.number) if e.kind == "offer_sent"]
    assert sent, "no offer was made"
    tech = PlaygroundUser(client, str(sent[-1].payload["person_id"]))
    cards = [c for c in await tech.cards("offer") if c["title"].endswith(ticket.number)]
    assert cards
    return cards[-1]


async def test_a_known_customer_and_asset_fill_the_ticket_before_dispatch(app_client: TestClient) -> None:
    """SQLite and PostgreSQL: recognised by identity, the SN written another way, the home address."""
    await seed(app_client)
    customer = PlaygroundUser(app_client, "C001")
    await customer.say("空调 KFR35GW-N8HR3 不制冷")
    ticket = await ticket_of(app_client, customer)
    assert ticket.asset_id == "AC-001" and ticket.subject == "KFR-35GW/N8HR3"
    assert ticket.store_id == "S09"  # the asset's store
    assert (ticket.site_lat, ticket.site_lng) == HOME
    facts = ticket.data["masterdata"]
    assert facts["location_source"] == "customer_address" and "张江路" in facts["address"]
    assert facts["contract"]["number"] == "HT-001" and facts["contract"]["valid"] is True
    assert facts["warranty"] == {"end": (today() + timedelta(days=300)).isoformat(), "in_warranty": True}
    assert facts["customer"]["matched_by"] == "identity" and facts["customer"]["phone"] == "138****5678"
    assert "请发送您的位置" not in (await customer.texts())[-1]  # the site is known: nothing to ask

    # Dispatch ranked with the real site: the distance term counted from the customer's home.
    async with runtime_of(app_client).uow() as uow:
        sent = next(e for e in await uow.audit_for_ticket(ticket.number) if e.kind == "offer_sent")
    assert sent.payload["candidate"]["site_source"] == "site"
    assert sent.payload["candidate"]["distance_km"] is not None
    card = dict(await offer_card(app_client, ticket))
    facts_shown = dict(card["facts"])
    assert facts_shown["设备"] == "KFR-35GW/N8HR3｜格力 KFR-35GW"
    assert facts_shown["维修记录"] == "无"
    assert facts_shown["保修/合同"] == (f"在保至{(today() + timedelta(days=300)).isoformat()}｜合同 HT-001 有效至"
                                       f"{(today() + timedelta(days=355)).isoformat()}")
    assert re.fullmatch(r"距您 \d+\.\d 公里", facts_shown["距离"]), facts_shown
    assert facts_shown["客户"] == "王女士（138****5678）"
    assert "13812345678" not in str(card)


async def sqlite_client(tmp_path: Path, **overrides: object) -> TestClient:
    settings = make_settings(f"sqlite:///{tmp_path / 'ticketbot.db'}", tmp_path, **overrides)
    return TestClient(TestServer(build_app(settings)))


@pytest.fixture
async def client(tmp_path: Path) -> Any:
    async with await sqlite_client(tmp_path) as c:
        yield c


async def test_the_last_tickets_of_the_asset_are_on_the_offer_card(client: TestClient) -> None:
    await seed(client)
    customer = PlaygroundUser(client, "C001")
    await customer.say("空调 KFR-35GW/N8HR3 不制冷")
    first = await ticket_of(client, customer)
    await customer.say("新问题 空调 ｋｆｒ35gw_n8hr3 漏水")  # the same unit written another way, a new problem
    second = await ticket_of(client, customer)
    assert second.number != first.number and second.asset_id == "AC-001"
    history = dict((await offer_card(client, second))["facts"])["维修记录"]
    assert history.startswith(first.number) and "机械类" in history


async def test_the_same_asset_written_differently_is_a_follow_up(client: TestClient) -> None:
    await seed(client)
    customer = PlaygroundUser(client, "C001")
    await customer.say("空调 KFR-35GW/N8HR3 不制冷")
    first = await ticket_of(client, customer)
    await customer.say("空调 KFR35GW-N8HR3 又在滴水")
    assert "补充说明" in await customer.last_text()
    async with runtime_of(client).uow() as uow:
        assert len(await uow.list_tickets(customer_id="C001")) == 1
        assert (await uow.get_ticket(first.number)).data["follow_ups"]["count"] == 1  # type: ignore[union-attr]


async def test_a_phone_in_the_report_prefills_without_taking_over_the_customer(client: TestClient) -> None:
    await seed(client, link_identity=False)
    stranger = PlaygroundUser(client, "cust-phone")
    await stranger.say("空调不制冷，我的电话 021-6123 4567 或 138 1234 5678")
    ticket = await ticket_of(client, stranger)
    assert ticket.customer_id == "cust-phone"  # a typed phone proves nothing: no identity is linked
    facts = ticket.data["masterdata"]
    assert facts["customer"]["id"] == "C001" and facts["customer"]["matched_by"] == "phone"
    assert ticket.store_id == "S09" and (ticket.site_lat, ticket.site_lng) == HOME
    async with runtime_of(client).uow() as uow:
        assert await uow.person_by_identity("local", "cust-phone") is not None
        assert await uow.external_id("C001", "local") is None


async def test_front_desk_finds_a_customer_by_a_second_phone(client: TestClient) -> None:
    await seed(client, link_identity=False)
    desk = PlaygroundUser(client, "sup-li")
    await desk.say("代客报修 021-61234567 空调 KFR35GWN8HR3 不制冷")
    answer = await desk.last_text()
    assert "王女士" in answer and "（C001" in answer, answer
    async with runtime_of(client).uow() as uow:
        ticket = (await uow.list_tickets(customer_id="C001"))[0]
    assert ticket.asset_id == "AC-001" and ticket.store_id == "S09"


async def test_a_location_sent_before_the_report_is_its_site(client: TestClient) -> None:
    """CONTRACT: in the playground, a location message sent before a fault report is that report's location."""
    customer = PlaygroundUser(client, "cust-loc-first")
    assert await locate(client, "cust-loc-first", 31.1705, 121.3971) == 200
    assert "请接着描述故障" in await customer.last_text()
    await customer.say("底盘有异响")
    ticket = await ticket_of(client, customer)
    assert (ticket.site_lat, ticket.site_lng) == (31.1705, 121.3971)
    assert ticket.data["masterdata"]["location_source"] == "location_message"
    assert ticket.store_id == "S02"  # no asset, no customer store: the store nearest the site
    assert "请发送您的位置" not in await customer.last_text()
    detail = await (await client.get(f"/api/tickets/{ticket.number}")).json()
    assert detail["location"] == {"lat": 31.1705, "lng": 121.3971, "address": None, "source": "location_message"}
    # Used once: the next report has no site again and is asked for one.
    await customer.say("新问题 中控黑屏")
    assert "请发送您的位置" in " ".join(await customer.texts())
    assert (await ticket_of(client, customer)).site_lat is None


async def test_a_location_older_than_the_window_is_not_used(tmp_path: Path) -> None:
    async with await sqlite_client(tmp_path, location_window_minutes=0) as client:
        customer = PlaygroundUser(client, "cust-late")
        await locate(client, "cust-late", 31.2, 121.4)
        await customer.say("底盘有异响")
        ticket = await ticket_of(client, customer)
        assert ticket.site_lat is None and ticket.data["masterdata"]["location_asked"] is True


async def test_an_unknown_location_is_asked_once_and_the_answer_reaches_the_technician(client: TestClient) -> None:
    customer = PlaygroundUser(client, "cust-ask")
    await customer.say("底盘有异响")
    assert "请发送您的位置" in (await customer.texts())[0]
    ticket = await ticket_of(client, customer)
    assert ticket.data["masterdata"]["location_asked"] is True and ticket.assignee_id
    await locate(client, "cust-ask", 31.2041, 121.5901)
    assert f"已记录工单 {ticket.number} 的现场位置" in await customer.last_text()
    located = await ticket_of(client, customer)
    assert (located.site_lat, located.site_lng) == (31.2041, 121.5901)
    assert located.data["masterdata"]["location_source"] == "location_message"
    told = await PlaygroundUser(client, ticket.assignee_id).texts()  # type: ignore[arg-type]
    assert any(f"工单 {ticket.number} 的客户发送了现场位置" in t and "距您" in t for t in told), told
    # A second location with the site known is kept for the next report, not asked again.
    await locate(client, "cust-ask", 30.2, 120.2)
    assert "请接着描述故障" in await customer.last_text()
    assert sum("请发送您的位置" in t for t in await customer.texts()) == 1


async def test_an_address_reply_is_geocoded_against_known_addresses(client: TestClient) -> None:
    customer = PlaygroundUser(client, "cust-addr")
    await customer.say("底盘有异响")
    number = (await ticket_of(client, customer)).number
    await customer.say("上海市徐汇区宜山路900号")  # the demo store S02's address, written without the space
    assert f"已记录工单 {number} 的地址" in await customer.last_text()
    ticket = await ticket_of(client, customer)
    assert (ticket.site_lat, ticket.site_lng) == (31.1705, 121.3970)
    assert ticket.data["masterdata"]["location_source"] == "geocoded"
    # An address nobody knows is still recorded as text; the customer is asked for a location.
    await customer.say("新问题 中控黑屏")
    await customer.say("地址 北京市海淀区中关村大街 1 号")
    assert "没能在已知地址中找到它的坐标" in await customer.last_text()
    other = await ticket_of(client, customer)
    assert other.site_lat is None and other.data["masterdata"]["address"] == "北京市海淀区中关村大街 1 号"
    # With no ticket waiting, an address-like text goes on as an ordinary message.
    await PlaygroundUser(client, "cust-no-ticket").say("上海市徐汇区宜山路900号")
    async with runtime_of(client).uow() as uow:
        assert await uow.list_tickets(customer_id="cust-no-ticket") == []


async def test_device_number_alone_attaches_to_the_open_ticket_or_the_next_report(client: TestClient) -> None:
    await seed(client)
    customer = PlaygroundUser(client, "C001")
    await customer.say("设备编号 KFR35GWN8HR3")  # no open ticket: kept for the next report
    assert "已记下设备编号" in await customer.last_text()
    await customer.say("空调不制冷")
    ticket = await ticket_of(client, customer)
    assert ticket.asset_id == "AC-001"

    other = PlaygroundUser(client, "cust-dev")
    await other.say("底盘有异响")
    await other.say("设备编号 沪A·12345")
    assert "已为工单" in await other.last_text() and "设备档案中暂无" in await other.last_text()
    linked = await ticket_of(client, other)
    assert linked.subject == "沪A12345" and linked.asset_id is None
    assert linked.data["masterdata"]["asset_key"] == "plate:沪A12345"
    await other.say("设备编号 ！！")
    assert "请在「设备编号」后写上" in await other.last_text()


async def test_a_location_message_with_bad_coordinates_is_refused(client: TestClient) -> None:
    customer = PlaygroundUser(client, "cust-bad-loc")
    assert await locate(client, "cust-bad-loc", 95, 1) == 400
    await customer.say("位置 31.2,121.5")  # the typed form goes the same way
    assert "请接着描述故障" in await customer.last_text()


def test_identifier_of_reads_plates_vins_and_serial_numbers() -> None:
    assert identifier_of("沪A·12345") == ("plate", "沪A12345")
    assert identifier_of("LSVAU218XN2183294") == ("vin", "LSVAU218XN2183294")
    assert identifier_of("ｋｆｒ－35GW/N8HR3") == ("sn", "KFR35GWN8HR3")
    assert identifier_of("   ") is None and identifier_of("—") is None


def test_phone_in_reads_mobile_numbers_only() -> None:
    assert phone_in("电话 +86 138-1234-5678 谢谢") == "13812345678"
    assert phone_in("编号 2138123456789") is None and phone_in("座机 021-61234567") is None


def test_nearest_store_and_contract_choice() -> None:
    stores = [StoreRecord("A", "a", lat=31.0, lng=121.0), StoreRecord("B", "b", lat=30.0, lng=120.0),
              StoreRecord("C", "c", lat=30.0, lng=120.0, active=False)]
    assert nearest_store(stores, 30.1, 120.1).code == "B"  # type: ignore[union-attr]
    day = date(2026, 12, 6)
    old = ContractRecord("OLD", "c", (), "银", date(2024, 1, 1), date(2025, 12, 31))
    new = ContractRecord("NEW", "c", (), "金", date(2026, 1, 1), date(2027, 12, 31))
    assert pick_contract([old, new], day) is new
    assert pick_contract([old], day) is old  # ended: still shown, valid false
    assert pick_contract([], day) is None


def test_first_time_fix_compares_the_normalised_asset() -> None:
    """Two spellings of one serial number within 30 days are a repeat; another unit is not."""
    from core.lifecycle.rework import asset_key, first_time_fix
    from core.model import TicketStatus

    start = datetime(2026, 11, 1, tzinfo=ZoneInfo("Asia/Shanghai"))

    def made(number: str, subject: str, day: int, *, closed: bool, asset_id: str | None = None) -> Ticket:
        at = start + timedelta(days=day)
        return Ticket(number=number, customer_id="c", description="空调不制冷", category="空调类",
                      status=TicketStatus.CLOSED if closed else TicketStatus.PENDING_DISPATCH, created_at=at,
                      updated_at=at, subject=subject, asset_id=asset_id, closed_at=at + timedelta(hours=2) if closed
                      else None)

    first = made("GD-1", "KFR-35GW/N8HR3", 1, closed=True)
    again = made("GD-2", "kfr35gw-n8hr3", 5, closed=False)
    other = made("GD-3", "KFR-26GW/X1", 6, closed=False)
    linked = made("GD-4", "KFR-35GW/N8HR3", 1, closed=True, asset_id="AC-001")
    assert asset_key(first) == asset_key(again) == "sn:KFR35GWN8HR3" and asset_key(linked) == "asset:AC-001"
    result = first_time_fix([first, again, other], start, start + timedelta(days=30))
    assert result.failed == ("GD-1",) and result.repeats == ("GD-2",)


async def test_the_default_address_is_the_site(client: TestClient) -> None:
    rt = runtime_of(client)
    async with rt.uow() as uow:
        await uow.masterdata().upsert_customer(CustomerRecord(
            "C002", "李先生", phones=("13900001111",), addresses=(
                Address("公司", "上海市徐汇区宜山路 900 号", 31.1705, 121.3970),
                Address("默认", "杭州市滨江区江南大道 588 号", 30.2084, 120.2106))), at=rt.clock.now())
        await uow.link_identity("C002", "local", "C002")
        await uow.commit()
    customer = PlaygroundUser(client, "C002")
    await customer.say("底盘有异响")
    ticket = await ticket_of(client, customer)
    assert (ticket.site_lat, ticket.site_lng) == (30.2084, 120.2106) and ticket.store_id == "S03"  # nearest store
