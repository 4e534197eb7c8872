"""Master-data records: stores, teams, customers, assets, service contracts. Frozen values; storage
persists them (storage/masterdata.py), import and the chat commands build them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from core.model import Role

FORGOTTEN_NAME = "已注销客户"


@dataclass(frozen=True, slots=True)
class StoreRecord:
    """A store or site; `code` is its id (the `stores` table's key, people's store_id)."""

    code: str
    name: str
    address: str = ""
    lat: float | None = None  # required by storage: dispatch measures distances from the store
    lng: float | None = None
    opening_hours: str = ""  # free text, e.g. 周一至周六 9:00-18:00
    phone: str = ""
    active: bool = True


@dataclass(frozen=True, slots=True)
class TeamRecord:
    code: str
    name: str
    store_code: str | None = None
    leader_id: str | None = None
    active: bool = True


@dataclass(frozen=True, slots=True)
class PersonRecord:
    """A member of staff as the organisation lists them (people import, directory sync).
    `identities`: (platform, external id) pairs, one per platform."""

    id: str
    name: str
    role: Role
    phone: str | None = None
    store_code: str | None = None
    team_code: str | None = None
    supervisor_id: str | None = None
    title: str | None = None
    active: bool = True
    identities: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Address:
    label: str  # 家, 公司, 仓库 ...
    text: str
    lat: float | None = None
    lng: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "text": self.text, "lat": self.lat, "lng": self.lng}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Address:
        return cls(label=str(data.get("label") or ""), text=str(data.get("text") or ""),
                   lat=data.get("lat"), lng=data.get("lng"))


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    """A customer IS a person with Role.CUSTOMER: `id` is the person id. `phones` are normalised
    (core.masterdata.identifiers.normalise_phone); the first is also the person's phone."""

    id: str
    name: str
    phones: tuple[str, ...] = ()
    addresses: tuple[Address, ...] = ()
    company: str = ""
    service_level: str = ""
    store_code: str | None = None
    forgotten_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AssetRecord:
    """A device or vehicle. `sn` is stored normalised (normalise_sn), `vin` and `plate` too; each
    is unique among assets. `display_id` keeps what the customer or importer wrote."""

    id: str
    sn: str | None = None
    vin: str | None = None
    plate: str | None = None
    brand: str = ""
    model: str = ""
    store_code: str | None = None
    customer_id: str | None = None
    installed_on: date | None = None
    purchased_on: date | None = None
    warranty_end: date | None = None
    params: dict[str, Any] = field(default_factory=dict)  # technical parameters, as data
    display_id: str = ""

    def in_warranty(self, today: date) -> bool | None:
        """None when the warranty end is unknown; the end day itself is still covered."""
        return None if self.warranty_end is None else today <= self.warranty_end

    def key(self) -> str:
        """The normalised identifier a person would quote: SN, else plate, else VIN, else the id."""
        return self.sn or self.plate or self.vin or self.id


@dataclass(frozen=True, slots=True)
class ContractRecord:
    """A service contract: `asset_ids` are the assets it covers (none: the customer's service)."""

    number: str
    customer_id: str
    asset_ids: tuple[str, ...]
    level: str
    valid_from: date
    valid_to: date  # the last day covered

    def valid_on(self, day: date) -> bool:
        return self.valid_from <= day <= self.valid_to

    def to_dict(self, today: date) -> dict[str, Any]:
        return {"number": self.number, "level": self.level, "valid_from": self.valid_from.isoformat(),
                "valid_to": self.valid_to.isoformat(), "valid": self.valid_on(today)}


def generated_asset_id(key: str) -> str:
    """The id of an asset imported without an asset code: `A-` + its normalised SN/VIN/plate."""
    return f"A-{key}"
