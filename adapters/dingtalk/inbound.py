"""DingTalk stream payloads -> neutral InboundMessage. Imported only when DingTalk is configured.

Dedupe keys (InboundMessage.event_key, unique per platform in the inbox):
- robot messages: `msg:<msgId>` (the platform does not redeliver them, but duplicates happen);
- events: `event:<headers.eventId>` (redelivered until acked);
- card-platform callbacks: `card:<outTrackId>:<userId>:<action>:<digest of the values>`.
  UNVERIFIED: DingTalk documents no unique id for a card callback. The values digest keeps a
  corrected form re-submission (same card, user and button, different values) from being
  swallowed as a duplicate; an identical re-press is a duplicate, which is what we want.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from dingtalk_stream import CardCallbackMessage, ChatbotMessage

from adapters.dingtalk.commands import parse_command
from adapters.wire import UnsafePayload, loads_bounded, unix_millis
from core.inbound import InboundKind, InboundMessage

PLATFORM = "dingtalk"
GROUP_CHAT = "2"
_MILLIS_FIELDS = ("sessionWebhookExpiredTime", "createAt")
_LEADING_MENTION = re.compile(r"^\s*@\S+\s*")
# DingTalk robots receive no location messages; a typed "位置 31.2041,121.5901" stands in for one.
_TYPED_LOCATION = re.compile(r"^(?:位置|定位)\s*[:：]?\s*(-?\d{1,3}(?:\.\d+)?)\s*[,，\s]\s*(-?\d{1,3}(?:\.\d+)?)$")


class MalformedPayload(ValueError):
    """The frame decoded but does not carry what its topic promises."""


def strip_mentions(text: str, mention_count: int) -> str:
    """Drop the leading @mentions of a group message (the bot only gets messages that @mention it).

    DingTalk usually removes the bot's own @name already; we strip at most as many leading
    `@word` tokens as the message has mentioned users, so an `@` later in the text survives.
    """
    text = text.strip()
    for _ in range(max(mention_count, 1)):
        stripped = _LEADING_MENTION.sub("", text, count=1)
        if stripped == text:
            break
        text = stripped
    return text.strip()


def robot_message_to_inbound(data: dict[str, Any]) -> InboundMessage | None:
    """None for message types we do not handle (audio, file, ...): acked and ignored."""
    for name in _MILLIS_FIELDS:  # the SDK reads some with int(): integers only, bounded
        if name in data:
            try:
                unix_millis(data[name])
            except ValueError as exc:
                raise MalformedPayload(f"{name} is not an integer time") from exc
    try:
        msg = ChatbotMessage.from_dict(data)
    except (KeyError, TypeError, AttributeError) as exc:
        raise MalformedPayload(f"bad robot message: {exc!r}") from exc
    if not msg.message_id:
        raise MalformedPayload("robot message without msgId")
    sender = msg.sender_staff_id or msg.sender_id
    if not sender:
        raise MalformedPayload("robot message without sender")
    in_group = msg.conversation_type == GROUP_CHAT
    reply_context = {
        "conversation_type": msg.conversation_type,
        "conversation_id": msg.conversation_id,
        "session_webhook": msg.session_webhook,
        "session_webhook_expires_ms": msg.session_webhook_expired_time,
        "robot_code": msg.robot_code,
    }
    common: dict[str, Any] = {
        "platform": PLATFORM,
        "event_key": f"msg:{msg.message_id}",
        "sender": sender,
        "chat_id": msg.conversation_id if in_group else None,
        "sender_name": msg.sender_nick,
        "reply_context": reply_context,
    }
    if msg.message_type == "text":
        if msg.text is None or not isinstance(msg.text.content, str):
            raise MalformedPayload("text message without content")
        text = msg.text.content
        text = strip_mentions(text, len(msg.at_users or [])) if in_group else text.strip()
        command = parse_command(text)
        if command is not None:
            return InboundMessage(
                kind=InboundKind.CARD_ACTION,
                card_id=command.card_id,
                action=command.action,
                values=command.values,
                **common,
            )
        location = _TYPED_LOCATION.match(text)
        if location is not None:
            lat, lng = float(location.group(1)), float(location.group(2))
            return InboundMessage(kind=InboundKind.LOCATION, lat=lat, lng=lng, **common)
        return InboundMessage(kind=InboundKind.TEXT, text=text, **common)
    if msg.message_type == "picture":
        code = msg.image_content.download_code if msg.image_content else None
        if not code:
            raise MalformedPayload("picture without downloadCode")
        return InboundMessage(kind=InboundKind.IMAGE, media_ref=code, **common)
    if msg.message_type == "richText":
        texts = [t for t in (msg.get_text_list() or []) if t and t.strip()]
        if texts:
            return InboundMessage(kind=InboundKind.TEXT, text=" ".join(t.strip() for t in texts), **common)
        images = msg.get_image_list() or []
        if images:
            return InboundMessage(kind=InboundKind.IMAGE, media_ref=images[0], **common)
    return None


def _as_str(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def card_callback_to_inbound(data: dict[str, Any]) -> InboundMessage:
    for name in ("content", "extension"):  # JSON strings the SDK reads with an unbounded json.loads
        if isinstance(data.get(name), str):
            try:
                loads_bounded(data[name])
            except UnsafePayload as exc:
                raise MalformedPayload(f"card callback {name}: {exc}") from exc
    try:
        callback = CardCallbackMessage.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise MalformedPayload(f"bad card callback: {exc!r}") from exc
    private = callback.content.get("cardPrivateData") if isinstance(callback.content, dict) else None
    if not callback.card_instance_id or not callback.user_id or not isinstance(private, dict):
        raise MalformedPayload("card callback without outTrackId, userId or cardPrivateData")
    params = private.get("params") or {}
    action_ids = private.get("actionIds") or []
    if not isinstance(params, dict) or not isinstance(action_ids, list):
        raise MalformedPayload("card callback with bad params/actionIds")
    action = params.get("action") or (action_ids[0] if action_ids else None)
    if not action:
        raise MalformedPayload("card callback without an action")
    values = {str(k): _as_str(v) for k, v in params.items() if k != "action"}
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
    return InboundMessage(
        platform=PLATFORM,
        event_key=f"card:{callback.card_instance_id}:{callback.user_id}:{action}:{digest}",
        sender=callback.user_id,
        kind=InboundKind.CARD_ACTION,
        card_id=callback.card_instance_id,
        action=str(action),
        values=values,
        reply_context={"out_track_id": callback.card_instance_id},
    )


def event_to_inbound(event_id: str | None, event_type: str | None, data: dict[str, Any]) -> InboundMessage | None:
    """Events the service acts on. None of DingTalk's organisation events (user/department changes,
    approvals...) maps to a conversation message today: they are acked, logged and ignored. Add a
    mapping here when one is needed; `event:<eventId>` is its dedupe key."""
    if not event_id:
        raise MalformedPayload("event without eventId")
    return None
