"""Intake prefill: what master data knows about a new report, read before the ticket exists.

Called by core/intake (receive_report → create_ticket) before the ticket is inserted, so the SLA
clock and dispatch (the @after_create hooks) see a ticket that already carries its store, asset,
site and contract — dispatch's distance term is real from the first offer.

* **Customer**: the reporting person's customer record (same person id: imported customers, or a
  chat identity linked to one); else, when the report quotes a mobile number, the one customer
  holding it (`customers_by_phone`). A typed phone is no proof of identity: it only *prefills*
  (store, addresses, contracts, assets) and is recorded as `matched_by: "phone"`; the ticket's
  customer stays the person who wrote, and no chat identity is linked.
* **Asset**: the number given with `设备编号 X` (or `设备编号是 X` in the text), then every plate,
  VIN and SN in the text (core.masterdata.identifiers.find_identifiers), each one index probe, the
  first found wins. The ticket's subject becomes the asset's display id; an unknown plate or VIN is
  still the subject (normalised), so repeats and first-time-fix compare like with like.
* **Site**: a position given with the report or sent just before it (`pending`), else the
  customer's default address (labelled 默认) or first address with coordinates, else unknown (the
  bot then asks once).
* **Store**: the asset's, else the customer's, else the person's, else the store nearest the site.
* **Contract / warranty**: a valid contract covering the asset, else a valid contract of the
  customer not tied to other assets; else the one that ended last (valid false). Warranty from the
  asset's warranty end (the end day is covered).

The hot path (a customer without master data, a text without identifiers) costs one primary-key
probe (`get_customer`) and a few regular expressions; a first message (the person stored by the
running command: no customer record can be theirs) skips the probe, and a text of Chinese words
and punctuation only (`_WORDS_ONLY`: no letter or digit, so no phone or identifier) the searches.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from core.masterdata.identifiers import (
    find_identifiers,
    is_vin,
    mask_phone,
    normalise_phone,
    normalise_plate,
    normalise_sn,
    normalise_vin,
)
from core.masterdata.model import AssetRecord, ContractRecord, CustomerRecord, StoreRecord
from core.masterdata.store import MasterDataStore
from core.model import Person

MASTERDATA = "masterdata"  # ticket.data key
# A mainland mobile number in free text (+86 / 86 allowed, spaces or dashes between digits).
PHONE_IN_TEXT = re.compile(r"(?<![\d])(?:\+?86[\s-]?)?(1[3-9]\d(?:[\s-]?\d){8})(?![\d])")
EARTH_RADIUS_KM = 6371.0088
# A text of CJK ideographs, CJK and full-width punctuation and spaces only. NFKC (which every
# identifier search starts with) maps none of these to an ASCII letter or digit, and every phone,
# plate, VIN and SN has one, so such a text names none: its searches are skipped. Full-width
# letters and digits (FF10-FF19, FF21-FF3A, FF41-FF5A) are NOT in the set.
_WORDS_ONLY = re.compile(r"[\s\u3000-\u303f\u4e00-\u9fff\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]*")
SN_KEY = re.compile(r"[A-Z0-9]+")  # what is left of a serial number once normalised
DEFAULT_LABELS = ("默认", "default")
# location_source values (docs/masterdata.md)
FROM_MESSAGE = "location_message"
FROM_CUSTOMER_ADDRESS = "customer_address"
FROM_GEOCODE = "geocoded"
# What a customer sent just before reporting waits in a per-person timer row (core/intake/details.py).
PENDING_KIND = "intake.pending"


def pending_key(person_id: str) -> str:
    """The timer's ticket key for a person ("@" + id; hashed when too long for the column)."""
    key = "@" + person_id
    return key if len(key) <= 64 else "@" + hashlib.sha256(person_id.encode()).hexdigest()[:40]


