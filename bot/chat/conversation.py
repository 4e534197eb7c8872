"""Conversation flows: an inbound message (any platform) becomes a command or a reply.

Order of precedence for text: registered bot commands (规则…, 派单规则, 签到, 完工 …) by
their leading word, then "my tickets"/"ticket N" questions, then the classifier's intent:
a fault becomes a ticket, anything else gets a helpful conversational answer.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from core.commands import ListMyTickets, PressCardAction, ReportFault, ShowTicket
from core.errors import TicketbotError
from core.inbound import InboundKind, InboundMessage
from core.model import Person, Role
from core.replies import Reply
from core.repository import UnitOfWork
from core.service import NewActor, TicketService

log = logging.getLogger(__name__)

TICKET_NUMBER = re.compile(r"\b([A-Za-z]{2}-\d{8}-\d{4})\b")
MAX_TEXT = 2000

HELP_TEXT = (
    "您好，我是工单助手。\n"
    "· 直接描述故障即可报修，例如「底盘有异响」「中控黑屏」\n"
    "· 发送「进度」或「我的工单」查看工单状态\n"
    "· 发送「工单 GD-20260101-0001」查看某张工单的详情\n"
    "· 发送「帮助」再次查看本说明"
)
CONVERSATIONAL_REPLIES = {
    "greeting": "您好！请直接描述遇到的故障（例如「底盘有异响」「中控黑屏」），我会马上为您创建工单。",
    "thanks": "不客气，有需要随时找我。",
    "price": "具体费用需要技师检测后报价，报修后技师会在现场与您确认方案和价格。",
    "booking": "如需预约，请直接描述故障和方便的时间，我会创建工单并安排技师与您确认上门时间。",
    "invoice": "发票会在工单结案后由门店开具，如需加急请联系门店前台。",
    "smalltalk": HELP_TEXT,
    "empty": "没有收到内容哦。" + HELP_TEXT,
}


@dataclass(frozen=True, slots=True)
class Incoming:
    """What a text command handler gets."""

    person: Person
    text: str  # the whole message, normalised whitespace
    args: list[str]  # words after the command word
    message: InboundMessage


TextHandler = Callable[["Conversation", Incoming], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class TextCommand:
    words: tuple[str, ...]  # leading words that select it (first match wins; longest first)
    handler: TextHandler
    roles: frozenset[Role] | None = None  # None: everyone
    summary: str = ""


_TEXT_COMMANDS: list[TextCommand] = []
# Handlers for non-text kinds (image → photo for the current job, location → position ...).
InboundHandler = Callable[["Conversation", Person, InboundMessage], Awaitable[None]]
_INBOUND_HANDLERS: dict[InboundKind, InboundHandler] = {}


def inbound_handler(kind: InboundKind) -> Callable[[InboundHandler], InboundHandler]:
    def register(fn: InboundHandler) -> InboundHandler:
        _INBOUND_HANDLERS[kind] = fn
        return fn

    return register


def text_command(*words: str, roles: set[Role] | None = None, summary: str = "") -> Callable[[TextHandler],
                                                                                           TextHandler]:
    def register(fn: TextHandler) -> TextHandler:
        _TEXT_COMMANDS.append(TextCommand(tuple(words), fn, frozenset(roles) if roles else None, summary))
        _TEXT_COMMANDS.sort(key=lambda c: -max(len(w) for w in c.words))
        return fn

    return register


CUSTOMER_COMMANDS = ("我的工单", "同意方案", "仍未修好", "设备编号")
# Commands registered for everyone that check the role themselves: listed for staff only.
STAFF_COMMANDS = ("模板", "重开未签字工单", "规则", "SOP", "确认", "取消", "放弃", "test dispatch")


def help_for(person: Person) -> str:
    """The help text plus the commands this person's role can use (from their registrations)."""
    seen: set[str] = set()
    lines = []
    for cmd in sorted(_TEXT_COMMANDS, key=lambda c: c.words[0]):
        word = cmd.words[0]
        if not cmd.summary or word in seen:
            continue
        if person.role == Role.CUSTOMER:
            allowed = word in CUSTOMER_COMMANDS
        elif person.role not in {Role.ADMIN, Role.SUPERVISOR}:
            allowed = (cmd.roles is None or person.role in cmd.roles) and word not in STAFF_COMMANDS \
                and "管理员" not in cmd.summary and "主管" not in cmd.summary
        else:
            allowed = cmd.roles is None or person.role in cmd.roles
        if allowed:
            seen.add(word)
            lines.append(f"· {word}：{cmd.summary}")
    return HELP_TEXT + ("\n可用命令：\n" + "\n".join(lines) if lines else "")


