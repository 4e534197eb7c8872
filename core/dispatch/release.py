"""When a technician leaves (deactivated, or no longer a technician): their open jobs go back to dispatch.

Registered on core/masterdata/events.py, so every way a person changes — `人员 停用` in chat, the
directory sync, an import — does the same thing:

  * an open offer is withdrawn and the job offered to the best other candidate (the workflow's
    "reassign", as the system); with nobody eligible it goes to 待派单 and the supervisors get the
    pick card, as when everyone declined;
  * accepted / checked-in / in-progress jobs are reassigned to the best other candidate the same way;
    with nobody eligible they stay put and the ticket's supervisors are told to 转派;
  * jobs waiting for parts, the customer's plan, QC or the signature need no technician now: the
    supervisors are told, so they can 转派 when the work resumes.
The person's technicians row follows the person (created when someone becomes a technician), and a
`technician_updated` event makes every process's candidate index reload them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from core.dispatch.engine import RankedCandidate
from core.dispatch.handlers import _close_card
from core.dispatch.live import live_index
from core.dispatch.offers import (
    close_offer,
    current_policy,
    dispatch_state,
    offer_next,
    open_offer,
    place_of,
    request_for,
    supervisors_of,
)
from core.dispatch.store import TechnicianEntry
from core.lifecycle.common import sync_workflow
from core.masterdata.events import on_person_changed
from core.model import Person, Role, Ticket, TicketStatus
from core.service import Context, handles

S = TicketStatus
REASSIGNABLE = frozenset({S.DISPATCHED, S.ACCEPTED, S.CHECKED_IN, S.IN_PROGRESS, S.REOPENED})
OPEN_STATES = frozenset(s for s in TicketStatus if s.is_open)


def leaves_dispatch(before: Person | None, after: Person) -> bool:
    """Was a working technician, is not any more (deactivated or another role)."""
    was = before is not None and before.role is Role.TECHNICIAN and before.active
    return was and (after.role is not Role.TECHNICIAN or not after.active)


async def open_jobs(ctx: Context, person_id: str) -> list[Ticket]:
    return await ctx.uow.list_tickets(assignee_id=person_id, statuses=set(OPEN_STATES), limit=500)


@on_person_changed
async def _person_changed(ctx: Context, before: Person | None, after: Person) -> None:
    if leaves_dispatch(before, after):
        await release_open_jobs(ctx, after)
    if after.role is Role.TECHNICIAN or (before is not None and before.role is Role.TECHNICIAN):
        if after.role is Role.TECHNICIAN:
            await _save_entry(ctx, after)
        await ctx.audit("technician_updated", {"person_id": after.id, "via": "org"})


async def _save_entry(ctx: Context, person: Person) -> None:
    directory = ctx.uow.dispatch_store()
    found = await directory.entries([person.id])
    store = await directory.store(person.store_id) if person.store_id else None
    base = found[0] if found else TechnicianEntry(person_id=person.id, name=person.name)
    entry = replace(base, name=person.name, phone=person.phone, store_id=person.store_id,
                    store_position=store.position if store else None, supervisor_id=person.supervisor_id,
                    active=person.active, last_position=None, last_position_at=None, identities={})
    await directory.save_technician(entry, identities={} if found else {"local": person.id}, at=ctx.now)


async def _best_other(ctx: Context, ticket: Ticket, person_id: str) -> RankedCandidate | None:
    directory = ctx.uow.dispatch_store()
    place = await place_of(ctx, ticket, directory)
    base = request_for(ticket, place)
    # The index learns of the deactivation only after this transaction: leave the person out here.
    request = replace(base, excluded_person_ids=base.excluded_person_ids | {person_id})
    _, _, ranked = await live_index(ctx.service).rank(directory, request, lambda: current_policy(ctx), ctx.now,
                                                      limit=1)
    return ranked[0] if ranked else None


def _allows(ctx: Context, ticket: Ticket, name: str) -> bool:
    """The live template has step `name` from the ticket's state (the system's steps check no role)."""
    return any(t.name == name and ticket.status in t.sources for t in ctx.config.workflow.transitions)


async def release_open_jobs(ctx: Context, person: Person) -> list[str]:
    """Send `person`'s open jobs back to dispatch (see the module's docstring); the numbers handled."""
    await sync_workflow(ctx)  # the template another process saved last
    handled: list[str] = []
    waiting: list[Ticket] = []
    for listed in await open_jobs(ctx, person.id):
        ticket = await ctx.ticket(listed.number)  # locked
        if ticket.assignee_id != person.id:
            continue
        handled.append(ticket.number)
        if ticket.status not in REASSIGNABLE or not _allows(ctx, ticket, "reassign"):
            waiting.append(ticket)  # (an admin's template may lack the step: the supervisors decide)
            continue
        with ctx.as_system():
            candidate = await _best_other(ctx, ticket, person.id)
            if candidate is not None:
                dispatch_state(ticket)["manual_reason"] = f"原技师 {person.name} 已停用"
                ticket.assignee_id = candidate.person_id
                await ctx.move(ticket, "reassign", as_system=True, payload={
                    "assignee": candidate.person_id, "previous_assignee": person.id, "reason": "assignee_deactivated"})
                await ctx.tell(person.id, f"您已停用，工单 {ticket.number} 已改派给 {candidate.name}。", ticket=ticket)
            elif ticket.status is S.DISPATCHED and open_offer(ticket) is not None and _allows(
                    ctx, ticket, "expire_offer"):
                # Nobody else now: back to 待派单, where the supervisors pick someone (the pick card).
                offer = close_offer(ticket, "withdrawn", ctx.now, note="assignee_deactivated")
                # Never wait for a card a press holds (card before ticket): that press is refused anyway.
                if offer is not None and await ctx.uow.dispatch_store().card_is_free(offer["card_id"]):
                    await _close_card(ctx, offer["card_id"], f"技师 {person.name} 已停用，派单已撤回")
                await ctx.move(ticket, "expire_offer", as_system=True,
                               payload={"person_id": person.id, "reason": "assignee_deactivated"})
                ticket.assignee_id = None
                # The candidate index learns of the deactivation after this commit: keep them out now.
                left = dispatch_state(ticket).setdefault("left", [])
                if person.id not in left:
                    left.append(person.id)
                await ctx.uow.save_ticket(ticket)
                await offer_next(ctx, ticket, trigger="assignee_deactivated")
            else:
                waiting.append(ticket)
    for ticket in waiting:
        for boss in await supervisors_of(ctx, person.id, ticket):
            await ctx.tell(boss.id, f"工单 {ticket.number}（{ticket.status.label}）的技师 {person.name} 已停用，"
                                    f"请发送「转派 {ticket.number} 工号」安排其他技师。", ticket=ticket)
    if handled:
        await ctx.audit("technician_jobs_released", {"person_id": person.id, "tickets": handled,
                                                     "to_supervisors": [t.number for t in waiting]})
    return handled


@dataclass(frozen=True, slots=True)
class ReleaseJobsOf:
    """A bulk import deactivated `person_id` (or made them something other than a technician): their
    open jobs go back to dispatch, in a transaction of its own that locks the tickets before the
    audit chain's head (the import's batch holds the head from its start)."""

    person_id: str


@handles(ReleaseJobsOf)
async def release_jobs_of(ctx: Context, cmd: ReleaseJobsOf) -> list[str]:
    ctx.require_role(Role.ADMIN)
    person = await ctx.uow.get_person(cmd.person_id)
    if person is None or (person.role is Role.TECHNICIAN and person.active):
        return []  # unknown, or reactivated meanwhile: nothing leaves
    return await release_open_jobs(ctx, person)
