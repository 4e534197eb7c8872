"""TicketService: runs commands inside one unit of work and collects what to tell whom.

Handlers live in small modules (core/intake/tickets.py, core/lifecycle/work.py, ...) and register
themselves with `@handles(CommandType)`. A handler gets a `Context` with the unit of
work, the clock, the actor and helpers that keep the rules in one place: every state
change goes through `ctx.move`, every fact through `ctx.audit`, every message through
`ctx.notify` (an outbox row in the same transaction).
"""

from __future__ import annotations

import importlib
import uuid
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from core.cards import Card, Notification
from core.classification import FaultClassifierPort
from core.errors import NotAllowed, NotFound, StaleRead
from core.model import Person, Role, Ticket
from core.ports import Clock
from core.repository import TimerRow, UnitOfWork
from core.settings import SlaSettings
from core.tracking import TrackingLinkPort, with_tracking_link
from core.workflow import Workflow, repair_service_workflow

# Feature modules that register handlers, guards and hooks (hooks are ordered by stage, see below).
STALE_READ_ATTEMPTS = 3  # one per admin saving at the same moment is plenty
HANDLER_MODULES: tuple[str, ...] = (
    "core.intake.tickets", "core.intake.triage",
    "core.replies", "core.transitions", "core.timers",
    "core.sla.tracking", "core.sla.escalation", "core.sla.admin", "core.sla.replan",
    "core.sla.versioned_saves",  # issue 22: whole-matrix saves and rollbacks of the console's admin pages
    "core.dispatch.handlers", "core.dispatch.admin", "core.dispatch.site",
    "core.lifecycle.work", "core.lifecycle.signoff", "core.lifecycle.parts", "core.lifecycle.rework",
    "core.lifecycle.sop_handlers", "core.lifecycle.template",
    "core.audit.refusals", "core.masterdata.privacy",
    # Organisation admin and change linkage (issue 20); release: a leaving technician's jobs go back to dispatch.
    "core.masterdata.admin", "core.masterdata.linkage", "core.dispatch.release",
    "core.masterdata.directory",  # issue 20: directory sync and its daily timer
    "core.masterdata.imports",  # issue 20: bulk import of master data
    "core.hub.webhook_events",  # issue 23: outbound webhook events (observes audit events)
    "core.hub.api",  # issue 23: API v1 commands (create with an external ref, the status lock, comments)
    "core.hub.mappings",  # issue 23: per-system field mappings (installs the webhook body mapper)
    "core.tracking.revocation",  # issue 21: revoking a ticket's tracking link
    "core.audit.deliveries",  # issue 21: what SMS and 微信客服 did with a notice, in the ticket's trail
)

# The actor of what the service does on its own: dispatch, the SLA clock, moves a timer causes.
# Its audit events keep who (a person's id) or what ("timer:<kind>") set them off in `caused_by`.
SYSTEM_ACTOR = Person(id="system", name="系统", role=Role.ADMIN)

C = TypeVar("C")
Handler = Callable[["Context", Any], Awaitable[Any]]
_HANDLERS: dict[type, Handler] = {}
# Guards named in the workflow table, registered by the modules that know them.
Guard = Callable[["Context", Ticket], Awaitable[None]]
_GUARDS: dict[str, Guard] = {}
# Things to do after a move into a state (e.g. dispatch on pending_dispatch), by module.
AfterMove = Callable[["Context", Ticket, str], Awaitable[None]]
_AFTER_MOVE: list[AfterMove] = []
_AFTER_MOVE_STAGES: list[int] = []
# Hooks run by stage, then in registration order, whatever order their modules were imported in:
# the SLA clock (deadlines, response met, pauses) before dispatch makes or withdraws an offer.
SLA_STAGE = 10
DISPATCH_STAGE = 20
DEFAULT_STAGE = 50
H = TypeVar("H")
# Told after a command's transaction committed which timers it scheduled (the arq alarm clock
# enqueues them); never before the commit, so a worker cannot fire a row it cannot see yet.
TimersScheduled = Callable[[list[TimerRow]], Awaitable[None]]


def handles(command_type: type[C]) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _HANDLERS[command_type] = fn
        return fn

    return register


def guard(name: str) -> Callable[[Guard], Guard]:
    def register(fn: Guard) -> Guard:
        _GUARDS[name] = fn
        return fn

    return register


def add_staged(hooks: list[H], stages: list[int], stage: int, hook: H) -> H:
    """Insert `hook` after every hook of its stage or an earlier one (`stages` runs parallel to `hooks`)."""
    position = bisect_right(stages, stage)
    stages.insert(position, stage)
    hooks.insert(position, hook)
    return hook


def after_move(stage: int = DEFAULT_STAGE) -> Callable[[AfterMove], AfterMove]:
    def register(fn: AfterMove) -> AfterMove:
        return add_staged(_AFTER_MOVE, _AFTER_MOVE_STAGES, stage, fn)

    return register


