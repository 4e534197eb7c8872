"""Durable timer handlers. The timer row is the truth; an engine (in-process loop or arq)
only decides when to call `FireTimer`. Handlers re-read state and must be idempotent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from core.model import Ticket
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
    timer = await ctx.uow.claim_timer(cmd.timer_id, cmd.generation, ctx.now)
    if timer is None:
        return False
    handler = _TIMER_HANDLERS.get(timer.kind)
    ticket = await ctx.uow.get_ticket(timer.ticket_number, lock=True) if timer.ticket_number else None
    if handler is not None:
        await handler(ctx, ticket, timer.payload)
    await ctx.audit("timer_fired", {"kind": timer.kind, "timer_id": timer.id, "generation": timer.generation,
                                    "due_at": timer.due_at.isoformat()}, ticket)
    return True
