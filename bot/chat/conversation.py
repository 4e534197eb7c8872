"""Conversation flows: an inbound message (any platform) becomes a command or a reply.

Order of precedence for text: registered bot commands (规则…, 派单规则, 签到, 完工 …) by
their leading word, then "ticket N" questions, then the classifier's intent: a fault becomes
a ticket, anything else gets a helpful conversational answer (customers and staff get
different ones).

The command registry (`@text_command`) is the one place that says who may use a command: the
runner refuses everyone else, and `帮助` lists, per role, exactly what the registry allows.
Every refusal by role or ownership — the registry's, a handler's, the core's — is a
`NotAllowed`; `Conversation.handle` answers it and audits it (`RefuseCommand`) in a small
transaction of its own.
"""

from __future__ import annotations

import itertools
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from core.audit.refusals import RefuseCommand
from core.commands import ListMyTickets, PressCardAction, ReportFault, ShowTicket, SplitFollowUp
from core.errors import NotAllowed, TicketbotError
from core.inbound import InboundKind, InboundMessage, Later
from core.intake.details import ADDRESS_LIKE, GiveAddress
from core.model import ROLE_LABELS, Person, Role
from core.replies import Reply
from core.repository import UnitOfWork
from core.service import NewActor, TicketService

log = logging.getLogger(__name__)

TICKET_NUMBER = re.compile(r"\b([A-Za-z]{2}-\d{8}-\d{4})\b")
MAX_TEXT = 2000
HELP_WORDS = frozenset({"帮助", "help", "菜单", "?", "？"})
KIND_WORDS = {InboundKind.IMAGE: "图片", InboundKind.LOCATION: "位置"}  # what a refused non-text message was

