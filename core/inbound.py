"""Platform-neutral inbound messages.

Adapters verify and decode a platform event, then store one of these in the inbox
(unique per `(platform, event_key)`) before they acknowledge the platform. The
conversation layer turns them into commands later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class InboundKind(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    LOCATION = "location"
    CARD_ACTION = "card_action"  # a button press or a card form submission
    ENTER = "enter"  # the user opened the bot / app (greeting)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    platform: str  # "local", "wecom", "feishu", "dingtalk"
    event_key: str  # the platform's unique id for this delivery (dedupe key)
    sender: str  # the sender's platform user id
    kind: InboundKind
    text: str | None = None
    # IMAGE: either inline bytes (base64 in `image_b64`) or a platform media reference
    # (`media_ref`) that the adapter's ChannelSender.fetch_media can download later.
    image_b64: str | None = None
    media_ref: str | None = None
    lat: float | None = None
    lng: float | None = None
    card_id: str | None = None
    action: str | None = None
    values: dict[str, str] = field(default_factory=dict)
    chat_id: str | None = None  # group/conversation id when not a 1:1 chat
    sender_name: str | None = None
    # Platform bits an adapter wants back when it delivers the answer (e.g. WeCom's
    # single-use ResponseCode for a card update, DingTalk's session webhook).
    reply_context: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "event_key": self.event_key,
            "sender": self.sender,
            "kind": self.kind.value,
            "text": self.text,
            "image_b64": self.image_b64,
            "media_ref": self.media_ref,
            "lat": self.lat,
            "lng": self.lng,
            "card_id": self.card_id,
            "action": self.action,
            "values": self.values,
            "chat_id": self.chat_id,
            "sender_name": self.sender_name,
            "reply_context": self.reply_context,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InboundMessage:
        return cls(
            platform=data["platform"],
            event_key=data["event_key"],
            sender=data["sender"],
            kind=InboundKind(data["kind"]),
            text=data.get("text"),
            image_b64=data.get("image_b64"),
            media_ref=data.get("media_ref"),
            lat=data.get("lat"),
            lng=data.get("lng"),
            card_id=data.get("card_id"),
            action=data.get("action"),
            values=dict(data.get("values") or {}),
            chat_id=data.get("chat_id"),
            sender_name=data.get("sender_name"),
            reply_context=dict(data.get("reply_context") or {}),
        )


@dataclass(frozen=True, slots=True)
class Later:
    """What the handling of a message left for after the message's transaction (see
    bot/chat/conversation.py `answer_later`): a long read, run outside any transaction, then the
    answer made of what it read, in a transaction of its own that also finishes the inbox row."""

    read: Callable[[], Awaitable[Any]]
    answer: Callable[[Any], Awaitable[None]]
