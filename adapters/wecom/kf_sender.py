"""ChannelSender for 微信客服 (platform "wecom_kf"): kf/send_msg within the platform's budget.

The budget is law: after a customer's message the service may send at most 5 messages within
48 h (kf/send_msg answers 95001 for a 6th). So:
- every message is booked first against the customer's durable count (KfState.take, one
  conditional UPDATE shared by every process); the count restarts with each customer message;
- notices that queue up for one customer while one is being sent leave as ONE message (folded);
  card updates (a pressed menu's "已处理") are not sent at all: the click's answer says it;
- when the budget is spent the notice goes to SMS (`fallback`, when SMS is configured and the
  person has a phone) or is held and sent, folded, with the customer's next message.
What was sent, folded, moved to SMS or held goes into the ticket's trail (`trail`).

WeChat users get no template cards: a card with buttons becomes a `msgmenu` (clicks come back as
text messages carrying the menu id: adapters/wecom/kf_menu.py); a form card (the sign-off) becomes
a text with a link to the customer page (`<tracking_url>/sign`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from adapters.base import adapter_logger
from adapters.wecom.api import WeComApi, WeComRejected
from adapters.wecom.kf_config import PLATFORM, KfConfig, split_external_id
from adapters.wecom.kf_menu import MenuIdTooLong, encode_menu_id
from adapters.wecom.kf_state import KfState
from adapters.wecom.limits import TEXT_MAX_BYTES, cut_utf8
from core.cards import Card, CardKind, Notification
from core.errors import DeliveryRejected, DeliveryRetryLater
from core.ports import DeliveryReceipt, OutboundDelivery

log = adapter_logger(__name__)

# kf/send_msg: 95001 "发送客服消息次数限制" (the 6th within 48 h), 95002 "发送客服消息时间限制"
# (48 h since the customer's last message), 95018 "send msg session status invalid".
SPENT_ERRCODES = frozenset({95001, 95002, 95018})
MENU_HEAD_MAX_BYTES = 1024
MENU_ITEM_MAX_BYTES = 128
SEPARATOR = "\n\n"
HELD_INTRO = "您不在线期间的工单通知："
TRAIL_WHEN_REMAINING = 2  # sends leaving this many or fewer of the 5 are recorded on the trail

Fallback = Callable[[OutboundDelivery], Awaitable[bool]]  # True: queued as SMS instead
# (ticket number, person id, audit kind, details): records the budget in the ticket's trail.
Trail = Callable[[str, str, str, dict[str, Any]], Awaitable[None]]


@dataclass(slots=True)
class _Pending:
    text: str
    delivery: OutboundDelivery | None  # None: notices released from hold
    future: asyncio.Future[DeliveryReceipt] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def ticket_number(self) -> str | None:
        return self.delivery.notification.ticket_number if self.delivery else None


class KfSender:
    platform = PLATFORM

    def __init__(
        self,
        config: KfConfig,
        api: WeComApi,
        state: KfState,
        *,
        fallback: Fallback | None = None,
        trail: Trail | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._api = api
        self._state = state
        self._fallback = fallback
        self._trail = trail
        self._clock = clock
        self._queues: dict[str, list[_Pending]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def close(self) -> None:
        await self._api.close()

    async def fetch_media(self, media_ref: str) -> bytes:
        return await self._api.get_media(media_ref)  # media/get with the kf token

    # --- ChannelSender -----------------------------------------------------------------

    async def send(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        note = delivery.notification
        try:
            split_external_id(delivery.recipient_external_id)
        except ValueError as exc:
            raise DeliveryRejected(str(exc)) from exc
        if note.replaces_card_id and note.card is not None:
            # An update of a card already sent (a menu clicked): the click's own answer tells it.
            return DeliveryReceipt()
        if code := str(delivery.reply_context.get("welcome_code") or ""):
            return await self._welcome(delivery, code)
        if note.card is not None and note.card.actions and not note.card.fields and note.card.closed_note is None:
            return await self._send_menu(delivery, note.card)
        text = render_text(note)
        if not text:
            return DeliveryReceipt()
        return await self._fold(delivery.recipient_external_id, _Pending(text, delivery))

    async def send_text(self, external_id: str, text: str) -> None:
        """A text outside the outbox (the "please type" answer to a voice message), within the budget."""
        await self._fold(external_id, _Pending(text, None))

    async def release_held(self, external_id: str) -> None:
        """The customer wrote again: what was held goes out now, folded into one message."""
        held = await self._state.take_held(external_id)
        if not held:
            return
        text = HELD_INTRO + SEPARATOR + SEPARATOR.join(text for _id, text, _number in held)
        try:
            await self._fold(external_id, _Pending(text, None))
        except Exception:
            # Not lost: hold them again for the next message.
            for _id, text_, number in held:
                await self._state.hold(external_id, text_, number, self._now())
            raise
        tickets = {number for _id, _text, number in held if number}
        for number in sorted(tickets):
            await self._record(number, "", "wecom_kf_held_released", {"notices": len(held)})

    # --- welcome (enter_session) -----------------------------------------------------------

    async def _welcome(self, delivery: OutboundDelivery, code: str) -> DeliveryReceipt:
        issued = float(delivery.reply_context.get("welcome_code_at") or 0)
        if self._clock() - issued > self._config.welcome_code_ttl_s:
            raise DeliveryRejected("wecom_kf: welcome_code expired (valid 20 s after enter_session)")
        body = {"code": code, **self._body(delivery)}
        try:
            data = await self._api.post("kf/send_msg_on_event", body)
        except WeComRejected as exc:
            raise DeliveryRejected(f"wecom_kf: welcome_code refused ({exc.errcode})") from exc
        return DeliveryReceipt(external_message_id=_str(data.get("msgid")))

    def _body(self, delivery: OutboundDelivery) -> dict[str, Any]:
        note = delivery.notification
        if note.card is not None and note.card.actions and not note.card.fields:
            return render_menu(note.card, note.text)
        return {"msgtype": "text", "text": {"content": cut_utf8(render_text(note), TEXT_MAX_BYTES)}}

    # --- menus (cards with choices) ------------------------------------------------------

    async def _send_menu(self, delivery: OutboundDelivery, card: Card) -> DeliveryReceipt:
        try:
            body = render_menu(card, delivery.notification.text)
        except MenuIdTooLong as exc:
            raise DeliveryRejected(str(exc)) from exc
        user = delivery.recipient_external_id
        # A menu is one message of its own; texts queued for the person go first (folded).
        async with self._lock(user):
            remaining = await self._state.take(user, self._now())
            if remaining is None:
                await self._spent(user, [_Pending(render_text(delivery.notification), delivery)])
                return DeliveryReceipt()
            receipt = await self._post(user, body, [_Pending("", delivery)], remaining)
        return DeliveryReceipt(external_message_id=receipt.external_message_id, card_ref={"menu": True})

    # --- texts, folded --------------------------------------------------------------------

    def _lock(self, user: str) -> asyncio.Lock:
        return self._locks.setdefault(user, asyncio.Lock())

    async def _fold(self, user: str, item: _Pending) -> DeliveryReceipt:
        self._queues.setdefault(user, []).append(item)
        lock = self._lock(user)
        try:
            async with lock:
                while not item.future.done():
                    await self._flush(user)
        finally:
            if not lock.locked() and not self._queues.get(user):
                self._queues.pop(user, None)
                self._locks.pop(user, None)
        return item.future.result()

    async def _flush(self, user: str) -> None:
        batch = self._take_batch(user)
        try:
            remaining = await self._state.take(user, self._now())
            if remaining is None:
                await self._spent(user, batch)
                receipt = DeliveryReceipt()
            else:
                text = SEPARATOR.join(p.text for p in batch)
                body = {"msgtype": "text", "text": {"content": cut_utf8(text, TEXT_MAX_BYTES)}}
                receipt = await self._post(user, body, batch, remaining)
        except Exception as error:  # noqa: BLE001 - handed to every folded delivery, re-raised by each
            _fail(batch, error)
        except BaseException:
            _fail(batch, DeliveryRetryLater("wecom_kf: send interrupted"))
            raise
        else:
            for item in batch:
                if not item.future.done():
                    item.future.set_result(receipt)

    def _take_batch(self, user: str) -> list[_Pending]:
        queue = self._queues[user]
        size = len(queue[0].text.encode())
        count = 1
        for item in queue[1:]:
            size += len(SEPARATOR) + len(item.text.encode())
            if size > TEXT_MAX_BYTES:
                break
            count += 1
        batch, self._queues[user] = queue[:count], queue[count:]
        return batch

    # --- transport and the budget's outcomes -----------------------------------------------

    async def _post(self, user: str, body: dict[str, Any], batch: list[_Pending], remaining: int) -> DeliveryReceipt:
        open_kfid, touser = split_external_id(user)
        try:
            data = await self._api.post("kf/send_msg", {"touser": touser, "open_kfid": open_kfid, **body})
        except WeComRejected as exc:
            if exc.errcode in SPENT_ERRCODES:
                # WeCom counts too (and knows of sends we did not make): trust it, never retry into a 6th.
                log.info("wecom_kf: %s budget spent per WeCom (%s)", user, exc.errcode)
                await self._state.spend(user)
                await self._spent(user, batch)
                return DeliveryReceipt()
            raise
        if remaining <= TRAIL_WHEN_REMAINING or len(batch) > 1:
            # The trail shows what matters about the budget (folds, the last messages of a window),
            # not every routine answer: an audit append per reply would cost more than the reply.
            tickets = sorted({p.ticket_number for p in batch if p.ticket_number})
            for number in tickets:
                await self._record(number, _recipient(batch), "wecom_kf_sent",
                                   {"remaining": remaining, "folded": len(batch), "tickets": tickets})
        return DeliveryReceipt(external_message_id=_str(data.get("msgid")))

    async def _spent(self, user: str, batch: list[_Pending]) -> None:
        for item in batch:
            delivery = item.delivery
            if delivery is not None and self._fallback is not None and await self._fallback(delivery):
                await self._record(item.ticket_number, delivery.notification.recipient_id,
                                   "wecom_kf_budget_spent", {"outcome": "sms"})
                continue
            await self._state.hold(user, item.text, item.ticket_number, self._now())
            await self._record(item.ticket_number, delivery.notification.recipient_id if delivery else "",
                               "wecom_kf_budget_spent", {"outcome": "held_until_next_message"})

    async def _record(self, ticket_number: str | None, person_id: str, kind: str, details: dict[str, Any]) -> None:
        if self._trail is None or not ticket_number:
            return
        try:
            await self._trail(ticket_number, person_id, kind, details)
        except Exception:
            log.exception("wecom_kf: could not record %s on %s", kind, ticket_number)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


# --- rendering ------------------------------------------------------------------------------


def render_text(note: Notification) -> str:
    """The notification as one plain text: cards become their facts and, for forms, a link."""
    parts = [note.text] if note.text else []
    card = note.card
    if card is not None:
        lines = [card.title, *(f"{k}：{v}" for k, v in card.facts)]
        if card.body:
            lines.append(card.body)
        if card.fields:
            lines.append(_form_link(note, card))
        elif card.actions and card.closed_note is None:
            lines.append("可回复：" + " / ".join(a.label for a in card.actions))
        elif card.closed_note:
            lines.append(card.closed_note)
        parts.append("\n".join(line for line in lines if line))
    return SEPARATOR.join(parts)


def _form_link(note: Notification, card: Card) -> str:
    url = str(note.extra.get("tracking_url") or "")
    if not url:
        return "请回复文字或联系门店完成确认。"
    if card.kind is CardKind.SIGNOFF:
        return f"请点击链接确认并签字：{url.rstrip('/')}/sign"
    return f"请点击链接填写：{url}"


def render_menu(card: Card, text: str | None) -> dict[str, Any]:
    head = [text] if text else []
    head.append("\n".join([card.title, *(f"{k}：{v}" for k, v in card.facts), card.body]).strip())
    items = [{"type": "click", "click": {"id": encode_menu_id(card.id, a.id),
                                         "content": cut_utf8(a.label, MENU_ITEM_MAX_BYTES)}}
             for a in card.actions]
    return {"msgtype": "msgmenu", "msgmenu": {"head_content": cut_utf8(SEPARATOR.join(head), MENU_HEAD_MAX_BYTES),
                                              "list": items, "tail_content": "请点击上方选项回复"}}


def _recipient(batch: list[_Pending]) -> str:
    for item in batch:
        if item.delivery is not None:
            return item.delivery.notification.recipient_id
    return ""


def _fail(batch: list[_Pending], error: BaseException) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(error)
            item.future.exception()


def _str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)
