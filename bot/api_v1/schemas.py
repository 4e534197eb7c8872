"""The request and response models of API v1: they validate every request body and, through
`model_json_schema`, are the OpenAPI document's components (bot/api_v1/openapi.py) — one definition.

Every request model forbids unknown fields (422 naming them)."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Priority = Literal["紧急", "常规", "咨询"]
Impact = Literal["单用户", "部门", "全厂"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CustomerRef(Strict):
    """Who the ticket is for: exactly one way of naming them is needed; `external_key` is the calling
    system's own customer id (remembered after the first use, which must also give `phone`)."""

    id: str | None = Field(default=None, max_length=64, description="Our customer (person) id.")
    phone: str | None = Field(default=None, max_length=32, description="Mobile or landline; an unknown phone "
                                                                        "makes a new customer.")
    external_key: str | None = Field(default=None, max_length=128,
                                     description="The calling system's customer id.")
    name: str | None = Field(default=None, max_length=64, description="Name for a customer made from `phone`.")

    @model_validator(mode="after")
    def _named(self) -> CustomerRef:
        if not (self.id or self.phone or self.external_key):
            raise ValueError("one of id, phone, external_key is required")
        return self


class TicketCreate(Strict):
    description: str = Field(min_length=1, max_length=2000, description="The fault as reported.")
    customer: CustomerRef
    external_ref: str = Field(min_length=1, max_length=128,
                              description="The calling system's id of this ticket (unique per system).")
    store: str | None = Field(default=None, max_length=64, description="Store code.")
    asset: str | None = Field(default=None, max_length=64, description="SN, VIN, plate or asset id.")
    priority: Priority | None = None
    impact: Impact | None = None
    category: str | None = Field(default=None, max_length=64,
                                 description="Optional; the classifier decides when absent.")


class TransitionRequest(Strict):
    name: str = Field(min_length=1, max_length=64, description="A workflow step (accept, complete, cancel, …) "
                                                               "or resolve/close (status lock).")
    reason: str = Field(default="", max_length=200, description="Note or cancel reason.")


class CommentRequest(Strict):
    text: str = Field(min_length=1, max_length=2000)


class TicketOut(BaseModel):
    number: str
    global_id: str = Field(description="UUID, stable for the ticket's life.")
    status: str
    status_label: str
    description: str
    category: str | None
    priority: str
    impact: str
    customer_id: str
    store: str | None
    asset_id: str | None
    assignee_id: str | None
    signed: bool = Field(description="The customer's signature is on record.")
    created_at: str
    updated_at: str
    closed_at: str | None
    external_refs: dict[str, str] = Field(description="{system: that system's id}")
    attachments: list[dict[str, Any]] | None = Field(
        default=None, description="Files API clients attached (GET of one ticket only; not completion evidence).")


class TicketPage(BaseModel):
    items: list[TicketOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")


class CommentOut(BaseModel):
    number: str
    at: str
    by: str
    system: str
    text: str


class Problem(BaseModel):
    """RFC 9457 problem details (application/problem+json)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = Field(default=None, description="[{field, message}] of a 422.")
    allowed: list[str] | None = Field(default=None, description="Steps allowed now (409 on a transition).")


class AddressIn(Strict):
    label: str = Field(default="", max_length=32)
    text: str = Field(min_length=1, max_length=200)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lng: float | None = Field(default=None, ge=-180, le=180)


class CustomerIn(Strict):
    name: str = Field(min_length=1, max_length=64)
    phones: list[str] = Field(default_factory=list, max_length=10)
    addresses: list[AddressIn] = Field(default_factory=list, max_length=10)
    company: str = Field(default="", max_length=128)
    service_level: str = Field(default="", max_length=32)
    store: str | None = Field(default=None, max_length=64)


class AssetIn(Strict):
    sn: str | None = Field(default=None, max_length=64)
    vin: str | None = Field(default=None, max_length=32)
    plate: str | None = Field(default=None, max_length=16)
    brand: str = Field(default="", max_length=64)
    model: str = Field(default="", max_length=64)
    store: str | None = Field(default=None, max_length=64)
    customer_id: str | None = Field(default=None, max_length=64)
    installed_on: date | None = None
    purchased_on: date | None = None
    warranty_end: date | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class ContractIn(Strict):
    customer_id: str = Field(min_length=1, max_length=64)
    asset_ids: list[str] = Field(default_factory=list, max_length=500)
    level: str = Field(min_length=1, max_length=32)
    valid_from: date
    valid_to: date


class StoreIn(Strict):
    name: str = Field(min_length=1, max_length=64)
    address: str = Field(default="", max_length=200)
    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)
    opening_hours: str = Field(default="", max_length=64)
    phone: str = Field(default="", max_length=32)
    active: bool = True


class PersonIn(Strict):
    name: str = Field(min_length=1, max_length=64)
    role: Literal["technician", "supervisor", "admin", "warehouse", "quality", "expert", "front_desk"]
    phone: str | None = Field(default=None, max_length=32)
    store: str | None = Field(default=None, max_length=64)
    team: str | None = Field(default=None, max_length=64)
    supervisor_id: str | None = Field(default=None, max_length=64)
    title: str | None = Field(default=None, max_length=64)
    active: bool = True


class RecordPage(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None


class UpsertResult(BaseModel):
    created: bool
    record: dict[str, Any]
