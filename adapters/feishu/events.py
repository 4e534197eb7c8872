"""Feishu event payload (schema 2.0, decrypted) → neutral InboundMessage.

Pure functions shared by the HTTP endpoint and the long connection, so both paths
store identical inbox rows (same event keys: a platform retry over either path dedupes).
Each event is validated against the models in schema.py first: a wrong shape is one
MalformedEvent naming the field, never an exception from deep inside translation.

Dedupe keys:
- messages, p2p-entered events: `header.event_id` (Feishu's documented dedupe key; a
  re-push carries the same id).
- card callbacks (`card.action.trigger`): `header.event_id` too — unique per interaction;
  when absent, `card:` + the callback token (`event.token`, also unique per interaction).
  Two presses are two events on purpose: the service decides (the card may have moved on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.feishu import schema
from adapters.feishu.errors import MalformedEvent
from adapters.wire import UnsafePayload, loads_bounded
from core.inbound import InboundKind, InboundMessage

PLATFORM = "feishu"
MESSAGE_RECEIVED = "im.message.receive_v1"
CARD_ACTION = "card.action.trigger"
P2P_ENTERED = "im.chat.access_event.bot_p2p_chat_entered_v1"
URL_VERIFICATION = "url_verification"


@dataclass(frozen=True, slots=True)
class Ignored:
    """Acknowledged but not stored (someone else's mention, a bot's message, an unknown type)."""

    reason: str


def event_type(payload: dict[str, Any]) -> str | None:
    if payload.get("type") == URL_VERIFICATION:
        return URL_VERIFICATION
    header = payload.get("header")
    kind = header.get("event_type") if isinstance(header, dict) else None
    return kind if isinstance(kind, str) else None


def event_token(payload: dict[str, Any]) -> str | None:
    """The verification token: `header.token` (schema 2.0) or top-level `token` (url_verification)."""
    header = payload.get("header")
    if isinstance(header, dict) and header.get("token") is not None:
        return str(header["token"])
    token = payload.get("token")
    return None if token is None else str(token)


def translate(payload: dict[str, Any], bot_open_id: str = "") -> InboundMessage | Ignored:
    """One decoded event → an inbox message, Ignored, or MalformedEvent (the event's shape is
    checked by the models in schema.py before anything is read from it)."""
    header = payload.get("header")
    if header is not None:
        schema.parse(schema.Header, header, "header")
    kind = event_type(payload)
    if kind == MESSAGE_RECEIVED:
        return _message(schema.parse(schema.MessageEnvelope, payload), bot_open_id)
    if kind == CARD_ACTION:
        return _card_action(schema.parse(schema.CardEnvelope, payload))
    if kind == P2P_ENTERED:
        return _p2p_entered(schema.parse(schema.P2pEnvelope, payload))
    return Ignored(f"未处理的事件类型 {kind!r}")


def _event_id(header: schema.Header | None) -> str:
    if header is None or not header.event_id:
        raise MalformedEvent("缺少 header.event_id")
    return header.event_id


def _content(message: schema.Message) -> Any:
    try:
        return loads_bounded(message.content or "{}")
    except UnsafePayload as exc:
        raise MalformedEvent("message.content 不是 JSON") from exc


def _message(envelope: schema.MessageEnvelope, bot_open_id: str) -> InboundMessage | Ignored:
    sender, message = envelope.event.sender, envelope.event.message
    if sender.sender_type != "user":
        return Ignored("机器人或应用发出的消息")  # never answer bots: no loops
    open_id = sender.sender_id.open_id if sender.sender_id else None
    if not open_id:
        raise MalformedEvent("缺少 sender.sender_id.open_id")
    mentions = message.mentions or []
    is_group = message.chat_type == "group"
    bot_keys = _bot_mention_keys(mentions, bot_open_id)
    if is_group and not bot_keys:
        return Ignored("群消息未 @ 机器人")
    content = _content(message)
    if not isinstance(content, dict):
        raise MalformedEvent("message.content 不是对象")
    common: dict[str, Any] = {
        "platform": PLATFORM,
        "event_key": _event_id(envelope.header),
        "sender": open_id,
        "chat_id": message.chat_id if is_group else None,
        "reply_context": {"message_id": message.message_id, "chat_id": message.chat_id,
                          "chat_type": message.chat_type},
    }
    msg_type = message.message_type
    if msg_type == "text":
        text = schema.parse(schema.TextContent, content, "message.content").text
        return InboundMessage(kind=InboundKind.TEXT, text=_replace_mentions(text, mentions, bot_keys), **common)
    if msg_type == "post":
        post = schema.parse(schema.PostContent, content, "message.content")
        return InboundMessage(kind=InboundKind.TEXT, text=_replace_mentions(_post_text(post), mentions, bot_keys),
                              **common)
    if msg_type == "image":
        image = schema.parse(schema.ImageContent, content, "message.content")
        if not message.message_id:
            raise MalformedEvent("图片消息缺少 message_id")
        return InboundMessage(kind=InboundKind.IMAGE, media_ref=f"{message.message_id}:{image.image_key}", **common)
    if msg_type == "location":
        place = schema.parse(schema.LocationContent, content, "message.content")
        return InboundMessage(kind=InboundKind.LOCATION, lat=place.latitude, lng=place.longitude,
                              text=place.name or None, **common)
    return Ignored(f"不支持的消息类型 {msg_type!r}")


def _bot_mention_keys(mentions: list[schema.Mention], bot_open_id: str) -> set[str]:
    """Keys like "@_user_1" that mention the bot.

    Without a known bot open_id every mention counts: by default Feishu delivers a group
    message to a bot only when that bot is mentioned.
    """
    return {m.key for m in mentions if not bot_open_id or (m.id is not None and m.id.open_id == bot_open_id)}


def _replace_mentions(text: str, mentions: list[schema.Mention], bot_keys: set[str]) -> str:
    for mention in mentions:
        if mention.key:
            text = text.replace(mention.key, "" if mention.key in bot_keys else f"@{mention.name}")
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _post_text(post: schema.PostContent) -> str:
    lines = [post.title or ""]
    for paragraph in post.content or []:
        parts = []
        for node in paragraph or []:
            if node.tag in ("text", "a"):
                parts.append(node.text or "")
            elif node.tag == "at":
                parts.append(node.user_id or "")
        lines.append("".join(parts))
    return "\n".join(line for line in lines if line)


def _card_value(raw: dict[str, Any] | str | None) -> schema.OurCardValue | None:
    """The value of one of our buttons, None for a card that is not ours; MalformedEvent when it
    names a card and an action of the wrong type."""
    value: Any = raw
    if isinstance(raw, str):  # a value may be a JSON string on older cards
        try:
            value = loads_bounded(raw)
        except UnsafePayload:
            return None
    if not isinstance(value, dict) or not value.get("card_id") or not value.get("action"):
        return None
    return schema.parse(schema.OurCardValue, value, "event.action.value")


def _card_action(envelope: schema.CardEnvelope) -> InboundMessage | Ignored:
    event = envelope.event
    action = event.action
    value = _card_value(action.value)
    if value is None:
        return Ignored("卡片回调缺少 card_id/action（不是本应用的卡片）")
    open_id = event.operator.open_id if event.operator else None
    if not open_id:
        raise MalformedEvent("缺少 operator.open_id")
    callback_token = event.token or ""
    event_id = envelope.header.event_id if envelope.header else None
    event_key = event_id or (f"card:{callback_token}" if callback_token else "")
    if not event_key:
        raise MalformedEvent("卡片回调既无 event_id 也无 token")
    context = event.context or schema.CardContext()
    values = _form_values(action.form_value or {})
    if action.option is not None and action.name:
        values.setdefault(action.name, action.option)
    return InboundMessage(
        platform=PLATFORM,
        event_key=event_key,
        sender=open_id,
        kind=InboundKind.CARD_ACTION,
        card_id=value.card_id,
        action=value.action,
        values=values,
        chat_id=context.open_chat_id,
        reply_context={
            "card_id": value.card_id,
            "open_message_id": context.open_message_id,
            "open_chat_id": context.open_chat_id,
            "callback_token": callback_token,
        },
    )


def _form_values(form_value: dict[str, schema.FormValue]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, raw in form_value.items():
        if raw is None:
            continue
        if isinstance(raw, bool):  # checker → "true"/"false" (FieldKind.CHECKBOX contract)
            values[name] = "true" if raw else "false"
        elif isinstance(raw, list):
            values[name] = ",".join(raw)
        else:
            values[name] = raw
    return values


def _p2p_entered(envelope: schema.P2pEnvelope) -> InboundMessage:
    event = envelope.event
    open_id = event.operator_id.open_id if event.operator_id else None
    if not open_id:
        raise MalformedEvent("缺少 operator_id.open_id")
    return InboundMessage(
        platform=PLATFORM,
        event_key=_event_id(envelope.header),
        sender=open_id,
        kind=InboundKind.ENTER,
        reply_context={"chat_id": event.chat_id, "chat_type": "p2p"},
    )
