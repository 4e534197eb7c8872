"""Feishu event payload (schema 2.0, decrypted) → neutral InboundMessage.

Pure functions shared by the HTTP endpoint and the long connection, so both paths
store identical inbox rows (same event keys: a platform retry over either path dedupes).

Dedupe keys:
- messages, p2p-entered events: `header.event_id` (Feishu's documented dedupe key; a
  re-push carries the same id).
- card callbacks (`card.action.trigger`): `header.event_id` too — unique per interaction;
  when absent, `card:` + the callback token (`event.token`, also unique per interaction).
  Two presses are two events on purpose: the service decides (the card may have moved on).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from adapters.feishu.errors import MalformedEvent
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
    if isinstance(header, dict):
        return header.get("event_type")
    return None


def event_token(payload: dict[str, Any]) -> str | None:
    """The verification token: `header.token` (schema 2.0) or top-level `token` (url_verification)."""
    header = payload.get("header")
    if isinstance(header, dict) and header.get("token") is not None:
        return str(header["token"])
    token = payload.get("token")
    return None if token is None else str(token)


def translate(payload: dict[str, Any], bot_open_id: str = "") -> InboundMessage | Ignored:
    kind = event_type(payload)
    if kind == MESSAGE_RECEIVED:
        return _message(payload, bot_open_id)
    if kind == CARD_ACTION:
        return _card_action(payload)
    if kind == P2P_ENTERED:
        return _p2p_entered(payload)
    return Ignored(f"未处理的事件类型 {kind!r}")


def _obj(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise MalformedEvent(f"缺少字段 {key}", field=key)
    return value


def _event_id(payload: dict[str, Any]) -> str:
    event_id = _obj(payload, "header").get("event_id")
    if not event_id:
        raise MalformedEvent("缺少 header.event_id")
    return str(event_id)


def _message(payload: dict[str, Any], bot_open_id: str) -> InboundMessage | Ignored:
    event = _obj(payload, "event")
    message = _obj(event, "message")
    sender = _obj(event, "sender")
    if sender.get("sender_type", "user") != "user":
        return Ignored("机器人或应用发出的消息")  # never answer bots: no loops
    open_id = (sender.get("sender_id") or {}).get("open_id")
    if not open_id:
        raise MalformedEvent("缺少 sender.sender_id.open_id")
    mentions = message.get("mentions") or []
    is_group = message.get("chat_type") == "group"
    bot_keys = _bot_mention_keys(mentions, bot_open_id)
    if is_group and not bot_keys:
        return Ignored("群消息未 @ 机器人")
    try:
        content = json.loads(message.get("content") or "{}")
    except json.JSONDecodeError as exc:
        raise MalformedEvent("message.content 不是 JSON") from exc
    if not isinstance(content, dict):
        raise MalformedEvent("message.content 不是对象")
    message_id = str(message.get("message_id") or "")
    chat_id = message.get("chat_id")
    common: dict[str, Any] = {
        "platform": PLATFORM,
        "event_key": _event_id(payload),
        "sender": str(open_id),
        "chat_id": chat_id if is_group else None,
        "reply_context": {"message_id": message_id, "chat_id": chat_id, "chat_type": message.get("chat_type")},
    }
    msg_type = message.get("message_type")
    if msg_type == "text":
        text = _replace_mentions(str(content.get("text", "")), mentions, bot_keys)
        return InboundMessage(kind=InboundKind.TEXT, text=text, **common)
    if msg_type == "post":
        text = _replace_mentions(_post_text(content), mentions, bot_keys)
        return InboundMessage(kind=InboundKind.TEXT, text=text, **common)
    if msg_type == "image":
        image_key = content.get("image_key")
        if not image_key or not message_id:
            raise MalformedEvent("图片消息缺少 image_key")
        return InboundMessage(kind=InboundKind.IMAGE, media_ref=f"{message_id}:{image_key}", **common)
    if msg_type == "location":
        try:
            lat, lng = float(content["latitude"]), float(content["longitude"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedEvent("位置消息缺少经纬度") from exc
        return InboundMessage(kind=InboundKind.LOCATION, lat=lat, lng=lng, text=content.get("name") or None, **common)
    return Ignored(f"不支持的消息类型 {msg_type!r}")


def _bot_mention_keys(mentions: list[dict[str, Any]], bot_open_id: str) -> set[str]:
    """Keys like "@_user_1" that mention the bot.

    Without a known bot open_id every mention counts: by default Feishu delivers a group
    message to a bot only when that bot is mentioned.
    """
    return {
        str(m.get("key", "")) for m in mentions if not bot_open_id or (m.get("id") or {}).get("open_id") == bot_open_id
    }


def _replace_mentions(text: str, mentions: list[dict[str, Any]], bot_keys: set[str]) -> str:
    for mention in mentions:
        key = str(mention.get("key", ""))
        if key:
            text = text.replace(key, "" if key in bot_keys else f"@{mention.get('name', '')}")
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _post_text(content: dict[str, Any]) -> str:
    lines = [str(content.get("title") or "")]
    for paragraph in content.get("content") or []:
        parts = []
        for node in paragraph or []:
            tag = node.get("tag")
            if tag in ("text", "a"):
                parts.append(str(node.get("text", "")))
            elif tag == "at":
                parts.append(str(node.get("user_id", "")))
        lines.append("".join(parts))
    return "\n".join(line for line in lines if line)


def _card_action(payload: dict[str, Any]) -> InboundMessage | Ignored:
    event = _obj(payload, "event")
    action = _obj(event, "action")
    value = action.get("value")
    if isinstance(value, str):  # a value may be a JSON string on older cards
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    if not isinstance(value, dict) or not value.get("card_id") or not value.get("action"):
        return Ignored("卡片回调缺少 card_id/action（不是本应用的卡片）")
    open_id = (event.get("operator") or {}).get("open_id")
    if not open_id:
        raise MalformedEvent("缺少 operator.open_id")
    callback_token = str(event.get("token") or "")
    header = payload.get("header") or {}
    event_key = str(header.get("event_id") or "") or (f"card:{callback_token}" if callback_token else "")
    if not event_key:
        raise MalformedEvent("卡片回调既无 event_id 也无 token")
    context = event.get("context") or {}
    values = _form_values(action.get("form_value") or {})
    if action.get("option") is not None and action.get("name"):
        values.setdefault(str(action["name"]), str(action["option"]))
    return InboundMessage(
        platform=PLATFORM,
        event_key=event_key,
        sender=str(open_id),
        kind=InboundKind.CARD_ACTION,
        card_id=str(value["card_id"]),
        action=str(value["action"]),
        values=values,
        chat_id=context.get("open_chat_id"),
        reply_context={
            "card_id": str(value["card_id"]),
            "open_message_id": context.get("open_message_id"),
            "open_chat_id": context.get("open_chat_id"),
            "callback_token": callback_token,
        },
    )


def _form_values(form_value: dict[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, raw in form_value.items():
        if raw is None:
            continue
        if isinstance(raw, bool):  # checker → "true"/"false" (FieldKind.CHECKBOX contract)
            values[name] = "true" if raw else "false"
        elif isinstance(raw, list):
            values[name] = ",".join(str(item) for item in raw)
        else:
            values[name] = str(raw)
    return values


def _p2p_entered(payload: dict[str, Any]) -> InboundMessage:
    event = _obj(payload, "event")
    open_id = (event.get("operator_id") or {}).get("open_id")
    if not open_id:
        raise MalformedEvent("缺少 operator_id.open_id")
    return InboundMessage(
        platform=PLATFORM,
        event_key=_event_id(payload),
        sender=str(open_id),
        kind=InboundKind.ENTER,
        reply_context={"chat_id": event.get("chat_id"), "chat_type": "p2p"},
    )
