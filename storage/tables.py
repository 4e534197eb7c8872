"""The database schema as sqlmodel tables. Alembic migrations are generated from these."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.types import UtcDateTime

# BIGINT on PostgreSQL, but INTEGER on SQLite so that it stays the rowid alias (autoincrement).
BigId = BigInteger().with_variant(Integer(), "sqlite")


def _dt(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UtcDateTime(), nullable=nullable, index=index))


def _json() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class StoreRow(SQLModel, table=True):
    __tablename__ = "stores"
    id: str = Field(primary_key=True, max_length=64)
    name: str
    lat: float
    lng: float
    address: str = ""


class PersonRow(SQLModel, table=True):
    __tablename__ = "people"
    id: str = Field(primary_key=True, max_length=64)
    name: str
    role: str = Field(index=True, max_length=32)
    phone: str | None = Field(default=None, index=True)  # 代客报修 finds a customer by phone
    store_id: str | None = Field(default=None, max_length=64)
    supervisor_id: str | None = Field(default=None, max_length=64)
    preferred_channel: str = Field(default="local", max_length=32)
    active: bool = True
    created_at: datetime | None = _dt()


class IdentityRow(SQLModel, table=True):
    """One person may be known on several platforms."""

    __tablename__ = "identities"
    platform: str = Field(primary_key=True, max_length=32)
    external_id: str = Field(primary_key=True, max_length=128)
    person_id: str = Field(index=True, max_length=64)


class TechnicianRow(SQLModel, table=True):
    __tablename__ = "technicians"
    person_id: str = Field(primary_key=True, max_length=64)
    certifications: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    skills: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    excluded_categories: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    last_lat: float | None = None
    last_lng: float | None = None
    last_position_at: datetime | None = _dt()
    on_duty: bool = True
    max_load: int = 5
    rating_sum: float = 0.0
    rating_count: int = 0


class TicketRow(SQLModel, table=True):
    __tablename__ = "tickets"
    __table_args__ = (Index("ix_tickets_customer_created", "customer_id", "created_at"),)
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    number: str = Field(unique=True, max_length=32)
    customer_id: str = Field(max_length=64)
    subject: str = ""
    description: str
    category: str | None = Field(default=None, max_length=64)
    priority: str = Field(default="常规", max_length=16)
    impact: str = Field(default="单用户", max_length=16)
    status: str = Field(index=True, max_length=32)
    assignee_id: str | None = Field(default=None, index=True, max_length=64)
    needs_review: bool = False
    site_lat: float | None = None
    site_lng: float | None = None
    created_at: datetime = _dt(nullable=False, index=True)
    updated_at: datetime = _dt(nullable=False)
    first_response_at: datetime | None = _dt()
    closed_at: datetime | None = _dt()
    response_due: datetime | None = _dt()
    resolution_due: datetime | None = _dt()
    version: int = 0
    data: dict[str, Any] = _json()


class TicketCounterRow(SQLModel, table=True):
    __tablename__ = "ticket_counters"
    day: date = Field(primary_key=True)
    last: int = 0


class AuditEventRow(SQLModel, table=True):
    """Append-only. `seq` is gapless and hashed, so deleting a row shows."""

    __tablename__ = "audit_events"
    seq: int = Field(sa_column=Column(BigId, primary_key=True, autoincrement=False))
    ticket_number: str | None = Field(default=None, index=True, max_length=32)
    actor_id: str = Field(max_length=64)
    at: datetime = _dt(nullable=False)
    kind: str = Field(max_length=64, index=True)
    payload: dict[str, Any] = _json()
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditHeadRow(SQLModel, table=True):
    """The single row holding the chain head; locking it serialises appends across processes.
    `mac`: the head's HMAC under the audit key (None: written before keys, see core/audit/chain.py)."""

    __tablename__ = "audit_head"
    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    hash: str = Field(default="0" * 64, max_length=64)
    mac: str | None = Field(default=None, max_length=64)


class InboxRow(SQLModel, table=True):
    __tablename__ = "inbox"
    __table_args__ = (UniqueConstraint("platform", "event_key", name="uq_inbox_platform_event"),)
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    platform: str = Field(max_length=32)
    event_key: str = Field(max_length=255)
    received_at: datetime = _dt(nullable=False)
    payload: dict[str, Any] = _json()
    status: str = Field(default="pending", index=True, max_length=16)  # pending, done, failed
    attempts: int = 0
    processed_at: datetime | None = _dt()
    error: str | None = None


class OutboxRow(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_pending", "status", "next_attempt_at"),
        Index("ix_outbox_recipient_channel", "recipient_id", "channel", "id"),
    )
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    recipient_id: str = Field(max_length=64)
    channel: str = Field(max_length=32)
    payload: dict[str, Any] = _json()
    reply_context: dict[str, Any] = _json()
    status: str = Field(default="pending", max_length=16)  # pending, sent, dead
    attempts: int = 0
    created_at: datetime = _dt(nullable=False)
    next_attempt_at: datetime = _dt(nullable=False)
    sent_at: datetime | None = _dt()
    external_id: str | None = Field(default=None, max_length=255)
    error: str | None = None


class CardRow(SQLModel, table=True):
    __tablename__ = "cards"
    id: str = Field(primary_key=True, max_length=64)
    kind: str = Field(max_length=32)
    ticket_number: str | None = Field(default=None, index=True, max_length=32)
    recipient_id: str = Field(max_length=64)
    payload: dict[str, Any] = _json()
    state: str = Field(default="open", max_length=16)
    created_at: datetime = _dt(nullable=False)
    used_at: datetime | None = _dt()
    used_by: str | None = Field(default=None, max_length=64)
    used_action: str | None = Field(default=None, max_length=64)
    # Per-platform references for later updates: {"wecom": {...}, "feishu": {...}}
    platform_refs: dict[str, Any] = _json()


class TimerRowTable(SQLModel, table=True):
    """Durable timers: the row is the truth; Redis/arq or the in-process loop is only the alarm."""

    __tablename__ = "timers"
    __table_args__ = (
        UniqueConstraint("kind", "ticket_key", name="uq_timer_kind_ticket"),
        Index("ix_timers_due", "state", "due_at"),
    )
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    kind: str = Field(max_length=64)
    # ticket number, or "" for timers that belong to no ticket (unique constraints ignore NULLs)
    ticket_key: str = Field(default="", max_length=64)
    due_at: datetime = _dt(nullable=False)
    generation: int = 1
    state: str = Field(default="pending", max_length=16)  # pending, fired, cancelled
    payload: dict[str, Any] = _json()
    fired_at: datetime | None = _dt()


class ConfigVersionRow(SQLModel, table=True):
    __tablename__ = "config_versions"
    __table_args__ = (UniqueConstraint("kind", "version", name="uq_config_kind_version"),)
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    kind: str = Field(max_length=32)
    version: int
    payload: dict[str, Any] = _json()
    actor_id: str = Field(max_length=64)
    note: str = ""
    created_at: datetime = _dt(nullable=False)


class PhotoRow(SQLModel, table=True):
    __tablename__ = "photos"
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    ticket_number: str = Field(index=True, max_length=32)
    uploader_id: str = Field(max_length=64)
    sha256: str = Field(max_length=64)
    path: str
    size: int
    purpose: str = Field(default="", max_length=32)
    created_at: datetime = _dt(nullable=False)