@dataclass(slots=True)
class Recognised:
    """Who reported and about what, as master data knows them."""

    customer: CustomerRecord | None = None
    matched_by: str | None = None  # "identity" | "phone"
    asset: AssetRecord | None = None
    said: tuple[str, str] | None = None  # the first identifier given (kind, normalised), known or not
    explicit: str = ""  # what the customer wrote after 设备编号

    @property
    def subject(self) -> str:
        """What the ticket is about, as a person would quote it."""
        if self.asset is not None:
            return (self.asset.display_id or self.asset.key())[:64]
        if self.said is not None and self.said[0] in {"plate", "vin"}:
            return self.said[1]  # unknown, but unambiguous: the normalised form
        return self.explicit[:64]

    @property
    def asset_key(self) -> str | None:
        """The normalised asset a report is about ("kind:key"), known to master data or not."""
        if self.asset is not None:
            return f"asset:{self.asset.id}"
        return f"{self.said[0]}:{self.said[1]}" if self.said is not None else None


@dataclass(slots=True)
class Facts:
    """What the new ticket carries from master data."""

    store_id: str | None = None
    asset_id: str | None = None
    subject: str = ""
    site_lat: float | None = None
    site_lng: float | None = None
    data: dict[str, Any] = field(default_factory=dict)  # ticket.data["masterdata"]

    @property
    def site_known(self) -> bool:
        return self.site_lat is not None and self.site_lng is not None


def identifier_of(text: str) -> tuple[str, str] | None:
    """How a number given on its own (设备编号 X) is looked up: plate, VIN, else SN."""
    text = text.strip()
    if not text:
        return None
    plate = normalise_plate(text)
    if plate is not None:
        return ("plate", plate)
    if is_vin(text):
        return ("vin", normalise_vin(text))
    try:
        key = normalise_sn(text)
    except ValueError:
        return None
    return ("sn", key) if SN_KEY.fullmatch(key) else None


def phone_in(text: str) -> str | None:
    match = PHONE_IN_TEXT.search(text)
    return normalise_phone(match.group(1)) if match else None


async def recognise(md: MasterDataStore, person: Person, text: str, explicit: str = "", *,
                    new_person: bool = False) -> Recognised:
    """The customer record and the asset of a report (see the module docstring). `new_person`: the
    person was stored by the running command (a first message), so no customer record is theirs."""
    found = Recognised(explicit=explicit.strip())
    customer = None if new_person else await md.get_customer(person.id)
    # Most reports are words only: no phone and no identifier can be in them (exact, see _WORDS_ONLY).
    words_only = _WORDS_ONLY.fullmatch(text) is not None
    if customer is not None and customer.forgotten_at is None:
        found.customer, found.matched_by = customer, "identity"
    elif not words_only:
        phone = phone_in(text)
        if phone is not None:
            holders = [c for c in await md.customers_by_phone(phone) if c.forgotten_at is None]
            if len(holders) == 1:  # two customers sharing a phone: no guess
                found.customer, found.matched_by = holders[0], "phone"
    keys: list[tuple[str, str]] = []
    given = identifier_of(found.explicit) if found.explicit else None
    if given is not None:
        keys.append(given)
    if not words_only:
        keys += [k for k in find_identifiers(text) if k not in keys]
    if keys:
        found.said = keys[0]
    for kind, key in keys:
        asset = await md.find_asset(kind, key)  # type: ignore[arg-type]
        if asset is not None:
            found.asset, found.said = asset, (kind, key)
            break
    return found


def _km(a_lat: float, a_lng: float, b_lat: float, b_lng: float) -> float:
    # The distance maths of dispatch lives in core/dispatch/geo.py, a layer above master data;
    # choosing the nearest store only needs this ranking.
    p1, p2 = math.radians(a_lat), math.radians(b_lat)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(b_lng - a_lng) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))


def nearest_store(stores: list[StoreRecord], lat: float, lng: float) -> StoreRecord | None:
    placed = [s for s in stores if s.active and s.lat is not None and s.lng is not None]
    return min(placed, key=lambda s: _km(lat, lng, s.lat or 0.0, s.lng or 0.0), default=None)