HELP_TEXT = (
    "您好，我是工单助手。\n"
    "· 直接描述故障即可报修，例如「底盘有异响」「中控黑屏」\n"
    "· 发送「进度」或「我的工单」查看工单状态\n"
    "· 发送「工单 GD-20260101-0001」查看某张工单的详情\n"
    "· 已有未结工单时再报同一设备或同类故障，会记为该工单的补充说明；是新问题请发送「新问题 描述」\n"
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
# Staff are not asked to describe a fault: they get their own commands.
STAFF_THANKS = "不客气。"
CLOSING_FOR_STAFF = ("工单只能由客户签字结案：完工后客户会收到签字卡片，确认并评分后工单自动结案；"
                     "客户迟迟不签字时，主管会收到回访任务。")
CLOSING_FOR_CUSTOMERS = ("工单在您签字确认后结案：技师完工后您会收到签字卡片，勾选确认并评分即可。"
                         "如问题仍未解决，请发送「仍未修好」。")


@dataclass(frozen=True, slots=True)
class Incoming:
    """What a text command handler gets."""

    person: Person
    text: str  # the whole message, normalised whitespace
    args: list[str]  # words after the command word
    message: InboundMessage


TextHandler = Callable[["Conversation", Incoming], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class HelpLine:
    """One line of `帮助`: shown to whoever may run the command and, when `roles` is set, has one of them."""

    usage: str  # e.g. "质检不通过 工单号 原因"
    summary: str
    roles: frozenset[Role] | None = None


@dataclass(frozen=True, slots=True)
class TextCommand:
    words: tuple[str, ...]  # leading words that select it (first match wins; longest first)
    handler: TextHandler
    roles: frozenset[Role] | None = None  # None: everyone
    summary: str = ""  # "" and no help lines: not listed in 帮助
    help: tuple[HelpLine, ...] = ()  # the lines 帮助 shows (default: the first word and the summary)
    refusal: str = ""  # the answer to someone whose role is not in `roles` (default: generated)
    seq: int = 0  # registration order: the order of 帮助


_TEXT_COMMANDS: list[TextCommand] = []
_SEQ = itertools.count()
# Handlers for non-text kinds (image → photo for the current job, location → position ...).
InboundHandler = Callable[["Conversation", Person, InboundMessage], Awaitable[None]]
_INBOUND_HANDLERS: dict[InboundKind, InboundHandler] = {}


def inbound_handler(kind: InboundKind) -> Callable[[InboundHandler], InboundHandler]:
    def register(fn: InboundHandler) -> InboundHandler:
        _INBOUND_HANDLERS[kind] = fn
        return fn

    return register


def text_command(*words: str, roles: Iterable[Role] | None = None, summary: str = "", usage: str = "",
                 help: Iterable[HelpLine] = (), refusal: str = "") -> Callable[[TextHandler], TextHandler]:
    """Register a chat command. `roles`: who may use it (None: everyone) — the runner refuses and
    audits anyone else, and 帮助 lists it for exactly these roles. `usage`/`summary`: its 帮助 line;
    `help`: more lines, each for some of the roles (e.g. sub-commands only admins may use)."""
    lines = tuple(help)
    if summary:
        lines = (HelpLine(usage or words[0], summary), *lines)

    def register(fn: TextHandler) -> TextHandler:
        _TEXT_COMMANDS.append(TextCommand(tuple(words), fn, frozenset(roles) if roles else None, summary, lines,
                                          refusal, next(_SEQ)))
        _TEXT_COMMANDS.sort(key=lambda c: -max(len(w) for w in c.words))
        return fn

    return register


def may_use(person: Person, command: TextCommand) -> bool:
    return command.roles is None or person.role in command.roles


def role_names(roles: Iterable[Role]) -> str:
    """「主管和管理员」: the roles' labels in the directory's order."""
    labels = [ROLE_LABELS[r] for r in Role if r in set(roles)]
    return labels[0] if len(labels) == 1 else "、".join(labels[:-1]) + "和" + labels[-1]


def refusal_for(person: Person, command: TextCommand, word: str) -> str:
    if command.refusal:
        return command.refusal
    text = f"抱歉，您没有权限：「{word}」只有{role_names(command.roles or ())}可以使用。"
    if person.role is Role.CUSTOMER:
        text += "如需报修，请直接描述故障；查询进度请发送「进度」。"
    return text


def help_lines(person: Person) -> list[str]:
    """The 帮助 lines for this person's role, from the registry, in registration order."""
    seen: set[str] = set()
    lines = []
    for cmd in sorted(_TEXT_COMMANDS, key=lambda c: c.seq):
        if not may_use(person, cmd):
            continue
        for line in cmd.help:
            if (line.roles is None or person.role in line.roles) and line.usage not in seen:
                seen.add(line.usage)
                lines.append(f"· {line.usage}：{line.summary}")
    return lines


def help_for(person: Person) -> str:
    """What 帮助 answers: the customer's guide, or a staff greeting, then the commands of the role."""
    lines = help_lines(person)
    if person.role is Role.CUSTOMER:
        return HELP_TEXT + ("\n可用命令：\n" + "\n".join(lines) if lines else "")
    return f"您好，{person.name}。以下是{ROLE_LABELS[person.role]}可以使用的命令：\n" + "\n".join(lines)


def welcome(person: Person) -> str:
    """The first answer to someone who opens the chat (or says something we have no answer for)."""
    return HELP_TEXT if person.role is Role.CUSTOMER else help_for(person)


def conversational_reply(person: Person, intent: str) -> str:
    if person.role is Role.CUSTOMER:
        return CONVERSATIONAL_REPLIES.get(intent, HELP_TEXT)
    if intent == "thanks":
        return STAFF_THANKS
    return ("没有收到内容哦。" if intent == "empty" else "") + help_for(person)


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
        # Work left for after the message's transaction, by the message's (platform, event key).
        self._later: dict[tuple[str, str], Later] = {}

    async def handle(self, message: InboundMessage) -> Later | None:
        """Handle a message inside the caller's transaction. Returns what a handler left for after
        it (`answer_later`), for the caller to run once that transaction has ended, or None."""
        key = (message.platform, message.event_key)
        person = await self.resolve_sender(message)
        later: Later | None = None
        try:
            try:
                await self._route(person, message)
            except NotAllowed as refusal:
                await self.refuse(person, message, refusal)
            except TicketbotError as error:
                await self.reply(person, message, error.user_message)
            else:
                later = self._later.get(key)
        finally:
            self._unstored.pop(key, None)
            self._later.pop(key, None)
        return None if later is None else self._answered(person, message, later)

    def answer_later(self, message: InboundMessage, read: Callable[[], Awaitable[Any]],
                     answer: Callable[[Any], Awaitable[None]]) -> None:
        """For a handler whose work is a long read off the loop (报表): `read()` runs after this
        message's transaction, outside any transaction, and `answer(what it read)` then runs in a
        transaction of its own, which also finishes the message's inbox row. So the message's
        transaction (on SQLite: the group commit every other message joins) and the processing slot
        are not held while the read runs. A crash before the answer leaves the row to the sweep,
        which handles the message again: what the handler did before must be safe to repeat (reads)."""
        self._later[(message.platform, message.event_key)] = Later(read, answer)

    def _answered(self, person: Person, message: InboundMessage, later: Later) -> Later:
        """`later` with its refusals and errors for the user answered as the handler's own would be."""

        async def read() -> tuple[bool, Any]:
            try:
                return True, await later.read()
            except TicketbotError as error:
                return False, error

        async def answer(result: tuple[bool, Any]) -> None:
            ok, value = result
            try:
                if not ok:
                    raise value
                await later.answer(value)
            except NotAllowed as refusal:
                await self.refuse(person, message, refusal)
            except TicketbotError as error:
                await self.reply(person, message, error.user_message)

        return Later(read, answer)

    async def refuse(self, person: Person, message: InboundMessage, refusal: NotAllowed) -> None:
        """The one place a refusal is answered and audited (the refused command's work rolled back)."""
        number = str(refusal.data["number"]) if refusal.data.get("number") else None
        reason = str(refusal.data.get("reason") or "")
        if message.kind == InboundKind.CARD_ACTION:
            command = RefuseCommand("卡片操作", "", refusal.user_message, number, message.card_id or "",
                                    message.action or "", reason)
        elif message.kind == InboundKind.TEXT:
            text = normalise_text(message.text or "")
            matched = self.match_command(text)
            word = matched[0].words[0] if matched else text.split(" ", 1)[0]
            if number is None and (mentioned := TICKET_NUMBER.search(text)):
                number = mentioned.group(1).upper()
            command = RefuseCommand(word, text, refusal.user_message, number, reason=reason)
        else:
            command = RefuseCommand(KIND_WORDS.get(message.kind, str(message.kind)), "", refusal.user_message,
                                    number, reason=reason)
        await self.run(command, person, message)

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
            await self.reply(person, message, welcome(person))
        else:
            handler = _INBOUND_HANDLERS.get(kind)
            if handler is None:
                await self.reply(person, message, "暂不支持这种消息。" + welcome(person))
            else:
                await self.store_sender(person, message)
                await handler(self, person, message)

    async def on_text(self, person: Person, message: InboundMessage) -> None:
        text = normalise_text(message.text or "")
        if not text:
            await self.reply(person, message, conversational_reply(person, "empty"))
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
            if not may_use(person, cmd):
                typed = next(w for w in cmd.words if text == w or text.startswith(w + " "))
                raise NotAllowed(refusal_for(person, cmd, typed), role=person.role.value)
            await self.store_sender(person, message)
            await cmd.handler(self, Incoming(person, text, args, message))
            return
        await self.understand(person, message, text)

    async def understand(self, person: Person, message: InboundMessage, text: str) -> None:
        """Text that is no command: help, a ticket number, else what the classifier makes of it."""
        if text in HELP_WORDS:
            await self.reply(person, message, help_for(person))
            return
        number = TICKET_NUMBER.search(text)
        if number and len(text) <= 40:
            await self.run(ShowTicket(number.group(1).upper()), person, message)
            return
        analysis = self.service.classifier.classify(text)
        if person.role is Role.CUSTOMER and not analysis.category and ADDRESS_LIKE.search(text) \
                and await self.run(GiveAddress(text, explicit=False), person, message) is not None:
            return  # the address a ticket of theirs asked for (core/intake/details.py)
        if analysis.intent in {"fault", "unknown_fault"}:
            await self.run(ReportFault(text), person, message)
        elif analysis.intent == "status":
            await self.run(ListMyTickets(), person, message)
        else:
            await self.reply(person, message, conversational_reply(person, analysis.intent))

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


@text_command("我的工单", "进度", "查进度", "查询进度", usage="进度｜我的工单", summary="查看工单进度")
async def _my_tickets(conv: Conversation, inc: Incoming) -> None:
    await conv.run(ListMyTickets(), inc.person, inc.message)


@text_command("工单", "查工单", usage="工单 工单号", summary="查看一张工单的状态与处理记录")
async def _show_ticket(conv: Conversation, inc: Incoming) -> None:
    number = TICKET_NUMBER.search(inc.text)
    if number is None:  # "工单 …" without a number is an ordinary message (a report, a question)
        await conv.understand(inc.person, inc.message, inc.text)
        return
    await conv.run(ShowTicket(number.group(1).upper()), inc.person, inc.message)


@text_command("结案", "结单", "关单", "关闭工单")
async def _close(conv: Conversation, inc: Incoming) -> None:
    # Nobody closes a ticket by a command: only the customer's signature does (core/lifecycle/signoff.py).
    answer = CLOSING_FOR_CUSTOMERS if inc.person.role is Role.CUSTOMER else CLOSING_FOR_STAFF
    await conv.reply(inc.person, inc.message, answer)


@text_command("新问题", "新工单", roles={Role.CUSTOMER}, usage="新问题 [故障描述]",
              summary="这是一个新问题：单独建单，不记为已有工单的补充说明",
              refusal="抱歉，「新问题」由报修客户使用；为客户登记新问题请发送"
                      "「代客报修 手机号或客户编号 新问题 描述」。")
async def _new_problem(conv: Conversation, inc: Incoming) -> None:
    # Alone: the last report taken as a follow-up becomes a ticket; with a description: that is one.
    command = ReportFault(" ".join(inc.args), new_problem=True) if inc.args else SplitFollowUp()
    await conv.run(command, inc.person, inc.message)
