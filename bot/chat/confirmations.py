"""确认 / 取消 for pending high-risk changes, shared by every feature that asks for a confirmation.

A feature registers a `Confirmable` (has something pending for this person? confirm it; drop
it). The one 确认 command asks them in registration order and the first with something pending
acts, so two features never both react to one 确认. When none has anything pending, the word
goes to any other chat command registered for it (bot.chat.template still registers its
own 确认/放弃 and hands over the same way), else the person hears that nothing is pending.

To use it from a new feature: `register(Confirmable("我的功能", has_pending, confirm, cancel))`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass

from bot.chat.conversation import _TEXT_COMMANDS, Conversation, HelpLine, Incoming, text_command
from core.errors import InvalidInput, NotFound
from core.model import Person, Role
from core.service import Context

CONFIRM_WORDS = ("确认", "确定", "confirm")
CANCEL_WORDS = ("取消", "放弃", "cancel")

HasPending = Callable[[Conversation, Person], Awaitable[bool]]
Act = Callable[[Conversation, Incoming], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Confirmable:
    name: str
    has_pending: HasPending
    confirm: Act
    cancel: Act


_CONFIRMABLES: list[Confirmable] = []
# Set while we hand the word to another command, which may hand it back: then we stop.
_handing_over: ContextVar[bool] = ContextVar("confirmations_handing_over", default=False)


def admin_pending(pending_change: Callable[[Context], Awaitable[object | None]]) -> HasPending:
    """A `has_pending` for an admin feature whose core keeps the pending change (`pending_change(ctx)`)."""

    async def has_pending(conv: Conversation, person: Person) -> bool:
        if person.role is not Role.ADMIN:
            return False
        async with conv.service.uow_factory() as uow:
            ctx = Context(uow=uow, clock=conv.service.clock, actor=person, service=conv.service)
            return await pending_change(ctx) is not None

    return has_pending


def register(confirmable: Confirmable) -> Confirmable:
    if all(c.name != confirmable.name for c in _CONFIRMABLES):
        _CONFIRMABLES.append(confirmable)
    return confirmable


async def _answer(conv: Conversation, inc: Incoming, *, confirm: bool) -> None:
    for confirmable in _CONFIRMABLES:
        if await confirmable.has_pending(conv, inc.person):
            if inc.args:
                word = "确认" if confirm else "取消"
                raise InvalidInput(f"只需回复「{word}」两个字。")
            await (confirmable.confirm if confirm else confirmable.cancel)(conv, inc)
            return
    if await _hand_over(conv, inc):
        return
    raise NotFound("没有待确认的操作。")


async def _hand_over(conv: Conversation, inc: Incoming) -> bool:
    """Give the message to another command registered for the same word (not ours)."""
    if _handing_over.get():
        return False
    word = inc.text.split(" ", 1)[0]
    for command in _TEXT_COMMANDS:
        if command.handler in (_confirm, _cancel) or word not in command.words:
            continue
        if command.roles is not None and inc.person.role not in command.roles:
            continue
        token = _handing_over.set(True)
        try:
            await command.handler(conv, inc)
        finally:
            _handing_over.reset(token)
        return True
    return False


# Anyone may say 确认/取消 (someone with nothing pending hears so); only admins have changes that wait
# for one (rules, templates, reopening unsigned tickets), so 帮助 lists them for admins.
@text_command(*CONFIRM_WORDS, help=(HelpLine("确认｜取消", "执行或放弃待确认的高风险修改（15 分钟内有效）",
                                             frozenset({Role.ADMIN})),))
async def _confirm(conv: Conversation, inc: Incoming) -> None:
    await _answer(conv, inc, confirm=True)


@text_command(*CANCEL_WORDS)
async def _cancel(conv: Conversation, inc: Incoming) -> None:
    await _answer(conv, inc, confirm=False)
