"""MasterDataStore: the persistence port of master data (`uow.masterdata()`), implemented by
storage/masterdata.py on the unit of work's transaction.

Keys handed to lookups are already normalised (core.masterdata.identifiers). Upserts return True
when they created the record, False when they updated it; they refuse (core.errors.InvalidInput)
references to stores, customers or assets that do not exist.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal, Protocol

from core.masterdata.model import (
    AssetRecord,
    ContractRecord,
    CustomerRecord,
    PersonRecord,
    StoreRecord,
    TeamRecord,
)
from core.model import Ticket

AssetKey = Literal["sn", "vin", "plate", "any"]


class MasterDataStore(Protocol):
    # --- stores and teams ---
    async def upsert_store(self, store: StoreRecord) -> bool: ...

    async def get_store(self, code: str) -> StoreRecord | None: ...

    async def list_stores(self) -> list[StoreRecord]: ...

    async def upsert_team(self, team: TeamRecord) -> bool: ...

    async def get_team(self, code: str) -> TeamRecord | None: ...

    async def list_teams(self, store_code: str | None = None) -> list[TeamRecord]: ...

    async def set_person_team(self, person_id: str, team_code: str | None) -> bool:
        """False when there is no such person; InvalidInput for an unknown team."""
        ...

    async def person_team(self, person_id: str) -> str | None: ...

    async def identities_on(self, platform: str) -> dict[str, str]:
        """Everyone linked to `platform`, active or not: external id -> person id (the directory sync, H3)."""
        ...

    async def upsert_person(self, person: PersonRecord, *, at: datetime) -> bool:
        """Staff: the people row (team and title included), one identity per platform given (an
        older id of that platform is replaced), and a technicians row with defaults for a technician
        who has none. InvalidInput for a customer's id, an unknown store or team; the supervisor is
        the caller's to check. A platform id of another person is the caller's to refuse too."""
        ...

    # --- customers (people with Role.CUSTOMER, extended) ---
    async def upsert_customer(self, customer: CustomerRecord, *, at: datetime) -> bool:
        """Also creates or updates the people row (role customer, name, first phone); InvalidInput when
        the id belongs to staff."""
        ...

    async def get_customer(self, person_id: str) -> CustomerRecord | None: ...

    async def customers_by_phone(self, phone: str) -> list[CustomerRecord]: ...

    async def forget_customer(self, person_id: str, *, at: datetime) -> bool:
        """Erase the personal fields (name → 已注销客户, phones, addresses, company), people.phone and
        the platform identities; tickets and the audit trail stay. False when there is no such customer."""
        ...

    # --- assets ---
    async def upsert_asset(self, asset: AssetRecord) -> bool:
        """InvalidInput when its SN/VIN/plate belongs to another asset."""
        ...

    async def get_asset(self, asset_id: str) -> AssetRecord | None: ...

    async def find_asset(self, kind: AssetKey, key: str) -> AssetRecord | None: ...

    async def assets_of_customer(self, person_id: str) -> list[AssetRecord]: ...

    async def assets_with_warranty_ending(self, start: date, end: date) -> list[AssetRecord]:
        """Assets whose warranty ends on a day in [start, end]."""
        ...

    # --- contracts ---
    async def upsert_contract(self, contract: ContractRecord) -> bool: ...

    async def get_contract(self, number: str) -> ContractRecord | None: ...

    async def contracts_for_asset(self, asset_id: str) -> list[ContractRecord]: ...

    async def contracts_of_customer(self, person_id: str) -> list[ContractRecord]: ...

    async def contracts_ending(self, start: date, end: date) -> list[ContractRecord]:
        """Contracts whose last valid day is in [start, end]."""
        ...

    # --- history ---
    async def recent_tickets_of_asset(self, asset_id: str, limit: int = 3) -> list[Ticket]:
        """Newest first."""
        ...
