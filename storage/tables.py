"""The database schema as sqlmodel tables. Alembic migrations are generated from these."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, UniqueConstraint, true
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
    # issue 20 (master data). Server defaults: added to a table with rows (migration 0004).
    opening_hours: str = Field(default="", sa_column_kwargs={"server_default": ""})
    phone: str = Field(default="", sa_column_kwargs={"server_default": ""})
    active: bool = Field(default=True, sa_column_kwargs={"server_default": true()})


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
    # issue 20 (master data): the team (teams.id) and a free-text job title (电工班长)
    team_id: str | None = Field(default=None, index=True, max_length=64)
    title: str | None = None


class TeamRow(SQLModel, table=True):
    __tablename__ = "teams"
    id: str = Field(primary_key=True, max_length=64)
    name: str
    store_id: str | None = Field(default=None, index=True, max_length=64)
    leader_id: str | None = Field(default=None, max_length=64)
    active: bool = True


class CustomerRow(SQLModel, table=True):
    """Master-data fields of a customer; the customer is the people row `person_id` (role customer)."""

    __tablename__ = "customers"
    person_id: str = Field(primary_key=True, max_length=64)
    phones: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    addresses: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    company: str = ""
    service_level: str = Field(default="", max_length=32)
    store_id: str | None = Field(default=None, max_length=64)
    forgotten_at: datetime | None = _dt()
    updated_at: datetime | None = _dt()


class CustomerPhoneRow(SQLModel, table=True):
    """Phone → customer, for the lookup by a phone a customer gives (normalised)."""

    __tablename__ = "customer_phones"
    phone: str = Field(primary_key=True, max_length=32)
    person_id: str = Field(primary_key=True, index=True, max_length=64)


class AssetRow(SQLModel, table=True):
    """A device or vehicle. sn_key/vin/plate are normalised and unique: each lookup is one index probe."""

    __tablename__ = "assets"
    id: str = Field(primary_key=True, max_length=64)
    sn_key: str | None = Field(default=None, unique=True, index=True, max_length=64)
    vin: str | None = Field(default=None, unique=True, index=True, max_length=17)
    plate: str | None = Field(default=None, unique=True, index=True, max_length=16)
    display_id: str = ""
    brand: str = ""
    model: str = ""
    store_id: str | None = Field(default=None, index=True, max_length=64)
    customer_id: str | None = Field(default=None, index=True, max_length=64)
    installed_on: date | None = None
    purchased_on: date | None = None
    warranty_end: date | None = Field(default=None, index=True)
    params: dict[str, Any] = _json()


class ContractRow(SQLModel, table=True):
    __tablename__ = "contracts"
    number: str = Field(primary_key=True, max_length=64)
    customer_id: str = Field(index=True, max_length=64)
    level: str = Field(default="", max_length=32)
    valid_from: date
    valid_to: date = Field(index=True)


class ContractAssetRow(SQLModel, table=True):
    __tablename__ = "contract_assets"
    contract_number: str = Field(primary_key=True, max_length=64)
    asset_id: str = Field(primary_key=True, index=True, max_length=64)


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
    __table_args__ = (
        Index("ix_tickets_customer_created", "customer_id", "created_at"),
        Index("ix_tickets_closed_at", "closed_at"),  # 报表's first-time-fix window (migration 0005)
        Index("ix_tickets_first_response_at", "first_response_at"),  # the fold's first responses (0015)
        Index("ix_tickets_status_updated", "status", "updated_at"),  # the retention purge's cancelled tickets
        # The console's queue (migration 0012): open tickets are ~1 % of a million, and reading their rows (the
        # store column sits after the JSON `data`) cost tens of ms per query. This one covers every filter and
        # sort of the queue, so "the open ones" are read from the index alone (bot/console/queues.py).
        Index("ix_tickets_queue", "status", "created_at", "priority", "category", "assignee_id", "store_id",
              "response_due", "resolution_due", "number"),
        # A store's tickets in some states, newest first (a store's closed tickets of a month, say).
        Index("ix_tickets_store_status_created", "store_id", "status", "created_at"),
    )
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
    # issue 20 (master data): the store serving the ticket and the asset it is about
    store_id: str | None = Field(default=None, index=True, max_length=64)
    asset_id: str | None = Field(default=None, index=True, max_length=64)


class TicketCounterRow(SQLModel, table=True):
    __tablename__ = "ticket_counters"
    day: date = Field(primary_key=True)
    last: int = 0


class AuditEventRow(SQLModel, table=True):
    """Append-only. `seq` is gapless and hashed, so deleting a row shows."""

    __tablename__ = "audit_events"
    # History at a million tickets (migration 0005): a ticket's events of some kinds (报表), and the
    # events of one kind since a time (the dispatch index's acceptances).
    __table_args__ = (
        Index("ix_audit_events_ticket_kind", "ticket_number", "kind"),
        Index("ix_audit_events_kind_at", "kind", "at"),
    )
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


# --- API v1 (issue 23: bot/api_v1/, storage/api_store.py, migration 0006) ---
class ApiClientRow(SQLModel, table=True):
    """A registered external system. Only the SHA-256 of its token is kept (the token has 256 bits
    of entropy: a plain hash suffices, no slow KDF); `person_id` is its actor in the audit trail."""

    __tablename__ = "api_clients"
    name: str = Field(primary_key=True, max_length=64)
    token_hash: str = Field(unique=True, max_length=64)
    scopes: str = Field(max_length=255)  # comma-separated, e.g. "tickets:write,masterdata:read"
    person_id: str = Field(max_length=64)
    active: bool = True
    created_at: datetime = _dt(nullable=False)
    rotated_at: datetime | None = _dt()
    revoked_at: datetime | None = _dt()


class ApiIdempotencyRow(SQLModel, table=True):
    """An Idempotency-Key and the first answer given to it. The row is inserted in the same
    transaction as the effect, so a concurrent retry waits for it (PostgreSQL) and replays."""

    __tablename__ = "api_idempotency"
    client: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=255)
    request_hash: str = Field(max_length=64)
    status: int = 0  # 0 until the answer is stored (within the same transaction)
    body: str = ""
    created_at: datetime = _dt(nullable=False)
    expires_at: datetime = _dt(nullable=False, index=True)


class TicketExternalRefRow(SQLModel, table=True):
    """Another system's id for one of our tickets: one ticket per (system, ref)."""

    __tablename__ = "ticket_external_refs"
    system: str = Field(primary_key=True, max_length=64)
    ref: str = Field(primary_key=True, max_length=128)
    ticket_number: str = Field(index=True, max_length=32)
    created_at: datetime = _dt(nullable=False)


