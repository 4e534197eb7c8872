"""ChannelSender for WeCom app messages (message/send, update_template_card, media/get).

Strong reminders: WeCom app messages have no "urgent"/DING flag. The most insistent thing
an app can do is a template card that stands out in the chat list and in the notification:
a text_notice whose title starts with 【紧急】, red source line, an emphasis block
"紧急 / 请立即处理" and the person called by name via id translation ($userName=ID$,
enable_id_trans=1).

Volume: WeCom silently drops more than 30 messages a minute (1000 an hour) per person. Every
message/send is booked against the recipient's budget first (adapters.wecom.budget); when it
is spent the delivery goes back to the outbox with RecipientBusy (retry later) instead of
being dropped by WeCom. Plain texts to one person that queue up are merged into one message
(adapters.wecom.coalesce). Card updates with a response_code are not messages and book nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from adapters.base import adapter_logger
from adapters.wecom.api import SessionFactory, WeComApi, WeComRejected
from adapters.wecom.budget import MemoryRecipientBudget, RecipientBudget, RecipientBusy
from adapters.wecom.cards import closed_button_update, render_card, render_urgent_text
from adapters.wecom.coalesce import TextCoalescer
from adapters.wecom.config import WeComConfig
from adapters.wecom.limits import MARKDOWN_MAX_BYTES, TEXT_MAX_BYTES, cut_utf8
from adapters.wecom.task_id import TaskIdTooLong, decode_task_id, encode_task_id
from core.cards import Card, Notification
from core.errors import DeliveryRejected
from core.ports import DeliveryReceipt, OutboundDelivery, TokenCache

log = adapter_logger(__name__)

PLATFORM = "wecom"
RESPONSE_CODE_TTL_S = 72 * 3600
RESPONSE_CODE_MARGIN_S = 600  # do not bet on a code in its last minutes
# 42014: "taskid has existed": an earlier attempt of this very delivery got through.
TASK_ID_EXISTS = 42014


class WeComSender:
    platform = PLATFORM

    def __init__(
        self,
        config: WeComConfig,
        tokens: TokenCache,
        session_factory: SessionFactory | None = None,
        clock: Callable[[], float] = time.time,
        budget: RecipientBudget | None = None,
    ) -> None:
        self._config = config
        self._api = WeComApi(config, tokens, session_factory)
        self._clock = clock
        self._budget: RecipientBudget = budget if budget is not None else MemoryRecipientBudget()
        self._texts = TextCoalescer(self._send_plain_text, TEXT_MAX_BYTES)

    async def close(self) -> None:
        await self._api.close()

    async def fetch_media(self, media_ref: str) -> bytes:
        return await self._api.get_media(media_ref)

    async def send(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        note = delivery.notification
        user = delivery.recipient_external_id
        if not user:
            raise DeliveryRejected("no WeCom user id for the recipient")
        if note.text and note.card is None and not note.urgent and note.extra.get("format") != "markdown":
            return await self._texts.send(user, note.text)
        text_part = bool(note.text) and not (note.urgent and note.card is None)
        new_card = note.card is not None and not note.replaces_card_id
        urgent_text = note.card is None and note.urgent and bool(note.text)
        # Book every message of this delivery at once: a half-sent delivery would be repeated on retry.
        await self._book(user, int(text_part) + int(new_card) + int(urgent_text))
        receipt = DeliveryReceipt()
        if text_part:
            receipt = await self._send_text(delivery, note)
        if note.card is not None:
            if note.replaces_card_id:
                receipt = await self._update_or_resend(delivery, note.card)
            else:
                receipt = await self._send_card(delivery, note.card)
        elif note.urgent and note.text:
            receipt = await self._send_urgent_text(delivery, note.text)
        return receipt

    # --- plain messages ---------------------------------------------------------------

    async def _book(self, user: str, count: int) -> None:
        if count and (wait := await self._budget.take(user, count)) > 0:
            raise RecipientBusy(user, wait)

    async def _send_plain_text(self, user: str, text: str) -> DeliveryReceipt:
        """One (possibly merged) text message; called by the coalescer."""
        await self._book(user, 1)
        body = {"msgtype": "text", "text": {"content": cut_utf8(text, TEXT_MAX_BYTES)}}
        data = await self._message_send(user, body)
        return DeliveryReceipt(external_message_id=_str(data.get("msgid")))

    async def _send_text(self, delivery: OutboundDelivery, note: Notification) -> DeliveryReceipt:
        text = note.text or ""
        if note.extra.get("format") == "markdown":
            body = {"msgtype": "markdown", "markdown": {"content": cut_utf8(text, MARKDOWN_MAX_BYTES)}}
        else:
            body = {"msgtype": "text", "text": {"content": cut_utf8(text, TEXT_MAX_BYTES)}}
        data = await self._message_send(delivery.recipient_external_id, body)
        return DeliveryReceipt(external_message_id=_str(data.get("msgid")))

    async def _send_urgent_text(self, delivery: OutboundDelivery, text: str) -> DeliveryReceipt:
        card = render_urgent_text(
            text,
            card_url=self._config.card_url,
            recipient_id=delivery.recipient_external_id,
            source_desc=self._config.source_desc,
        )
        data = await self._message_send(
            delivery.recipient_external_id, {"msgtype": "template_card", "template_card": card}, id_trans=True
        )
        return DeliveryReceipt(external_message_id=_str(data.get("msgid")))

    # --- cards ------------------------------------------------------------------------

    async def _send_card(self, delivery: OutboundDelivery, card: Card) -> DeliveryReceipt:
        try:
            task_id = encode_task_id(card.id, delivery.outbox_id)
        except TaskIdTooLong as exc:
            raise DeliveryRejected(str(exc)) from exc
        urgent = card.urgent or delivery.notification.urgent
        template = render_card(
            card,
            task_id,
            card_url=self._config.card_url,
            source_desc=self._config.source_desc,
            urgent=urgent,
            recipient_id=delivery.recipient_external_id,
        )
        body = {"msgtype": "template_card", "template_card": template}
        try:
            data = await self._message_send(delivery.recipient_external_id, body, id_trans=urgent)
        except WeComRejected as exc:
            if exc.errcode == TASK_ID_EXISTS and delivery.attempt > 1:
                log.info("wecom: card %r already delivered by an earlier attempt", card.id)
                return DeliveryReceipt(card_ref={"task_id": task_id, "card_type": template["card_type"]})
            raise
        ref: dict[str, Any] = {"task_id": template.get("task_id"), "card_type": template["card_type"]}
        if code := data.get("response_code"):
            ref.update(response_code=code, response_code_at=int(self._clock()))
        return DeliveryReceipt(external_message_id=_str(data.get("msgid")), card_ref=ref)

    async def _update_or_resend(self, delivery: OutboundDelivery, card: Card) -> DeliveryReceipt:
        """Update the card in place with a single-use response_code; else send a fresh card."""
        ref = dict(delivery.card_ref or {})
        code, source = self._usable_code(delivery, card.id)
        if code is None:
            log.info("wecom: no usable response_code for card %r, sending a fresh card", card.id)
            await self._book(delivery.recipient_external_id, 1)
            return await self._send_card(delivery, card)
        task_id = str((delivery.reply_context if source == "reply" else ref).get("task_id") or ref.get("task_id") or "")
        body: dict[str, Any] = {
            "userids": [delivery.recipient_external_id],
            "agentid": self._config.agent_id_int,
            "response_code": code,
        }
        if card.closed_note is not None:
            body.update(closed_button_update(card))
        else:
            body["template_card"] = render_card(
                card,
                task_id or encode_task_id(card.id, delivery.outbox_id),
                card_url=self._config.card_url,
                source_desc=self._config.source_desc,
                urgent=card.urgent,
            )
        # Whatever happens next, this code is spent (or dead): never offer it again.
        # Explicit None (not a missing key) so the stored ref loses the code whether the outbox
        # replaces or merges card refs.
        if source == "ref":
            ref.update(response_code=None, response_code_at=None)
        ref.setdefault("task_id", task_id)
        try:
            await self._api.post("message/update_template_card", body)
        except WeComRejected as exc:
            # Used, expired or unknown code (the exact errcode is undocumented): a fresh card still
            # tells the person what happened.
            log.info("wecom: update of card %s refused (%s), sending a fresh card", card.id, exc.errcode)
            await self._book(delivery.recipient_external_id, 1)
            fresh = await self._send_card(delivery, card)
            return DeliveryReceipt(external_message_id=fresh.external_message_id, card_ref=fresh.card_ref)
        return DeliveryReceipt(card_ref=ref)

    def _usable_code(self, delivery: OutboundDelivery, card_id: str) -> tuple[str | None, str]:
        now = self._clock()
        reply = delivery.reply_context or {}
        # The press that triggered this update carries the freshest code, but only for this card.
        same_card = decode_task_id(str(reply.get("task_id") or "")) == card_id
        if reply.get("response_code") and same_card and self._fresh(reply.get("response_code_at"), now):
            return str(reply["response_code"]), "reply"
        ref = delivery.card_ref or {}
        if ref.get("response_code") and self._fresh(ref.get("response_code_at"), now):
            return str(ref["response_code"]), "ref"
        return None, ""

    @staticmethod
    def _fresh(issued_at: Any, now: float) -> bool:
        try:
            return now - float(issued_at) < RESPONSE_CODE_TTL_S - RESPONSE_CODE_MARGIN_S
        except (TypeError, ValueError):
            return False

    # --- transport --------------------------------------------------------------------

    async def _message_send(self, user: str, body: dict[str, Any], *, id_trans: bool = False) -> dict[str, Any]:
        payload = {
            "touser": user,
            "agentid": self._config.agent_id_int,
            **body,
            "enable_id_trans": 1 if id_trans else 0,
            # A retried delivery with identical content is dropped by WeCom within the interval.
            # Kept short (config): a new, identical answer after it must reach the person.
            "enable_duplicate_check": 1,
            "duplicate_check_interval": self._config.duplicate_check_interval_s,
        }
        data = await self._api.post("message/send", payload)
        invalid = str(data.get("invaliduser") or "")
        if invalid and user.lower() in invalid.lower().split("|"):
            raise WeComRejected(f"message/send: invalid user {user}")
        return data


def _str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)
