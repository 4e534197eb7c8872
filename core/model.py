"""Domain entities: people, tickets, statuses. Plain dataclasses, no persistence."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    CUSTOMER = "customer"
    TECHNICIAN = "technician"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"
    WAREHOUSE = "warehouse"
    QUALITY = "quality"
    EXPERT = "expert"
    FRONT_DESK = "front_desk"


ROLE_LABELS: dict[Role, str] = {
    Role.CUSTOMER: "客户",
    Role.TECHNICIAN: "技师",
    Role.SUPERVISOR: "主管",
    Role.ADMIN: "管理员",
    Role.WAREHOUSE: "仓库管理员",
    Role.QUALITY: "质量改进组",
    Role.EXPERT: "专家",
    Role.FRONT_DESK: "前台",
}


class TicketStatus(StrEnum):
    TRIAGE = "triage"
    PENDING_DISPATCH = "pending_dispatch"
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    CHECKED_IN = "checked_in"
    IN_PROGRESS = "in_progress"
    WAITING_PARTS = "waiting_parts"
    WAITING_CUSTOMER_PLAN = "waiting_customer_plan"
    PENDING_QC = "pending_qc"
    PENDING_SIGNOFF = "pending_signoff"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    REOPENED = "reopened"

    @property
    def label(self) -> str:
        return STATUS_LABELS[self]

    @property
    def is_open(self) -> bool:
        return self not in {TicketStatus.CLOSED, TicketStatus.CANCELLED}


STATUS_LABELS: dict[TicketStatus, str] = {
    TicketStatus.TRIAGE: "待分诊",
    TicketStatus.PENDING_DISPATCH: "待派单",
    TicketStatus.DISPATCHED: "已派单",
    TicketStatus.ACCEPTED: "已接单",
    TicketStatus.CHECKED_IN: "已签到",
    TicketStatus.IN_PROGRESS: "检修中",
    TicketStatus.WAITING_PARTS: "等待备件",
    TicketStatus.WAITING_CUSTOMER_PLAN: "等待客户确认方案",
    TicketStatus.PENDING_QC: "待质检",
    TicketStatus.PENDING_SIGNOFF: "待客户签字",
    TicketStatus.CLOSED: "已结案",
    TicketStatus.CANCELLED: "已取消",
    TicketStatus.REOPENED: "已重开",
}


@dataclass(slots=True)
class Person:
    id: str
    name: str
    role: Role
    phone: str | None = None
    store_id: str | None = None
    supervisor_id: str | None = None
    preferred_channel: str = "local"
    active: bool = True


@dataclass(slots=True)
class Ticket:
    number: str
    customer_id: str
    description: str
    status: TicketStatus
    created_at: datetime
    updated_at: datetime
    category: str | None = None
    subject: str = ""  # the asset: car plate, device number, elevator id...
    priority: str = "常规"
    impact: str = "单用户"
    assignee_id: str | None = None
    needs_review: bool = False  # 待复核: the first assignee did not respond in time
    site_lat: float | None = None
    site_lng: float | None = None
    store_id: str | None = None  # master data: the store serving it, the asset it is about
    asset_id: str | None = None
    first_response_at: datetime | None = None  # set by storage when the first offer is delivered
    closed_at: datetime | None = None
    response_due: datetime | None = None
    resolution_due: datetime | None = None
    id: int | None = None
    version: int = 0  # optimistic concurrency: bumped on every save
    data: dict[str, Any] = field(default_factory=dict)  # classifier output, photos count, etc.

    @property
    def accepted_at(self) -> datetime | None:
        """When a technician first accepted the job (the human response; dispatch records it)."""
        value = self.data.get("accepted_at")
        if not isinstance(value, str):  # tickets accepted before it was recorded: their acceptance
            dispatch = self.data.get("dispatch")
            accepted = dispatch.get("accepted") if isinstance(dispatch, dict) else None
            value = accepted.get("at") if isinstance(accepted, dict) else None
        return datetime.fromisoformat(value) if isinstance(value, str) else None

    def to_public_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "number": self.number,
            "status": self.status.value,
            "status_label": self.status.label,
            "category": self.category,
            "subject": self.subject,
            "description": self.description,
            "priority": self.priority,
            "impact": self.impact,
            "customer_id": self.customer_id,
            "assignee_id": self.assignee_id,
            "needs_review": self.needs_review,
            "site": {"lat": self.site_lat, "lng": self.site_lng} if self.site_lat is not None else None,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            # The first offer reached a technician's chat (recorded on delivery), then the first 接单.
            "first_response_at": iso(self.first_response_at),
            "accepted_at": iso(self.accepted_at),
            "closed_at": iso(self.closed_at),
            "response_due": iso(self.response_due),
            "resolution_due": iso(self.resolution_due),
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class AuditEvent:
    kind: str
    actor_id: str
    at: datetime
    payload: dict[str, Any]
    ticket_number: str | None = None
    id: int | None = None
    prev_hash: str | None = None
    hash: str | None = None