def pick_contract(contracts: list[ContractRecord], today: date) -> ContractRecord | None:
    """A valid contract (the one running longest), else the one that ended last."""
    valid = [c for c in contracts if c.valid_on(today)]
    if valid:
        return max(valid, key=lambda c: (c.valid_to, c.number))
    ended = [c for c in contracts if c.valid_to < today]
    return max(ended, key=lambda c: (c.valid_to, c.number), default=None)


async def contract_for(md: MasterDataStore, customer: CustomerRecord | None, asset: AssetRecord | None,
                       today: date) -> ContractRecord | None:
    contracts = await md.contracts_for_asset(asset.id) if asset is not None else []
    if not any(c.valid_on(today) for c in contracts) and customer is not None:
        contracts += [c for c in await md.contracts_of_customer(customer.id)
                      if not c.asset_ids or (asset is not None and asset.id in c.asset_ids)]
    return pick_contract(contracts, today)


def warranty_of(asset: AssetRecord | None, today: date) -> dict[str, Any] | None:
    if asset is None or asset.warranty_end is None:
        return None
    return {"end": asset.warranty_end.isoformat(), "in_warranty": today <= asset.warranty_end}


def customer_snapshot(person: Person, found: Recognised) -> dict[str, Any]:
    """Who the customer was when they reported: name and masked phone only (PIPL: the full number
    stays in the directory, where `customer forget` erases it; retention purges this copy)."""
    record = found.customer
    phone = (record.phones[0] if record is not None and record.phones else None) or person.phone
    snapshot: dict[str, Any] = {"id": record.id if record is not None else person.id,
                                "name": record.name if record is not None else person.name,
                                "phone": mask_phone(phone) or None, "matched_by": found.matched_by}
    if record is not None and record.company:
        snapshot["company"] = record.company
    if record is not None and record.service_level:
        snapshot["service_level"] = record.service_level
    return snapshot


async def prefill(md: MasterDataStore, person: Person, found: Recognised, *, today: date,
                  lat: float | None = None, lng: float | None = None) -> Facts:
    """The facts of a new ticket. `lat`/`lng`: a position given with the report or sent just before it."""
    customer, asset = found.customer, found.asset
    facts = Facts(asset_id=asset.id if asset is not None else None, subject=found.subject)
    source: str | None = None
    address: str | None = None
    if lat is not None and lng is not None:
        facts.site_lat, facts.site_lng, source = lat, lng, FROM_MESSAGE
    elif customer is not None:
        # The default address first (labelled 默认/default), else the first with coordinates.
        ordered = sorted(customer.addresses, key=lambda a: not any(w in a.label.casefold() for w in DEFAULT_LABELS))
        located = next((a for a in ordered if a.lat is not None and a.lng is not None), None)
        if located is not None:
            facts.site_lat, facts.site_lng, source, address = located.lat, located.lng, FROM_CUSTOMER_ADDRESS, \
                located.text or None
        elif customer.addresses:
            address = customer.addresses[0].text or None  # text only: still worth showing the technician
    store = (asset.store_code if asset is not None else None) or (customer.store_code if customer else None) \
        or person.store_id
    if store is None and facts.site_lat is not None and facts.site_lng is not None:
        near = nearest_store(await md.list_stores(), facts.site_lat, facts.site_lng)
        store = near.code if near is not None else None
    facts.store_id = store
    contract = await contract_for(md, customer, asset, today) if customer is not None or asset is not None else None
    facts.data = {
        "customer": customer_snapshot(person, found),
        "asset": None if asset is None else {"id": asset.id, "display_id": found.subject, "brand": asset.brand,
                                             "model": asset.model},
        "asset_key": found.asset_key,
        "contract": contract.to_dict(today) if contract is not None else None,
        "warranty": warranty_of(asset, today),
        "address": address,
        "location_source": source,
    }
    return facts
