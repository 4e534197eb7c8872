"""TASK cards (warehouse to-dos, plan confirmations, QC checks, callbacks) of several features
share one CardKind, and core.intake.tickets keeps one handler per kind: this routes by card-id prefix.

A feature registers `@task_action("parts")` and creates its cards with `ctx.new_card_id("parts")`.
A handler registered for TASK before this module was imported keeps the cards it knows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from core.cards import CardKind
from core.errors import InvalidInput
from core.intake.tickets import _CARD_HANDLERS, CardHandler, card_handler
from core.repository import StoredCard
from core.service import Context

_ROUTES: dict[str, CardHandler] = {}
_FALLBACK: CardHandler | None = _CARD_HANDLERS.get(CardKind.TASK)


def task_action(prefix: str) -> Callable[[CardHandler], CardHandler]:
    def register(fn: CardHandler) -> CardHandler:
        _ROUTES[prefix] = fn
        return fn

    return register


@card_handler(CardKind.TASK)
async def route_task_card(ctx: Context, stored: StoredCard, action: str, values: dict[str, str]) -> str:
    prefix = stored.card.id.split("-", 1)[0]
    handler = _ROUTES.get(prefix) or _FALLBACK
    if handler is None:
        raise InvalidInput("这张卡片不需要操作。", card_id=stored.card.id)
    return await handler(ctx, stored, action, values)


TaskHandler = Callable[[Context, StoredCard, str, dict[str, str]], Awaitable[str]]
