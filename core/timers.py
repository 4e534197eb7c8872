"""Durable timer handlers. The timer row is the truth; an engine (in-process loop or arq)
only decides when to call `FireTimer`. Handlers re-read state and must be idempotent.

Lock order (PostgreSQL row locks; SQLite serialises whole transactions): a card being pressed, then
the ticket, then the audit chain's head, then any other row (per-person digest timers, a timer of no
ticket). A ticket's own timer rows are written only by whoever holds its ticket, so they need no place
of their own. Commands follow it: they lock their ticket first, and the head at their first audit
(or when dispatch reads the chain), before the digest timers of the people they remind. FireTimer
follows it too: it reads its row without a lock to learn the ticket, locks the ticket, then the head,
and only then claims the row and runs the handler. Claiming first deadlocked with a command moving
the ticket's timers, and taking the head last (at the first audit) with a breach that held the head
and waited for a digest timer the firing had locked (issue 19). A claim that finds the generation
bumped meanwhile does nothing. The head is one lock for every appender anyway: taking it before the
handler rather than at its first audit serialises little more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.model import Ticket
from core.repository import TimerRow
from core.service import Context, handles

TimerHandler = Callable[[Context, Ticket | None, dict[str, Any]], Awaitable[None]]
_TIMER_HANDLERS: dict[str, TimerHandler] = {}


def timer_handler(kind: str) -> Callable[[TimerHandler], TimerHandler]:
    def register(fn: TimerHandler) -> TimerHandler:
        _TIMER_HANDLERS[kind] = fn
        return fn

    return register


@dataclass(frozen=True, slots=True)
class FireTimer:
    timer_id: int
    generation: int


@handles(FireTimer)
async def fire_timer(ctx: Context, cmd: FireTimer) -> bool:
    """Fire one due timer exactly once: a stale generation or a fired/cancelled row does nothing."""
    seen = await ctx.uow.peek_timer(cmd.timer_id)
    if seen is None or not _may_fire(seen, cmd.generation, ctx.now):
        return False  # stale or early, as the claim would find: no lock taken for nothing
    ticket = await ctx.uow.get_ticket(seen.ticket_number, lock=True) if seen.ticket_number else None
    await ctx.uow.lock_audit_chain(ctx.now)  # before the row, and before what the handler locks
    timer = await ctx.uow.claim_timer(cmd.timer_id, cmd.generation, ctx.now)
    if timer is None:
        return False  # rescheduled or cancelled while we waited for the ticket
    handler = _TIMER_HANDLERS.get(timer.kind)
    if handler is not None:
        await handler(ctx, ticket, timer.payload)
    await ctx.audit("timer_fired", {"kind": timer.kind, "timer_id": timer.id, "generation": timer.generation,
                                    "due_at": timer.due_at.isoformat()}, ticket)
    return True


def _may_fire(timer: TimerRow, generation: int, now: datetime) -> bool:
    return timer.generation == generation and timer.state == "pending" and timer.due_at <= now