def normalise_text(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u3000", " ")).strip()


class Conversation:
    def __init__(self, service: TicketService, extra: dict[str, Any] | None = None, *,
                 lookup_factory: Callable[[], UnitOfWork] | None = None) -> None:
        self.service = service
        # For the sender lookup of every message: a read and, rarely, one update, which need no
        # savepoint of their own (three statements less per message on SQLite).
        self._lookup_factory = lookup_factory or service.uow_factory
        # Shared things text commands need (rule store, photo store ...), set by the composition root.
        self.extra: dict[str, Any] = extra or {}
        # New senders, by the (platform, event key) of the message that introduced them: the first
        # command of that message that commits stores them.
        self._unstored: dict[tuple[str, str], NewActor] = {}

    async def handle(self, message: InboundMessage) -> None:
        person = await self.resolve_sender(message)
        try:
            await self._route(person, message)
        except TicketbotError as error:
            await self.reply(person, message, error.user_message)
        finally:
            self._unstored.pop((message.platform, message.event_key), None)

    async def reply(self, person: Person, message: InboundMessage | None, text: str) -> None:
        if message is None:
            await self.service.handle(Reply(text), person)
        else:
            await self.run(Reply(text), person, message)

    async def run(self, command: object, person: Person, message: InboundMessage) -> Any:
        return await self.service.handle(command, person, reply_context=message.reply_context,
                                         new_actor=self._unstored.get((message.platform, message.event_key)))

    async def store_sender(self, person: Person, message: InboundMessage) -> None:
        """Store a new sender now: before handlers that use the directory themselves."""
        new = self._unstored.pop((message.platform, message.event_key), None)
        if new is not None and not new.stored:
            async with self.service.uow_factory() as uow:
                await uow.add_person(person, dict(new.identities))
                await uow.commit()

    async def resolve_sender(self, message: InboundMessage) -> Person:
        """Directory person for this platform identity; an unknown sender becomes a new customer.

        A new customer is stored by the first command their message runs, in its transaction
        (one transaction less for a first message), or by `store_sender` before any other handler."""
        async with self._lookup_factory() as uow:
            person = await uow.person_by_identity(message.platform, message.sender)
            if person is None:
                person_id = message.sender if message.platform == "local" else f"c-{uuid.uuid4().hex[:16]}"
                name = message.sender_name or f"客户{message.sender[-4:]}"
                person = Person(id=person_id, name=name, role=Role.CUSTOMER, preferred_channel=message.platform)
                self._unstored[(message.platform, message.event_key)] = NewActor({message.platform: message.sender})
            elif person.preferred_channel != message.platform:
                # Answer people where they last spoke to us.
                person.preferred_channel = message.platform
                await uow.save_person(person)
                await uow.commit()
        return person

    async def _route(self, person: Person, message: InboundMessage) -> None:
        kind = message.kind
        if kind == InboundKind.CARD_ACTION:
            await self.run(PressCardAction(message.card_id or "", message.action or "", dict(message.values)),
                           person, message)
        elif kind == InboundKind.TEXT:
            await self.on_text(person, message)
        elif kind == InboundKind.ENTER:
            await self.reply(person, message, HELP_TEXT)
        else:
            handler = _INBOUND_HANDLERS.get(kind)
            if handler is None:
                await self.reply(person, message, "暂不支持这种消息。" + HELP_TEXT)
            else:
                await self.store_sender(person, message)
                await handler(self, person, message)

    async def on_text(self, person: Person, message: InboundMessage) -> None:
        text = normalise_text(message.text or "")
        if not text:
            await self.reply(person, message, CONVERSATIONAL_REPLIES["empty"])
            return
        if len(text) > MAX_TEXT:
            await self.reply(person, message, f"消息太长了（{len(text)} 字），请精简到 {MAX_TEXT} 字以内再发送。")
            return
        # jieba's dictionary loads in a thread at start-up: a text that arrives meanwhile waits for it
        # here (the loop keeps running) instead of loading it on the loop in classify (bot.rules.rulebook).
        ready = getattr(self.service.classifier, "ready", None)
        if ready is not None:
            await ready()
        command = self.match_command(text)
        if command is not None:
            cmd, args = command
            if cmd.roles is not None and person.role not in cmd.roles:
                await self.reply(person, message, "抱歉，这个命令只有管理人员可以使用。")
                return
            await self.store_sender(person, message)
            await cmd.handler(self, Incoming(person, text, args, message))
            return
        if text in {"帮助", "help", "菜单", "?", "？"}:
            await self.reply(person, message, help_for(person))
            return
        number = TICKET_NUMBER.search(text)
        if number and len(text) <= 40:
            await self.run(ShowTicket(number.group(1).upper()), person, message)
            return
        analysis = self.service.classifier.classify(text)
        if analysis.intent in {"fault", "unknown_fault"}:
            await self.run(ReportFault(text), person, message)
        elif analysis.intent == "status":
            await self.run(ListMyTickets(), person, message)
        else:
            await self.reply(person, message, CONVERSATIONAL_REPLIES.get(analysis.intent, HELP_TEXT))

    @staticmethod
    def match_command(text: str) -> tuple[TextCommand, list[str]] | None:
        for cmd, word, spaced in _commands_starting_with(text[:1]):
            if text == word or text.startswith(spaced):
                return cmd, text[len(word):].split()
        return None


# Every message is matched against the commands: by first character, in registration (longest first) order.
_BY_FIRST: dict[str, list[tuple[TextCommand, str, str]]] = {}
_INDEXED: list[int] = [-1]  # how many commands the index holds


def _commands_starting_with(first: str) -> list[tuple[TextCommand, str, str]]:
    if _INDEXED[0] != len(_TEXT_COMMANDS):
        _BY_FIRST.clear()
        for cmd in _TEXT_COMMANDS:
            for word in cmd.words:
                _BY_FIRST.setdefault(word[:1], []).append((cmd, word, word + " "))
        _INDEXED[0] = len(_TEXT_COMMANDS)
    return _BY_FIRST.get(first, [])


@text_command("我的工单", "进度", "查进度", "查询进度", summary="查看我的工单")
async def _my_tickets(conv: Conversation, inc: Incoming) -> None:
    await conv.run(ListMyTickets(), inc.person, inc.message)