# Observers of audit events by kind (issue 23: outbound webhooks). Every fact is audited, so what
# other systems are told follows the trail in order, in the transaction of the change; an observer
# runs right after its event is appended.
AfterAudit = Callable[["Context", str, dict[str, Any], Ticket | None], Awaitable[None]]
_AFTER_AUDIT: dict[str, list[AfterAudit]] = {}


def after_audit(*kinds: str) -> Callable[[AfterAudit], AfterAudit]:
    def register(fn: AfterAudit) -> AfterAudit:
        for kind in kinds:
            _AFTER_AUDIT.setdefault(kind, []).append(fn)
        return fn

    return register


# Run after a command's handler succeeded, in its transaction, just before the commit (issue 23: the
# webhook events of the command are written then, with what the whole command recorded).
BeforeCommit = Callable[["Context"], Awaitable[None]]
_BEFORE_COMMIT: list[BeforeCommit] = []


def before_commit(fn: BeforeCommit) -> BeforeCommit:
    _BEFORE_COMMIT.append(fn)
    return fn


@dataclass(slots=True)
class NewActor:
    """Someone writing for the first time: stored with the first command that commits."""

    identities: dict[str, str]  # platform → external id
    stored: bool = False


@dataclass(slots=True)
class ServiceConfig:
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    workflow: Workflow = field(default_factory=repair_service_workflow)
    number_prefix: str = "GD"
    sla: SlaSettings = field(default_factory=SlaSettings)
    # Issue 21: makes the tracking URL every message to a ticket's customer carries (None: no links).
    tracking: TrackingLinkPort | None = None


@dataclass(slots=True)
class Context:
    uow: UnitOfWork
    clock: Clock
    actor: Person
    service: TicketService
    reply_context: dict[str, Any] = field(default_factory=dict)
    now: datetime = field(init=False)
    notifications: list[Notification] = field(default_factory=list)
    # Inside `as_system()`: what is done is a system step (audited as SYSTEM_ACTOR).
    system_depth: int = 0
    # What set off a command the system runs itself (a timer: "timer:<kind>"), for `caused_by`.
    cause: str | None = None
    # The actor was stored by this command's own transaction (a first message): nothing in the
    # database was about them before it (intake skips their customer record and pending details).
    actor_is_new: bool = False
    # Tickets this command has in hand, by number: what a notification about one needs (its customer,
    # its tracking link) without reading it again.
    tickets: dict[str, Ticket] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.now = self.clock.now()

    @property
    def config(self) -> ServiceConfig:
        return self.service.config

    @property
    def is_system(self) -> bool:
        return self.actor.id == SYSTEM_ACTOR.id

    @contextmanager
    def as_system(self, cause: str | None = None) -> Iterator[None]:
        """Audit what happens inside as the system's step (the actor's permissions do not change);
        `cause`: what set it off when no person did (a timer)."""
        previous = self.cause
        self.system_depth += 1
        if cause is not None:
            self.cause = cause
        try:
            yield
        finally:
            self.system_depth -= 1
            self.cause = previous

    def attribution(self) -> tuple[str, str | None]:
        """(actor id, caused_by) for an audit event made now."""
        if self.is_system:
            return SYSTEM_ACTOR.id, self.cause
        if self.system_depth:
            return SYSTEM_ACTOR.id, self.actor.id
        return self.actor.id, None

    async def audit(self, kind: str, payload: dict[str, Any], ticket: Ticket | None = None) -> None:
        actor_id, caused_by = self.attribution()
        if caused_by is not None and "caused_by" not in payload:
            payload = {**payload, "caused_by": caused_by}
        await self.uow.append_audit(
            kind=kind,
            actor_id=actor_id,
            at=self.now,
            payload=payload,
            ticket_number=ticket.number if ticket else None,
        )
        observers = _AFTER_AUDIT.get(kind)
        if observers:
            for observer in observers:
                await observer(self, kind, payload, ticket)

    async def notify(self, notification: Notification, *, ticket: Ticket | None = None) -> None:
        if self.config.tracking is not None and notification.ticket_number:
            notification = await self._with_tracking_link(notification, ticket)
        # Replies to the actor carry the inbound reply context (e.g. a session webhook).
        reply_context = self.reply_context if notification.recipient_id == self.actor.id else None
        await self.uow.enqueue(notification, at=self.now, reply_context=reply_context)
        self.notifications.append(notification)

    async def _with_tracking_link(self, notification: Notification, ticket: Ticket | None) -> Notification:
        """Issue 21: a notification to the customer of the ticket it is about carries its tracking URL."""
        links, number = self.config.tracking, notification.ticket_number
        if links is None or number is None:
            return notification
        if ticket is None or ticket.number != number:
            ticket = self.tickets.get(number)
        if ticket is None:
            # Not in hand (rare: a handler that read it through the unit of work alone): read once.
            ticket = await self.uow.get_ticket(number)
            if ticket is None:
                return notification
            self.tickets[number] = ticket
        if notification.recipient_id != ticket.customer_id:
            return notification
        return with_tracking_link(notification, links.url_for(ticket))

    async def tell(self, person_id: str, text: str, *, ticket: Ticket | None = None, urgent: bool = False) -> None:
        if ticket is not None:
            self.tickets[ticket.number] = ticket
        await self.notify(
            Notification(recipient_id=person_id, text=text, ticket_number=ticket.number if ticket else None,
                         urgent=urgent), ticket=ticket)

    async def send_card(self, person_id: str, card: Card, *, text: str | None = None,
                        ticket: Ticket | None = None) -> None:
        await self.uow.save_card(card, recipient_id=person_id, ticket_number=card.ticket_number, at=self.now)
        await self.notify(Notification(recipient_id=person_id, text=text, card=card, urgent=card.urgent,
                                       ticket_number=card.ticket_number), ticket=ticket)

    def new_card_id(self, kind: str) -> str:
        # Short, URL- and WeCom-task_id-safe (letters, digits, '_', '-'), unique.
        return f"{kind}-{uuid.uuid4().hex[:20]}"

    async def ticket(self, number: str, *, lock: bool = True) -> Ticket:
        ticket = await self.uow.get_ticket(number.strip().upper(), lock=lock)
        if ticket is None:
            raise NotFound(f"没有找到工单 {number}。", number=number)
        self.tickets[ticket.number] = ticket
        return ticket

    async def move(self, ticket: Ticket, name: str, *, payload: dict[str, Any] | None = None,
                   as_system: bool = False) -> Ticket:
        """Apply a workflow transition: check state, role and guards; save; audit; run after-move hooks.
        `as_system`: the system's step (no role check; audited as SYSTEM_ACTOR, caused by the actor)."""
        if as_system:
            with self.as_system():
                return await self._move(ticket, name, payload, as_system=True)
        return await self._move(ticket, name, payload, as_system=False)

    async def _move(self, ticket: Ticket, name: str, payload: dict[str, Any] | None, *, as_system: bool) -> Ticket:
        role = None if as_system or self.is_system else self.actor.role
        step = self.config.workflow.check(ticket.status, name, role)
        for guard_name in step.guards:
            check = _GUARDS.get(guard_name)
            if check is not None:
                await check(self, ticket)
        self.tickets[ticket.number] = ticket
        before = ticket.status
        ticket.status = step.target
        ticket.updated_at = self.now
        if step.target.value == "closed":
            ticket.closed_at = self.now
        await self.uow.save_ticket(ticket)
        await self.audit(
            "status_changed",
            {"transition": name, "from": before.value, "to": step.target.value, **(payload or {})},
            ticket,
        )
        for hook in _AFTER_MOVE:
            await hook(self, ticket, name)
        return ticket

    def require_role(self, *roles: Role) -> None:
        if self.actor.role not in roles:
            raise NotAllowed("抱歉，您没有权限执行这个操作。", role=self.actor.role.value)


