"""ChannelSender for Feishu: text/post/interactive messages, card patches, urgent delivery."""

from __future__ import annotations

from adapters.base import adapter_logger
from adapters.feishu.api import FeishuApi
from adapters.feishu.cards import CardTooLarge, card_content, text_content
from adapters.feishu.ratelimit import PerKeyRateLimiter
from core.errors import DeliveryRejected
from core.ports import DeliveryReceipt, OutboundDelivery

log = adapter_logger(__name__)

PLATFORM = "feishu"


def receive_id_type(external_id: str) -> str:
    """Directory ids are open_ids ("ou_…"); a chat ("oc_…") or union id ("on_…") also works."""
    if external_id.startswith("oc_"):
        return "chat_id"
    if external_id.startswith("on_"):
        return "union_id"
    return "open_id"


class FeishuSender:
    platform = PLATFORM

    def __init__(self, api: FeishuApi, limiter: PerKeyRateLimiter | None = None) -> None:
        self._api = api
        self._limiter = limiter or PerKeyRateLimiter(limit=5, window_s=1.0)

    async def send(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        note = delivery.notification
        target = delivery.recipient_external_id
        # uuid = outbox id (+ part), never the attempt: a retry within Feishu's 1 h dedupe
        # window cannot deliver the same notification twice.
        uuid = f"ticketbot-{delivery.outbox_id}"
        reply_to = _group_message(delivery)
        message_id: str | None = None
        card_ref: dict[str, str] | None = None
        if note.text:
            msg_type, content = text_content(note.text)
            message_id = await self._create(target, msg_type, content, f"{uuid}-t", reply_to)
        if note.card is not None:
            try:
                content = card_content(note.card)
            except CardTooLarge as exc:
                raise DeliveryRejected(str(exc)) from exc
            old_id = _message_to_patch(delivery)
            if old_id:
                await self._limiter.wait(target)
                await self._api.call("PATCH", f"/im/v1/messages/{old_id}", json={"content": content})
                message_id = old_id
            else:
                message_id = await self._create(target, "interactive", content, f"{uuid}-c", reply_to)
            card_ref = {"message_id": message_id}
        if note.urgent and message_id:
            await self._urgent(message_id, target)
        return DeliveryReceipt(external_message_id=message_id, card_ref=card_ref)

    async def fetch_media(self, media_ref: str) -> bytes:
        message_id, _, file_key = media_ref.partition(":")
        if not message_id or not file_key:
            raise DeliveryRejected(f"无效的飞书媒体引用 {media_ref!r}")
        return await self._api.download(f"/im/v1/messages/{message_id}/resources/{file_key}", {"type": "image"})

    async def _create(self, target: str, msg_type: str, content: str, uuid: str, reply_to: str | None) -> str:
        await self._limiter.wait(target)
        if reply_to:  # a quoted reply in the group the person wrote in
            data = await self._api.call("POST", f"/im/v1/messages/{reply_to}/reply",
                                        json={"msg_type": msg_type, "content": content, "uuid": uuid})
        else:
            data = await self._api.call(
                "POST",
                "/im/v1/messages",
                params={"receive_id_type": receive_id_type(target)},
                json={"receive_id": target, "msg_type": msg_type, "content": content, "uuid": uuid},
            )
        message_id = (data.get("data") or {}).get("message_id")
        if not message_id:
            raise DeliveryRejected("飞书没有返回 message_id")
        return str(message_id)

    async def _urgent(self, message_id: str, target: str) -> None:
        if receive_id_type(target) != "open_id":
            log.info("加急只能发给个人，跳过 %r", target)
            return
        await self._api.call(
            "PATCH",
            f"/im/v1/messages/{message_id}/urgent_app",
            params={"user_id_type": "open_id"},
            json={"user_id_list": [target]},
        )


def _group_message(delivery: OutboundDelivery) -> str | None:
    """The group message this notification answers, if any. Only the direct answer to what the person
    wrote carries the reply context (core attaches it to notifications for the actor alone); later
    updates about their ticket go to them in person, as on DingTalk."""
    context = delivery.reply_context or {}
    if context.get("chat_type") == "group" and context.get("message_id"):
        return str(context["message_id"])
    return None


def _message_to_patch(delivery: OutboundDelivery) -> str | None:
    """The Feishu message that shows the card being replaced: remembered in card_ref at send
    time, or (answering a button press) the open_message_id of the callback."""
    if not delivery.notification.replaces_card_id:
        return None
    ref = delivery.card_ref or {}
    if ref.get("message_id"):
        return str(ref["message_id"])
    context = delivery.reply_context
    if context.get("card_id") == delivery.notification.replaces_card_id and context.get("open_message_id"):
        return str(context["open_message_id"])
    return None
