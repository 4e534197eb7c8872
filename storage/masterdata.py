"""SqlMasterDataStore: core.masterdata.store.MasterDataStore on the unit of work's transaction.

Upserts are race-free on both databases: INSERT ... ON CONFLICT DO NOTHING on the natural key, then
an UPDATE when nothing was inserted, so two admins importing at once never lose a row (the second
writer of one key waits for the first's row lock on PostgreSQL and then updates it). Statements used
per imported row are built once and marked hot (storage/sqlite/prepared.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any

from sqlalchemy import Row, bindparam, delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from core.errors import InvalidInput
from core.masterdata.model import (
    FORGOTTEN_NAME,
    Address,
    AssetRecord,
    ContractRecord,
    CustomerRecord,
    PersonRecord,
    StoreRecord,
    TeamRecord,
)
from core.masterdata.store import AssetKey
from core.model import Role, Ticket
from storage.sqlite.prepared import hot
from storage.tables import (
    AssetRow,
    ContractAssetRow,
    ContractRow,
    CustomerPhoneRow,
    CustomerRow,
    IdentityRow,
    PersonRow,
    StoreRow,
    TeamRow,
    TechnicianRow,
    TicketRow,
)

_STORE_EXISTS = hot(select(col(StoreRow.id)).where(col(StoreRow.id) == bindparam("id")))
_ROLE_OF = hot(select(col(PersonRow.role)).where(col(PersonRow.id) == bindparam("id")))
_TEAM_EXISTS = hot(select(col(TeamRow.id)).where(col(TeamRow.id) == bindparam("id")))
_ASSET_EXISTS = hot(select(col(AssetRow.id)).where(col(AssetRow.id) == bindparam("id")))
_ASSET_BY_ID = hot(select(AssetRow).where(col(AssetRow.id) == bindparam("id")))
_ASSET_BY = {
    "sn": hot(select(AssetRow).where(col(AssetRow.sn_key) == bindparam("key"))),
    "vin": hot(select(AssetRow).where(col(AssetRow.vin) == bindparam("key"))),
    "plate": hot(select(AssetRow).where(col(AssetRow.plate) == bindparam("key"))),
}
# Who holds any of an asset's keys (several keys: several index probes, one statement).
_KEY_HOLDERS = hot(select(col(AssetRow.id), col(AssetRow.sn_key), col(AssetRow.vin), col(AssetRow.plate)).where(
    or_(col(AssetRow.sn_key) == bindparam("sn"), col(AssetRow.vin) == bindparam("vin"),
        col(AssetRow.plate) == bindparam("plate"))))
_UPDATE_ASSET = hot(update(AssetRow).where(col(AssetRow.id) == bindparam("w_id")))
_UPDATE_STORE = hot(update(StoreRow).where(col(StoreRow.id) == bindparam("w_id")))
_UPDATE_TEAM = hot(update(TeamRow).where(col(TeamRow.id) == bindparam("w_id")))
_UPDATE_CUSTOMER = hot(update(CustomerRow).where(col(CustomerRow.person_id) == bindparam("w_id")))
_UPDATE_CONTRACT = hot(update(ContractRow).where(col(ContractRow.number) == bindparam("w_id")))
_INSERT_PERSON = hot(insert(PersonRow))
_UPDATE_PERSON_AS_CUSTOMER = hot(update(PersonRow).where(col(PersonRow.id) == bindparam("w_id")))
_CUSTOMER_BY_ID = hot(select(CustomerRow, col(PersonRow.name)).join(
    PersonRow, col(PersonRow.id) == CustomerRow.person_id).where(col(CustomerRow.person_id) == bindparam("id")))
_CUSTOMERS_BY_PHONE = hot(select(CustomerRow, col(PersonRow.name))
                          .join(CustomerPhoneRow, col(CustomerPhoneRow.person_id) == CustomerRow.person_id)
                          .join(PersonRow, col(PersonRow.id) == CustomerRow.person_id)
                          .where(col(CustomerPhoneRow.phone) == bindparam("phone"))
                          .order_by(col(CustomerRow.person_id)))
_DELETE_PHONES = hot(delete(CustomerPhoneRow).where(col(CustomerPhoneRow.person_id) == bindparam("person_id")))
_INSERT_PHONES = hot(insert(CustomerPhoneRow))
_CONTRACT_ASSETS = hot(select(col(ContractAssetRow.asset_id)).where(
    col(ContractAssetRow.contract_number) == bindparam("number")).order_by(col(ContractAssetRow.asset_id)))
_DELETE_CONTRACT_ASSETS = hot(delete(ContractAssetRow).where(
    col(ContractAssetRow.contract_number) == bindparam("number")))
_INSERT_CONTRACT_ASSETS = hot(insert(ContractAssetRow))
_UPDATE_STAFF = hot(update(PersonRow).where(col(PersonRow.id) == bindparam("w_id")))
_REACH_ON = hot(update(PersonRow).where(col(PersonRow.id) == bindparam("w_id"),
                                        col(PersonRow.preferred_channel) == "local"))
_DROP_OTHER_IDENTITY = hot(delete(IdentityRow).where(
    col(IdentityRow.person_id) == bindparam("person_id"), col(IdentityRow.platform) == bindparam("platform"),
    col(IdentityRow.external_id) != bindparam("external_id")))
_UPSERTS: dict[str, dict[str, Any]] = {}


def _inserts(dialect: str) -> dict[str, Any]:
    """INSERT ... ON CONFLICT (key) DO NOTHING RETURNING key, per table: a row back means created."""
    if dialect not in _UPSERTS:
        make = postgresql.insert if dialect == "postgresql" else sqlite.insert
        _UPSERTS[dialect] = {
            name: hot(make(table).on_conflict_do_nothing(index_elements=[key]).returning(getattr(table, key)))
            for name, table, key in (("store", StoreRow, "id"), ("team", TeamRow, "id"),
                                     ("customer", CustomerRow, "person_id"), ("asset", AssetRow, "id"),
                                     ("contract", ContractRow, "number"), ("person", PersonRow, "id"),
                                     ("technician", TechnicianRow, "person_id"))}
        identity = make(IdentityRow)
        _UPSERTS[dialect]["identity"] = hot(identity.on_conflict_do_update(
            index_elements=["platform", "external_id"], set_={"person_id": identity.excluded.person_id}))
    return _UPSERTS[dialect]


def _check_coordinates(lat: float | None, lng: float | None, what: str) -> None:
    if (lat is None) != (lng is None):
        raise InvalidInput(f"{what}的纬度和经度要一起填写", field="lat" if lat is None else "lng")
    if lat is not None and not -90 <= lat <= 90:
        raise InvalidInput(f"{what}的纬度 {lat} 超出范围（-90 到 90）", field="lat")
    if lng is not None and not -180 <= lng <= 180:
        raise InvalidInput(f"{what}的经度 {lng} 超出范围（-180 到 180）", field="lng")


def _store_record(row: Row[Any]) -> StoreRecord:
    return StoreRecord(code=row.id, name=row.name, address=row.address, lat=row.lat, lng=row.lng,
                       opening_hours=row.opening_hours, phone=row.phone, active=row.active)


def _team_record(row: Row[Any]) -> TeamRecord:
    return TeamRecord(code=row.id, name=row.name, store_code=row.store_id, leader_id=row.leader_id, active=row.active)


def _customer_record(row: Any) -> CustomerRecord:
    return CustomerRecord(
        id=row.person_id, name=row.name, phones=tuple(row.phones or ()),
        addresses=tuple(Address.from_dict(a) for a in row.addresses or () if isinstance(a, dict)),
        company=row.company, service_level=row.service_level, store_code=row.store_id,
        forgotten_at=row.forgotten_at)


def _asset_record(row: Row[Any]) -> AssetRecord:
    return AssetRecord(id=row.id, sn=row.sn_key, vin=row.vin, plate=row.plate, brand=row.brand, model=row.model,
                       store_code=row.store_id, customer_id=row.customer_id, installed_on=row.installed_on,
                       purchased_on=row.purchased_on, warranty_end=row.warranty_end, params=dict(row.params or {}),
                       display_id=row.display_id)


class SqlMasterDataStore:
    def __init__(self, connection: Callable[[], Awaitable[AsyncConnection]], *,
                 write_tickets: Callable[[], Awaitable[None]] | None = None,
                 people_changed: Callable[[], None] = lambda: None) -> None:
        """`write_tickets`: the unit of work's unwritten tickets, written before tickets are read.
        `people_changed` is told before this store changes people rows (the unit of work caches them)."""
        self._connection = connection
        self._write_tickets = write_tickets
        self._people_changed = people_changed
        # Stores and customers seen to exist in this transaction (nothing deletes them): a bulk
        # import checks the same few stores for every row.
        self._known_stores: set[str] = set()
        self._known_customers: set[str] = set()

    async def _dialect(self) -> str:
        return str((await self._connection()).dialect.name)

    async def _insert(self, name: str, values: dict[str, Any]) -> bool:
        conn = await self._connection()
        return (await conn.execute(_inserts(conn.dialect.name)[name], values)).first() is not None

    # --- references ---
    async def _require_store(self, code: str | None, what: str = "门店") -> None:
        if code is None or code in self._known_stores:
            return
        if (await (await self._connection()).execute(_STORE_EXISTS, {"id": code})).first() is None:
            raise InvalidInput(f"{what}「{code}」不存在，请先导入门店", field="store", store=code)
        self._known_stores.add(code)

    async def _require_customer(self, person_id: str | None) -> None:
        if person_id is None or person_id in self._known_customers:
            return
        role = (await (await self._connection()).execute(_ROLE_OF, {"id": person_id})).scalar_one_or_none()
        if role != Role.CUSTOMER.value:
            raise InvalidInput(f"客户「{person_id}」不存在，请先导入客户", field="customer", customer=person_id)
        self._known_customers.add(person_id)

    # --- stores ---
    async def upsert_store(self, store: StoreRecord) -> bool:
        if not store.code.strip() or not store.name.strip():
            raise InvalidInput("门店编号和名称不能为空", field="code" if not store.code.strip() else "name")
        if store.lat is None or store.lng is None:
            raise InvalidInput(f"门店「{store.code}」缺少坐标（纬度、经度）：派单按门店位置计算距离",
                               field="lat" if store.lat is None else "lng")
        _check_coordinates(store.lat, store.lng, f"门店「{store.code}」")
        values = {"name": store.name, "lat": store.lat, "lng": store.lng, "address": store.address,
                  "opening_hours": store.opening_hours, "phone": store.phone, "active": store.active}
        created = await self._insert("store", {"id": store.code, **values})
        if not created:
            await (await self._connection()).execute(_UPDATE_STORE, {"w_id": store.code, **values})
        self._known_stores.add(store.code)
        return created

    async def get_store(self, code: str) -> StoreRecord | None:
        row = (await (await self._connection()).execute(select(StoreRow).where(col(StoreRow.id) == code))).first()
        return _store_record(row) if row else None

    async def list_stores(self) -> list[StoreRecord]:
        rows = await (await self._connection()).execute(select(StoreRow).order_by(col(StoreRow.id)))
        return [_store_record(r) for r in rows]

    # --- teams ---
    async def upsert_team(self, team: TeamRecord) -> bool:
        if not team.code.strip() or not team.name.strip():
            raise InvalidInput("班组编号和名称不能为空", field="code" if not team.code.strip() else "name")
        await self._require_store(team.store_code)
        if team.leader_id is not None and (await (await self._connection()).execute(
                _ROLE_OF, {"id": team.leader_id})).first() is None:
            raise InvalidInput(f"班组长「{team.leader_id}」不存在", field="leader", person=team.leader_id)
        values = {"name": team.name, "store_id": team.store_code, "leader_id": team.leader_id, "active": team.active}
        created = await self._insert("team", {"id": team.code, **values})
        if not created:
            await (await self._connection()).execute(_UPDATE_TEAM, {"w_id": team.code, **values})
        return created

    async def get_team(self, code: str) -> TeamRecord | None:
        row = (await (await self._connection()).execute(select(TeamRow).where(col(TeamRow.id) == code))).first()
        return _team_record(row) if row else None

    async def list_teams(self, store_code: str | None = None) -> list[TeamRecord]:
        stmt = select(TeamRow).order_by(col(TeamRow.id))
        if store_code is not None:
            stmt = stmt.where(col(TeamRow.store_id) == store_code)
        return [_team_record(r) for r in await (await self._connection()).execute(stmt)]

    async def set_person_team(self, person_id: str, team_code: str | None) -> bool:
        conn = await self._connection()
        if team_code is not None and (await conn.execute(_TEAM_EXISTS, {"id": team_code})).first() is None:
            raise InvalidInput(f"班组「{team_code}」不存在", field="team", team=team_code)
        self._people_changed()
        result = await conn.execute(update(PersonRow).where(col(PersonRow.id) == person_id).values(team_id=team_code))
        return result.rowcount == 1

    async def person_team(self, person_id: str) -> str | None:
        return (await (await self._connection()).execute(
            select(col(PersonRow.team_id)).where(col(PersonRow.id) == person_id))).scalar_one_or_none()

    async def identities_on(self, platform: str) -> dict[str, str]:
        # The directory sync (H3): who is linked to the platform, to find who is gone from it.
        rows = await (await self._connection()).execute(
            select(col(IdentityRow.external_id), col(IdentityRow.person_id))
            .where(col(IdentityRow.platform) == platform))
        return {r.external_id: r.person_id for r in rows}

    async def upsert_person(self, person: PersonRecord, *, at: datetime) -> bool:
        if not person.id.strip() or not person.name.strip():
            raise InvalidInput("工号和姓名不能为空", field="id" if not person.id.strip() else "name")
        if person.role == Role.CUSTOMER:
            raise InvalidInput("客户请用客户导入（ticketbot import customers）", field="role")
        conn = await self._connection()
        role = (await conn.execute(_ROLE_OF, {"id": person.id})).scalar_one_or_none()
        if role == Role.CUSTOMER.value:
            raise InvalidInput(f"编号「{person.id}」属于客户，不能作为员工导入", field="id", person=person.id)
        await self._require_store(person.store_code)
        if person.team_code is not None and (await conn.execute(
                _TEAM_EXISTS, {"id": person.team_code})).first() is None:
            raise InvalidInput(f"班组「{person.team_code}」不存在，请先导入班组", field="team", team=person.team_code)
        self._people_changed()
        platforms = [p for p, _ in person.identities if p != "local"]
        values = {"name": person.name, "role": person.role.value, "phone": person.phone,
                  "store_id": person.store_code, "supervisor_id": person.supervisor_id, "active": person.active,
                  "team_id": person.team_code, "title": person.title}
        created = await self._insert("person", {
            "id": person.id, **values, "created_at": at,
            # Someone who never wrote to the bot is reached on the platform the import names.
            "preferred_channel": platforms[0] if platforms else "local"})
        if not created:
            await conn.execute(_UPDATE_STAFF, {"w_id": person.id, **values})
            if platforms:
                await conn.execute(_REACH_ON, {"w_id": person.id, "preferred_channel": platforms[0]})
        identities = dict(person.identities)
        if created:
            identities = {"local": person.id, **identities}  # the playground signs in by person id
        upsert_identity = _inserts(conn.dialect.name)["identity"]
        for platform, external in identities.items():
            # One id per platform and person: a new id replaces the old one (the outbox looks it up).
            await conn.execute(_DROP_OTHER_IDENTITY, {"person_id": person.id, "platform": platform,
                                                      "external_id": external})
            await conn.execute(upsert_identity, {"platform": platform, "external_id": external,
                                                 "person_id": person.id})
        if person.role == Role.TECHNICIAN:
            # Dispatch reads technicians through this row: defaults until `ticketbot import technicians`
            # or 技师 修改 set skills and certificates.
            await self._insert("technician", {
                "person_id": person.id, "certifications": [], "skills": [], "excluded_categories": [],
                "last_lat": None, "last_lng": None, "last_position_at": None, "on_duty": True, "max_load": 5,
                "rating_sum": 0.0, "rating_count": 0})
        return created

    # --- customers ---
    async def upsert_customer(self, customer: CustomerRecord, *, at: datetime) -> bool:
        if not customer.id.strip() or not customer.name.strip():
            raise InvalidInput("客户编号和姓名不能为空", field="id" if not customer.id.strip() else "name")
        for address in customer.addresses:
            _check_coordinates(address.lat, address.lng, f"地址「{address.label or address.text}」")
        await self._require_store(customer.store_code)
        conn = await self._connection()
        role = (await conn.execute(_ROLE_OF, {"id": customer.id})).scalar_one_or_none()
        if role is not None and role != Role.CUSTOMER.value:
            raise InvalidInput(f"编号「{customer.id}」属于员工，不能作为客户导入", field="id", person=customer.id)
        self._people_changed()
        phone = customer.phones[0] if customer.phones else None
        if role is None:
            await conn.execute(_INSERT_PERSON, {
                "id": customer.id, "name": customer.name, "role": Role.CUSTOMER.value, "phone": phone,
                "store_id": customer.store_code, "supervisor_id": None, "preferred_channel": "local", "active": True,
                "created_at": at})
        else:
            await conn.execute(_UPDATE_PERSON_AS_CUSTOMER, {
                "w_id": customer.id, "name": customer.name, "phone": phone, "store_id": customer.store_code})
        values = {"phones": list(customer.phones), "addresses": [a.to_dict() for a in customer.addresses],
                  "company": customer.company, "service_level": customer.service_level,
                  "store_id": customer.store_code, "forgotten_at": customer.forgotten_at, "updated_at": at}
        created = await self._insert("customer", {"person_id": customer.id, **values})
        if not created:
            await conn.execute(_UPDATE_CUSTOMER, {"w_id": customer.id, **values})
        await conn.execute(_DELETE_PHONES, {"person_id": customer.id})
        phones = list(dict.fromkeys(customer.phones))
        if phones:
            await conn.execute(_INSERT_PHONES, [{"phone": p, "person_id": customer.id} for p in phones])
        self._known_customers.add(customer.id)
        # "created": the customer's master data is new (a person who only chatted before counts as new).
        return created

    async def get_customer(self, person_id: str) -> CustomerRecord | None:
        row = (await (await self._connection()).execute(_CUSTOMER_BY_ID, {"id": person_id})).first()
        return _customer_record(row) if row else None

    async def customers_by_phone(self, phone: str) -> list[CustomerRecord]:
        rows = await (await self._connection()).execute(_CUSTOMERS_BY_PHONE, {"phone": phone})
        return [_customer_record(r) for r in rows]

    async def forget_customer(self, person_id: str, *, at: datetime) -> bool:
        conn = await self._connection()
        role = (await conn.execute(_ROLE_OF, {"id": person_id})).scalar_one_or_none()
        if role != Role.CUSTOMER.value:
            return False
        self._people_changed()
        await conn.execute(update(PersonRow).where(col(PersonRow.id) == person_id).values(
            name=FORGOTTEN_NAME, phone=None, active=False))
        erased = {"phones": [], "addresses": [], "company": "", "forgotten_at": at, "updated_at": at}
        if not await self._insert("customer", {"person_id": person_id, "service_level": "", "store_id": None,
                                               **erased}):
            await conn.execute(_UPDATE_CUSTOMER, {"w_id": person_id, **erased})
        await conn.execute(_DELETE_PHONES, {"person_id": person_id})
        await conn.execute(delete(IdentityRow).where(col(IdentityRow.person_id) == person_id))
        return True

    # --- assets ---
    async def upsert_asset(self, asset: AssetRecord) -> bool:
        if not asset.id.strip():
            raise InvalidInput("设备编号不能为空", field="id")
        await self._require_store(asset.store_code)
        await self._require_customer(asset.customer_id)
        conn = await self._connection()
        if asset.sn or asset.vin or asset.plate:
            holders = await conn.execute(_KEY_HOLDERS, {"sn": asset.sn, "vin": asset.vin, "plate": asset.plate})
            for holder in holders:
                if holder.id == asset.id:
                    continue
                field, key = next((f, k) for f, k, held in (("sn", asset.sn, holder.sn_key),
                                                            ("vin", asset.vin, holder.vin),
                                                            ("plate", asset.plate, holder.plate))
                                  if k is not None and k == held)
                raise InvalidInput(f"「{key}」已登记在设备「{holder.id}」上", field=field, asset=holder.id)
        values = {"sn_key": asset.sn, "vin": asset.vin, "plate": asset.plate, "display_id": asset.display_id,
                  "brand": asset.brand, "model": asset.model, "store_id": asset.store_code,
                  "customer_id": asset.customer_id, "installed_on": asset.installed_on,
                  "purchased_on": asset.purchased_on, "warranty_end": asset.warranty_end,
                  "params": dict(asset.params)}
        created = await self._insert("asset", {"id": asset.id, **values})
        if not created:
            await conn.execute(_UPDATE_ASSET, {"w_id": asset.id, **values})
        return created

    async def get_asset(self, asset_id: str) -> AssetRecord | None:
        row = (await (await self._connection()).execute(_ASSET_BY_ID, {"id": asset_id})).first()
        return _asset_record(row) if row else None

    async def find_asset(self, kind: AssetKey, key: str) -> AssetRecord | None:
        conn = await self._connection()
        for k in ("sn", "plate", "vin") if kind == "any" else (kind,):
            row = (await conn.execute(_ASSET_BY[k], {"key": key})).first()
            if row is not None:
                return _asset_record(row)
        return None

    async def assets_of_customer(self, person_id: str) -> list[AssetRecord]:
        rows = await (await self._connection()).execute(
            select(AssetRow).where(col(AssetRow.customer_id) == person_id).order_by(col(AssetRow.id)))
        return [_asset_record(r) for r in rows]

    async def assets_with_warranty_ending(self, start: date, end: date) -> list[AssetRecord]:
        rows = await (await self._connection()).execute(
            select(AssetRow).where(col(AssetRow.warranty_end) >= start, col(AssetRow.warranty_end) <= end)
            .order_by(col(AssetRow.warranty_end), col(AssetRow.id)))
        return [_asset_record(r) for r in rows]

    # --- contracts ---
    async def upsert_contract(self, contract: ContractRecord) -> bool:
        if not contract.number.strip():
            raise InvalidInput("合同编号不能为空", field="number")
        if contract.valid_to < contract.valid_from:
            raise InvalidInput(f"合同「{contract.number}」的结束日期早于开始日期", field="valid_to")
        await self._require_customer(contract.customer_id)
        conn = await self._connection()
        asset_ids = list(dict.fromkeys(contract.asset_ids))
        for asset_id in asset_ids:
            if (await conn.execute(_ASSET_EXISTS, {"id": asset_id})).first() is None:
                raise InvalidInput(f"设备「{asset_id}」不存在，请先导入设备", field="assets", asset=asset_id)
        values = {"customer_id": contract.customer_id, "level": contract.level,
                  "valid_from": contract.valid_from, "valid_to": contract.valid_to}
        created = await self._insert("contract", {"number": contract.number, **values})
        if not created:
            await conn.execute(_UPDATE_CONTRACT, {"w_id": contract.number, **values})
            await conn.execute(_DELETE_CONTRACT_ASSETS, {"number": contract.number})
        if asset_ids:
            await conn.execute(_INSERT_CONTRACT_ASSETS,
                               [{"contract_number": contract.number, "asset_id": a} for a in asset_ids])
        return created

    async def _contracts(self, stmt: Any) -> list[ContractRecord]:
        conn = await self._connection()
        out = []
        for row in (await conn.execute(stmt)).all():
            assets = tuple((await conn.execute(_CONTRACT_ASSETS, {"number": row.number})).scalars())
            out.append(ContractRecord(number=row.number, customer_id=row.customer_id, asset_ids=assets,
                                      level=row.level, valid_from=row.valid_from, valid_to=row.valid_to))
        return out

    async def get_contract(self, number: str) -> ContractRecord | None:
        found = await self._contracts(select(ContractRow).where(col(ContractRow.number) == number))
        return found[0] if found else None

    async def contracts_for_asset(self, asset_id: str) -> list[ContractRecord]:
        return await self._contracts(
            select(ContractRow).join(ContractAssetRow, col(ContractAssetRow.contract_number) == ContractRow.number)
            .where(col(ContractAssetRow.asset_id) == asset_id).order_by(col(ContractRow.valid_to).desc()))

    async def contracts_of_customer(self, person_id: str) -> list[ContractRecord]:
        return await self._contracts(select(ContractRow).where(col(ContractRow.customer_id) == person_id)
                                     .order_by(col(ContractRow.valid_to).desc()))

    async def contracts_ending(self, start: date, end: date) -> list[ContractRecord]:
        return await self._contracts(select(ContractRow).where(
            col(ContractRow.valid_to) >= start, col(ContractRow.valid_to) <= end).order_by(col(ContractRow.valid_to)))

    # --- history ---
    async def recent_tickets_of_asset(self, asset_id: str, limit: int = 3) -> list[Ticket]:
        from storage.unit_of_work import ticket_from_row  # the unit of work builds this store

        if self._write_tickets is not None:
            await self._write_tickets()
        rows = await (await self._connection()).execute(
            select(TicketRow).where(col(TicketRow.asset_id) == asset_id)
            .order_by(col(TicketRow.created_at).desc(), col(TicketRow.id).desc()).limit(limit))
        return [ticket_from_row(r) for r in rows]