class TicketService:
    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        clock: Clock,
        classifier: FaultClassifierPort,
        config: ServiceConfig | None = None,
    ) -> None:
        self.uow_factory = uow_factory
        self.clock = clock
        self.classifier = classifier
        self.config = config or ServiceConfig()
        self.timers_scheduled: TimersScheduled | None = None
        # Modules with handlers register themselves on import; importing them here once
        # keeps the registry complete whoever builds the service.
        for module in HANDLER_MODULES:
            importlib.import_module(module)

    async def handle(self, command: object, actor: Person, *, reply_context: dict[str, Any] | None = None,
                     new_actor: NewActor | None = None) -> Any:
        """Run one command in one transaction. Domain errors roll everything back.

        `new_actor`: the actor is not in the directory yet. Unless an earlier command stored them,
        they are stored in this command's transaction, so that they exist exactly when its effects do."""
        handler = _HANDLERS.get(type(command))
        if handler is None:
            raise NotFound(f"不支持的操作：{type(command).__name__}")
        for attempt in range(STALE_READ_ATTEMPTS):
            try:
                async with self.uow_factory() as uow:
                    to_store = new_actor if new_actor is not None and not new_actor.stored else None
                    try:
                        if to_store is not None:
                            await uow.add_person(actor, dict(to_store.identities))
                        ctx = Context(uow=uow, clock=self.clock, actor=actor, service=self,
                                      reply_context=reply_context or {}, actor_is_new=to_store is not None)
                        result = await handler(ctx, command)
                        for hook in _BEFORE_COMMIT:
                            await hook(ctx)
                        await uow.commit()
                    finally:
                        # A handler may commit part of its work (an audited refusal) and then fail.
                        if to_store is not None and uow.committed:
                            to_store.stored = True
                break
            except StaleRead:
                # Rolled back whole (audit and outbox included): running again is safe.
                if attempt == STALE_READ_ATTEMPTS - 1:
                    raise
        if self.timers_scheduled is not None and uow.scheduled_timers:
            alarm, timers = self.timers_scheduled, list(uow.scheduled_timers)
            await uow.after_commit(lambda: alarm(timers))
        return result
