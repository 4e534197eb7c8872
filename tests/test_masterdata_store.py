"""uow.masterdata() (storage/masterdata.py) on SQLite and PostgreSQL: stores, teams, customers,
assets, contracts, ticket links, and the refusals of references that do not exist."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest

from core.errors import InvalidInput
from core.masterdata.identifiers import normalise_plate, normalise_sn, normalise_vin
from core.masterdata.model import (
    FORGOTTEN_NAME,
    Address,
    AssetRecord,
    ContractRecord,
    CustomerRecord,
    StoreRecord,
    TeamRecord,
)
from core.model import Person, Role, Ticket, TicketStatus
from storage.database import Sessions
from storage.unit_of_work import SqlUnitOfWork

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
STORE = StoreRecord("S01", "浦东店", address="上海市浦东新区张江路1号", lat=31.2, lng=121.6,
                    opening_hours="周一至周六 9:00-18:00", phone="021-50501234")
CUSTOMER = CustomerRecord("C001", "王先生", phones=("13812345678", "02150505050"),
                          addresses=(Address("家", "上海市浦东新区碧云路2号", 31.23, 121.59),),
                          company="碧云物业", service_level="金卡", store_code="S01")


@pytest.fixture
def sessions(db_sessions: Sessions) -> Sessions:
    return db_sessions


async def seed(sessions: Sessions) -> None:
    async with SqlUnitOfWork(sessions) as uow:
        md = uow.masterdata()
        assert await md.upsert_store(STORE) is True
        assert await md.upsert_customer(CUSTOMER, at=NOW) is True
        await uow.commit()


async def test_stores_and_teams_round_trip_and_upsert(sessions: Sessions) -> None:
    await seed(sessions)
    async with SqlUnitOfWork(sessions) as uow:
        md = uow.masterdata()
        assert await md.get_store("S01") == STORE
        changed = StoreRecord("S01", "浦东旗舰店", lat=31.21, lng=121.61, active=False)
        assert await md.upsert_store(changed) is False
        assert await md.list_stores() == [changed]
        await uow.add_person(Person("sup-1", "李主管", Role.SUPERVISOR, store_id="S01"))
        assert await md.upsert_team(TeamRecord("T01", "电工班", store_code="S01", leader_id="sup-1")) is True
        assert await md.upsert_team(TeamRecord("T01", "电工一班", store_code="S01")) is False
        assert await md.get_team("T01") == TeamRecord("T01", "电工一班", store_code="S01")
        assert await md.list_teams("S01") == [TeamRecord("T01", "电工一班", store_code="S01")]
        assert await md.list_teams("S99") == []
        assert await md.set_person_team("sup-1", "T01") is True
        assert await md.person_team("sup-1") == "T01"
        assert await md.set_person_team("nobody", "T01") is False
        with pytest.raises(InvalidInput, match="班组「T99」不存在"):
            await md.set_person_team("sup-1", "T99")
        with pytest.raises(InvalidInput, match="门店「S99」不存在"):
            await md.upsert_team(TeamRecord("T02", "水暖班", store_code="S99"))
        with pytest.raises(InvalidInput, match="班组长「ghost」不存在"):
            await md.upsert_team(TeamRecord("T02", "水暖班", leader_id="ghost"))
        await uow.commit()
    async with SqlUnitOfWork(sessions) as uow:
        person = await uow.get_person("sup-1")
        assert person is not None and person.store_id == "S01"  # the Person port still reads the row


async def test_store_coordinates_are_checked(sessions: Sessions) -> None:
    async with SqlUnitOfWork(sessions) as uow:
        md = uow.masterdata()
        with pytest.raises(InvalidInput, match=r"纬度 91\.0 超出范围"):
            await md.upsert_store(StoreRecord("S02", "坏店", lat=91.0, lng=121.0))
        with pytest.raises(InvalidInput, match=r"经度 -181\.0 超出范围"):
            await md.upsert_store(StoreRecord("S02", "坏店", lat=31.0, lng=-181.0))
        with pytest.raises(InvalidInput, match="缺少坐标"):
            await md.upsert_store(StoreRecord("S02", "无坐标店"))
        assert await md.list_stores() == []


async def test_customers_by_id_and_phone_and_the_person_row(sessions: Sessions) -> None:
    await seed(sessions)
    async with SqlUnitOfWork(sessions) as uow:
        md = uow.masterdata()
        assert await md.get_customer("C001") == CUSTOMER
        assert await md.customers_by_phone("02150505050") == [CUSTOMER]
        person = await uow.get_person("C001")
        assert person is not None and (person.role, person.name, person.phone) == (Role.CUSTOMER, "王先生",
                                                                                   "13812345678")
        assert [p.id for p in await uow.people_by_phone("13812345678")] == ["C001"]  # 代客报修 finds them
        # A second customer shares the landline; the first drops their mobile.
        other = CustomerRecord("C002", "王太太", phones=("02150505050",))
        assert await md.upsert_customer(other, at=NOW) is True
        updated = CustomerRecord("C001", "王建国", phones=("02150505050",), store_code="S01")
        assert await md.upsert_customer(updated, at=NOW) is False
        assert await md.customers_by_phone("13812345678") == []
        assert [c.id for c in await md.customers_by_phone("02150505050")] == ["C001", "C002"]
        with pytest.raises(InvalidInput, match="门店「S09」不存在"):
            await md.upsert_customer(CustomerRecord("C003", "赵", store_code="S09"), at=NOW)
        with pytest.raises(InvalidInput, match=r"纬度 95\.0 超出范围"):
            await md.upsert_customer(CustomerRecord("C003", "赵", addresses=(Address("家", "某地", 95.0, 1.0),)),
                                     at=NOW)
        await uow.commit()


async def test_a_person_who_chatted_becomes_a_customer_but_staff_cannot(sessions: Sessions) -> None:
    async with SqlUnitOfWork(sessions) as uow:
        await uow.add_person(Person("wx-1", "客户nlno", Role.CUSTOMER), {"wecom": "nlno"})
        await uow.add_person(Person("tech-1", "张师傅", Role.TECHNICIAN))
        md = uow.masterdata()
        assert await md.upsert_customer(CustomerRecord("wx-1", "刘女士", phones=("13900001111",)), at=NOW) is True
        person = await uow.get_person("wx-1")
        assert person is not None and person.name == "刘女士"  # not the cached, stale row
        with pytest.raises(InvalidInput, match="属于员工"):
            await md.upsert_customer(CustomerRecord("tech-1", "张师傅"), at=NOW)
        await uow.commit()
    async with SqlUnitOfWork(sessions) as uow:
        found = await uow.person_by_identity("wecom", "nlno")
        assert found is not None and found.id == "wx-1"


async def test_forget_customer_erases_personal_fields_only(sessions: Sessions) -> None:
    await seed(sessions)
    async with SqlUnitOfWork(sessions) as uow:
        await uow.link_identity("C001", "wecom", "wang")
        await uow.add_ticket(ticket("T-1", asset_id=None))
        await uow.commit()
    async with SqlUnitOfWork(sessions) as uow:
        md = uow.masterdata()
        assert await md.forget_customer("C001", at=NOW) is True
        assert await md.forget_customer("nobody", at=NOW) is False
        await uow.commit()
    async with SqlUnitOfWork(sessions) as uow:
        md = uow.masterdata()
        gone = await md.get_customer("C001")
        assert gone is not None
        assert (gone.name, gone.phones, gone.addresses, gone.company, gone.forgotten_at) == (
            FORGOTTEN_NAME, (), (), "", NOW)
        assert await md.customers_by_phone("13812345678") == []
        assert await uow.people_by_phone("13812345678") == []
        assert await uow.person_by_identity("wecom", "wang") is None
        kept = await uow.get_ticket("T-1")
        assert kept is not None and kept.customer_id == "C001"


def ticket(number: str, *, asset_id: str | None, created: datetime = NOW) -> Ticket:
    return Ticket(number=number, customer_id="C001", description="空调不制冷", status=TicketStatus.CLOSED,
                  created_at=created, updated_at=created, store_id="S01", asset_id=asset_id)


async def test_assets_by_any_normalised_key_and_their_tickets(sessions: Sessions) -> None:
    await seed(sessions)
    aircon = AssetRecord("AC-1", sn=normalise_sn("KFR-35GW/N8HR3"), brand="格力", model="KFR-35GW",
                         store_code="S01", customer_id="C001", installed_on=date(2024, 5, 1),
                         warranty_end=date(2027, 4, 30), params={"匹数": 1.5, "冷媒": "R32"},
                         display_id="KFR-35GW/N8HR3")
    car = AssetRecord("CAR-1", vin=normalise_vin("LSVAM4187C2184847"), plate=normalise_plate("沪A·12345"),
                      brand="大众", customer_id="C001", warranty_end=date(2026, 12, 31))
    async with SqlUnitOfWork(sessions) as uow:
        md = uow.masterdata()
        assert await md.upsert_asset(aircon) is True
        assert await md.upsert_asset(car) is True
        assert await md.find_asset("sn", normalise_sn("kfr35gw-n8hr3")) == aircon
        assert await md.find_asset("any", "KFR35GWN8HR3") == aircon
        assert await md.find_asset("plate", "沪A12345") == car
        assert await md.find_asset("any", "LSVAM4187C2184847") == car
        assert await md.find_asset("vin", "KFR35GWN8HR3") is None
        assert await md.get_asset("AC-1") == aircon
        assert [a.id for a in await md.assets_of_customer("C001")] == ["AC-1", "CAR-1"]
        assert [a.id for a in await md.assets_with_warranty_ending(date(2026, 12, 1), date(2026, 12, 31))] == [
            "CAR-1"]
        # An SN already registered on another asset is refused; the same asset may keep it.
        with pytest.raises(InvalidInput, match="已登记在设备「AC-1」上"):
            await md.upsert_asset(AssetRecord("AC-2", sn="KFR35GWN8HR3"))
        assert await md.upsert_asset(AssetRecord("AC-1", sn="KFR35GWN8HR3", brand="格力")) is False
        with pytest.raises(InvalidInput, match="客户「C404」不存在"):
            await md.upsert_asset(AssetRecord("AC-3", sn="X1Y2Z3", customer_id="C404"))
        with pytest.raises(InvalidInput, match="门店「S404」不存在"):
            await md.upsert_asset(AssetRecord("AC-3", sn="X1Y2Z3", store_code="S404"))
        for i in range(5):
            await uow.add_ticket(ticket(f"T-{i}", asset_id="AC-1", created=NOW + timedelta(hours=i)))
        # Tickets this transaction has not written yet are read too.
        recent = await md.recent_tickets_of_asset("AC-1")
        assert [t.number for t in recent] == ["T-4", "T-3", "T-2"]
        assert recent[0].store_id == "S01"
        await uow.commit()
    async with SqlUnitOfWork(sessions) as uow:
        stored = await uow.get_ticket("T-0")
        assert stored is not None and (stored.store_id, stored.asset_id) == ("S01", "AC-1")
        assert [t.number for t in await uow.masterdata().recent_tickets_of_asset("AC-1", limit=1)] == ["T-4"]


async def test_contracts_cover_assets(sessions: Sessions) -> None:
    await seed(sessions)
    async with SqlUnitOfWork(sessions) as uow:
        md = uow.masterdata()
        await md.upsert_asset(AssetRecord("AC-1", sn="KFR35GWN8HR3", customer_id="C001"))
        await md.upsert_asset(AssetRecord("AC-2", sn="KFR26GWN8HR3", customer_id="C001"))
        contract = ContractRecord("HT-2026-001", "C001", ("AC-1", "AC-2"), "金牌", date(2026, 1, 1),
                                  date(2026, 12, 31))
        assert await md.upsert_contract(contract) is True
        assert await md.get_contract("HT-2026-001") == contract
        assert contract.valid_on(date(2026, 12, 31)) and not contract.valid_on(date(2027, 1, 1))
        renewed = ContractRecord("HT-2026-001", "C001", ("AC-2",), "银牌", date(2026, 1, 1), date(2027, 6, 30))
        assert await md.upsert_contract(renewed) is False
        assert await md.contracts_for_asset("AC-1") == []
        assert await md.contracts_for_asset("AC-2") == [renewed]
        assert await md.contracts_of_customer("C001") == [renewed]
        assert await md.contracts_ending(date(2027, 6, 1), date(2027, 6, 30)) == [renewed]
        assert await md.contracts_ending(date(2026, 12, 1), date(2026, 12, 31)) == []
        with pytest.raises(InvalidInput, match="设备「AC-9」不存在"):
            await md.upsert_contract(ContractRecord("HT-2", "C001", ("AC-9",), "", date(2026, 1, 1),
                                                    date(2026, 2, 1)))
        with pytest.raises(InvalidInput, match="客户「C404」不存在"):
            await md.upsert_contract(ContractRecord("HT-2", "C404", (), "", date(2026, 1, 1), date(2026, 2, 1)))
        with pytest.raises(InvalidInput, match="结束日期早于开始日期"):
            await md.upsert_contract(ContractRecord("HT-2", "C001", (), "", date(2026, 3, 1), date(2026, 2, 1)))
        await uow.commit()


async def test_concurrent_upserts_of_one_key_both_land(sessions: Sessions, database_url: str) -> None:
    """Two transactions creating the same store and distinct assets at once: nothing is lost, and
    the later writer updates rather than failing."""
    await seed(sessions)

    async def writer(name: str, asset_id: str) -> bool:
        async with SqlUnitOfWork(sessions) as uow:
            md = uow.masterdata()
            created = await md.upsert_store(StoreRecord("S09", name, lat=30.0, lng=120.0))
            await md.upsert_asset(AssetRecord(asset_id, sn=asset_id.replace("-", "") + "X1", store_code="S09"))
            await asyncio.sleep(0.05)
            await uow.commit()
            return created

    results = await asyncio.gather(writer("一号", "AS-1"), writer("二号", "AS-2"))
    assert sorted(results) == [False, True]
    async with SqlUnitOfWork(sessions) as uow:
        md = uow.masterdata()
        assert {a.id for a in [await md.get_asset("AS-1"), await md.get_asset("AS-2")] if a} == {"AS-1", "AS-2"}
        store = await md.get_store("S09")
        assert store is not None and store.name in {"一号", "二号"}


async def test_upsert_person_staff_identities_and_the_technician_row(sessions: Sessions) -> None:
    from core.masterdata.model import PersonRecord

    await seed(sessions)
    async with SqlUnitOfWork(sessions) as uow:
        md = uow.masterdata()
        await md.upsert_team(TeamRecord("T01", "电工班", store_code="S01"))
        tech = PersonRecord("P02", "周师傅", Role.TECHNICIAN, phone="13800000002", store_code="S01",
                            team_code="T01", supervisor_id="P01", title="电工", identities=(("wecom", "zhou"),))
        assert await md.upsert_person(tech, at=NOW) is True
        entries = await uow.dispatch_store().entries(["P02"], identities=True)
        assert [(e.person_id, e.store_id, e.supervisor_id, e.identities) for e in entries] == [
            ("P02", "S01", "P01", {"local": "P02", "wecom": "zhou"})]
        # A new WeCom id replaces the old one; the role changes; the team is kept as given.
        moved = PersonRecord("P02", "周师傅", Role.SUPERVISOR, team_code="T01", identities=(("wecom", "zhou2"),))
        assert await md.upsert_person(moved, at=NOW) is False
        assert await uow.person_by_identity("wecom", "zhou") is None
        found = await uow.person_by_identity("wecom", "zhou2")
        assert found is not None and (found.role, found.preferred_channel) == (Role.SUPERVISOR, "wecom")
        assert await md.person_team("P02") == "T01"
        with pytest.raises(InvalidInput, match="属于客户"):
            await md.upsert_person(PersonRecord("C001", "王先生", Role.TECHNICIAN), at=NOW)
        with pytest.raises(InvalidInput, match="班组「T9」不存在"):
            await md.upsert_person(PersonRecord("P03", "吴", Role.EXPERT, team_code="T9"), at=NOW)
        with pytest.raises(InvalidInput, match="门店「S9」不存在"):
            await md.upsert_person(PersonRecord("P03", "吴", Role.FRONT_DESK, store_code="S9"), at=NOW)
        await uow.commit()