# --- issue 23: outbound webhooks (storage/webhook_store.py, migration 0007) ---
class WebhookSubscriptionRow(SQLModel, table=True):
    """A system's subscription: where to POST which events, signed with its secret (kept in clear:
    HMAC needs it). `client` is the API client's name (api_clients.name)."""

    __tablename__ = "webhook_subscriptions"
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    client: str = Field(index=True, max_length=64)
    url: str = Field(max_length=2048)
    secret: str = Field(max_length=128)
    events: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    active: bool = True
    created_at: datetime = _dt(nullable=False)
    removed_at: datetime | None = _dt()


class WebhookDeliveryRow(SQLModel, table=True):
    """One event for one subscription: written in the transaction of the change (the webhook outbox);
    the body is fixed then, so a redelivery sends the same bytes with the same event id."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # the dispatcher polls what is due, then claims per subscription
        Index("ix_webhook_deliveries_due", "subscription_id", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_status_due", "status", "next_attempt_at"),
    )
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    subscription_id: int  # indexed first in ix_webhook_deliveries_due
    event_id: str = Field(index=True, max_length=36)
    event_type: str = Field(max_length=64)
    ticket_number: str | None = Field(default=None, index=True, max_length=32)
    body: str
    status: str = Field(default="pending", max_length=16)  # pending, sending, delivered, dead
    attempts: int = 0
    created_at: datetime = _dt(nullable=False)
    next_attempt_at: datetime = _dt(nullable=False)
    give_up_at: datetime = _dt(nullable=False)  # retried until then (3 days; reset by a redelivery)
    last_attempt_at: datetime | None = _dt()
    delivered_at: datetime | None = _dt()
    last_status: int | None = None  # the receiver's HTTP status
    last_latency_ms: int | None = None
    last_error: str | None = None


class WebhookAttemptRow(SQLModel, table=True):
    """The delivery log: one row per attempt (what was sent, what came back, how long it took)."""

    __tablename__ = "webhook_attempts"
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    delivery_id: int = Field(index=True)
    subscription_id: int = Field(index=True)
    at: datetime = _dt(nullable=False)
    signature: str = Field(max_length=128)
    status_code: int | None = None
    latency_ms: int = 0
    error: str | None = None


# Tables of the 2026-12 wave, one module per capability (each with its own migration).
import storage.tables_console  # noqa: E402
import storage.tables_kf  # noqa: E402
import storage.tables_reports  # noqa: E402
import storage.tables_sms  # noqa: E402
import storage.tables_tracking  # noqa: E402, F401
