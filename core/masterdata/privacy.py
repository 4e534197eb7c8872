"""Personal data in tickets: the retention purge and `customer forget` (PIPL; docs/masterdata.md,
"Personal data").

What a ticket holds about its customer beyond the person id: the snapshot intake took
(`data["masterdata"]["customer"]`: name, masked phone, company), the address text, the site
coordinates, and phone numbers the customer typed into the description or a follow-up. `scrub`
erases those in place (numbers masked to 138****5678) and marks the ticket `data["privacy"]`. The
fault, the work, the category and the audit trail stay: the audit chain is the record of what was
done, hashed and anchored, so it is never rewritten (a forget would break its verification).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.errors import NotFound
from core.masterdata.identifiers import mask_phone
from core.masterdata.model import CustomerRecord
from core.masterdata.prefill import MASTERDATA, PENDING_KIND, PHONE_IN_TEXT, pending_key
from core.model import Role, Ticket
from core.service import Context, handles

PRIVACY = "privacy"  # ticket.data key: {"purged_at", "reason"}
MAX_TICKETS = 100_000  # one customer's tickets a forget goes through


@dataclass(frozen=True, slots=True)
class ForgetCustomer:
    """`ticketbot customer forget ID`: erase a customer's personal fields everywhere but the audit trail."""

    person_id: str


@dataclass(frozen=True, slots=True)
class PurgeContactData:
    """Scrub these closed tickets (the retention job picks them: closed longer than the retention)."""

    numbers: tuple[str, ...]
    retention_days: int
    cutoff: datetime  # ended before this: now − retention, as the job computed it


def _mask_phones(text: str) -> str:
    return PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(1)), text)


def scrub(ticket: Ticket, at: datetime, reason: str) -> bool:
    """Erase the customer's contact data from the ticket; True when something changed."""
    before = (ticket.description, ticket.site_lat, ticket.site_lng, repr(ticket.data.get(MASTERDATA)),
              repr(ticket.data.get("follow_ups")))
    facts = ticket.data.get(MASTERDATA)
    if isinstance(facts, dict):
        customer = facts.get("customer")
        if isinstance(customer, dict):
            facts["customer"] = {"id": customer.get("id"), "matched_by": customer.get("matched_by")}
        if facts.get("address"):
            facts["address"] = None
    ticket.site_lat = ticket.site_lng = None
    ticket.description = _mask_phones(ticket.description)
    follow_ups = ticket.data.get("follow_ups")
    last = follow_ups.get("last") if isinstance(follow_ups, dict) else None
    if isinstance(last, dict) and isinstance(last.get("text"), str):
        last["text"] = _mask_phones(last["text"])
    after = (ticket.description, ticket.site_lat, ticket.site_lng, repr(ticket.data.get(MASTERDATA)),
             repr(ticket.data.get("follow_ups")))
    changed = before != after
    if changed or PRIVACY not in ticket.data:
        ticket.data[PRIVACY] = {"purged_at": at.isoformat(), "reason": reason}
    return changed


def is_scrubbed(ticket: Ticket) -> bool:
    return isinstance(ticket.data.get(PRIVACY), dict)


@handles(ForgetCustomer)
async def forget_customer(ctx: Context, cmd: ForgetCustomer) -> dict[str, Any]:
    """Scrub every ticket of the customer, then erase their master record, phone and identities."""
    person_id = cmd.person_id.strip()
    person = await ctx.uow.get_person(person_id) if person_id else None
    if person is None or person.role is not Role.CUSTOMER:
        raise NotFound(f"没有编号为「{person_id}」的客户。", person_id=person_id)
    # Lock order (core/timers.py): the tickets, then the audit chain's head, then other rows.
    tickets = [await ctx.ticket(t.number) for t in await ctx.uow.list_tickets(customer_id=person_id,
                                                                            limit=MAX_TICKETS)]
    for ticket in tickets:
        scrub(ticket, ctx.now, "forget")
        ticket.updated_at = ctx.now
        await ctx.uow.save_ticket(ticket)
    for ticket in tickets:
        await ctx.audit("contact_data_purged", {"reason": "forget"}, ticket)
    await ctx.audit("customer_forgotten", {"customer_id": person_id, "tickets": len(tickets)})
    await forget_pending(ctx, person_id)
    md = ctx.uow.masterdata()
    if await md.get_customer(person_id) is None:
        # A customer known only from the chat has no master record yet: make one to erase, so the
        # erasure (people.phone, identities, forgotten_at) is the same for everyone.
        await md.upsert_customer(CustomerRecord(id=person_id, name=person.name), at=ctx.now)
    await md.forget_customer(person_id, at=ctx.now)
    return {"customer": person_id, "forgotten": True, "tickets": len(tickets)}


async def forget_pending(ctx: Context, person_id: str) -> None:
    """A location kept for the customer's next report (core/intake/details.py) goes too: the row is
    emptied, then cancelled (cancelling alone would keep its payload)."""
    key = pending_key(person_id)
    if await ctx.uow.get_timer(PENDING_KIND, key) is not None:
        await ctx.uow.schedule_timer(kind=PENDING_KIND, ticket_number=key, due_at=ctx.now,
                                     payload={"person": person_id})
        await ctx.uow.cancel_timers(key, {PENDING_KIND})


@handles(PurgeContactData)
async def purge_contact_data(ctx: Context, cmd: PurgeContactData) -> int:
    """Scrub the given tickets if they are still closed beyond the retention; returns how many changed."""
    due: list[Ticket] = []
    for number in cmd.numbers:  # every ticket locked before the audit chain's head (core/timers.py)
        ticket = await ctx.uow.get_ticket(number, lock=True)
        if ticket is None or ticket.status.is_open or is_scrubbed(ticket):
            continue
        if (ticket.closed_at or ticket.updated_at) < cmd.cutoff:
            scrub(ticket, ctx.now, "retention")
            await ctx.uow.save_ticket(ticket)
            due.append(ticket)
    for ticket in due:
        await ctx.audit("contact_data_purged", {"reason": "retention", "retention_days": cmd.retention_days}, ticket)
    return len(due)
