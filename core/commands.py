"""Commands: the only thing that crosses the adapter boundary inward.

Each is a small frozen dataclass; `TicketService.handle(command, actor)` runs the
handler registered for its type inside one unit of work.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ReportFault:
    """A customer's report. A repeat of one of their open tickets becomes a follow-up on it unless
    `new_problem` (`新问题 描述`); a new ticket counts against the per-sender limit (core/intake/reports.py)."""

    text: str
    subject: str = ""
    lat: float | None = None
    lng: float | None = None
    priority: str | None = None
    impact: str | None = None
    new_problem: bool = False


@dataclass(frozen=True, slots=True)
class RegisterForCustomer:
    """`代客报修 手机号或客户 描述`: staff register a fault for a customer, found by person id or phone
    (a new phone makes a new customer). The customer stays the ticket's customer, who signs."""

    customer: str  # a person id or a phone number, as typed
    text: str
    new_problem: bool = False


@dataclass(frozen=True, slots=True)
class SplitFollowUp:
    """`新问题` alone: the customer's last report taken as a follow-up is a new problem after all."""


@dataclass(frozen=True, slots=True)
class ListMyTickets:
    limit: int = 10


@dataclass(frozen=True, slots=True)
class ShowTicket:
    number: str


@dataclass(frozen=True, slots=True)
class PressCardAction:
    card_id: str
    action: str
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Transition:
    """Move a ticket by a named workflow step (e.g. "start_work"), checked by the workflow."""

    number: str
    name: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class ReportPosition:
    lat: float
    lng: float


@dataclass(frozen=True, slots=True)
class AddPhoto:
    sha256: str
    path: str
    size: int
    number: str | None = None  # None: the actor's current job
    width: int = 0  # pixels, as decoded where the bytes were stored (bot/photo_store.py)
    height: int = 0


@dataclass(frozen=True, slots=True)
class ChangePriority:
    """Staff correct what intake read: priority (紧急/常规/咨询) and/or impact (单用户/部门/全厂).
    The SLA is re-planned (core/sla/replan.py)."""

    number: str
    priority: str | None = None
    impact: str | None = None


@dataclass(frozen=True, slots=True)
class CancelTicket:
    """`取消工单 号 原因`: the customer before a technician accepted, staff at any open state."""

    number: str
    reason: str
