"""Who answers for a ticket or a person: the supervisor chain of the organisation.

One function for everyone who escalates or asks a supervisor (SLA escalation, dispatch that found
nobody, parts, rework, sign-off callbacks, intake's triage notes), so that a breach at store S03
reaches S03's supervisor and not every supervisor of the chain.

The first level, most specific first:
  1. the handler's direct supervisor (Person.supervisor_id, active);
  2. the active supervisors of the ticket's store (Ticket.store_id; people with role supervisor whose
     store_id is that store);
  3. the active supervisors of the handler's own store (a technician lent to another store);
  4. when no store names anybody (a ticket from a chat or the API with no store yet): the chain-wide
     supervisors, those without a store of their own (headquarters' dispatch desk) — a chain of 50
     stores does not send 50 store managers a card for every store-less ticket;
  5. only as a last resort, when the organisation names nobody at all: every active supervisor (a
     service without stores or supervisor links keeps working as before master data existed).
Higher levels follow Person.supervisor_id upward (`supervisors_above`); the SLA's second level goes
there, and to the admins (the director) when nobody is above.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.model import Person, Role, Ticket
from core.service import Context

BOSS_ROLES = frozenset({Role.SUPERVISOR, Role.ADMIN})


async def _active(ctx: Context, person_id: str | None) -> Person | None:
    if not person_id:
        return None
    person = await ctx.uow.get_person(person_id)
    return person if person is not None and person.active else None


async def store_supervisors(ctx: Context, store_id: str | None) -> list[Person]:
    """The active supervisors whose store is `store_id` (none for no store)."""
    if not store_id:
        return []
    return await ctx.uow.list_people(Role.SUPERVISOR, stores=[store_id])


async def supervisor_chain(ctx: Context, ticket: Ticket | None = None, person: Person | str | None = None,
                           *, fallback: bool = True) -> list[Person]:
    """The first level of supervisors for `ticket` handled by `person` (default: its assignee).

    `fallback=False`: [] instead of every supervisor when the organisation names nobody."""
    # A deactivated handler still has a supervisor who answers for their tickets.
    handler = person if isinstance(person, Person) else await ctx.uow.get_person(person) if person else None
    if handler is None and person is None and ticket is not None and ticket.assignee_id:
        handler = await ctx.uow.get_person(ticket.assignee_id)
    if handler is not None:
        boss = await _active(ctx, handler.supervisor_id)
        if boss is not None and boss.id != handler.id:
            return [boss]
    store_id = ticket.store_id if ticket is not None else None
    handler_store = handler.store_id if handler is not None else None
    if not store_id and not handler_store and not fallback:
        return []  # no store names anybody, and no fallback wanted: nothing to read
    # Every level below in one query that reads only their candidates (asking per store took up to three;
    # reading every supervisor cost a row each, 50 of them in a chain of 50 stores): the supervisors of the
    # ticket's and the handler's store and headquarters' — or, when there are none, every supervisor.
    wanted: list[str | None] = [s for s in (store_id, handler_store) if s]
    nearby = await ctx.uow.list_people(Role.SUPERVISOR, stores=[*wanted, None] if fallback else wanted,
                                       or_all=fallback)
    found = [p for p in nearby if p.store_id == store_id] if store_id else []
    if not found and handler_store and handler_store != store_id:
        found = [p for p in nearby if p.store_id == handler_store]
    if found or not fallback:
        return [p for p in found if handler is None or p.id != handler.id]
    return [p for p in nearby if not p.store_id] or nearby


async def supervisors_above(ctx: Context, people: Iterable[Person | str]) -> list[Person]:
    """The next level up: the active direct supervisors of `people` (not one of them, each once)."""
    level = [p if isinstance(p, Person) else await ctx.uow.get_person(p) for p in people]
    below = {p.id for p in level if p is not None}
    above: dict[str, Person] = {}
    for p in level:
        boss = await _active(ctx, p.supervisor_id) if p is not None else None
        if boss is not None and boss.id not in below and boss.role in BOSS_ROLES:
            above.setdefault(boss.id, boss)
    return list(above.values())
