"""Ports: what the core and the adapters need from the outside, as Protocols.

storage/ and bot/ implement them; adapters/ consume `InboxPort`, `TokenCache` and
implement `ChannelSender`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from core.cards import Notification
from core.inbound import InboundMessage


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware UTC datetime."""
        ...


class InboxPort(Protocol):
    async def accept(self, message: InboundMessage) -> bool:
        """Persist the message (unique per platform+event_key) and commit.

        Returns True for a new message, False for a redelivery (nothing changed).
        Processing happens later, off the request path: an adapter acknowledges the
        platform as soon as this returns.
        """
        ...


class TokenCache(Protocol):
    """Shared cache for platform access tokens (in-process, or Redis when configured)."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, ttl_s: float) -> None: ...

    async def delete(self, key: str) -> None: ...


@dataclass(frozen=True, slots=True)
class OutboundDelivery:
    """One notification on its way to one person on one platform."""

    outbox_id: int
    platform: str
    recipient_external_id: str  # the person's user id on that platform
    notification: Notification
    attempt: int = 1
    # What the sender remembered about the card being replaced (message id,
    # response code...), when notification.replaces_card_id is set.
    card_ref: dict[str, Any] | None = None
    # reply_context of the inbound message this answers, if any (see InboundMessage).
    reply_context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    external_message_id: str | None = None
    # Stored against the card id so that a later update of this card can find it.
    card_ref: dict[str, Any] | None = None


class ChannelSender(Protocol):
    """Delivers notifications on one platform. Raises core.errors.DeliveryRetryLater
    (transient) or DeliveryRejected (permanent)."""

    platform: str

    async def send(self, delivery: OutboundDelivery) -> DeliveryReceipt: ...

    async def fetch_media(self, media_ref: str) -> bytes:
        """Download an inbound image referenced by InboundMessage.media_ref."""
        ...
