"""Tracking links (issue 21): every message to a ticket's customer about that ticket carries the URL of
the ticket's tracking page, `PUBLIC_BASE_URL/t/<token>`.

The core knows only the port (`TrackingLinkPort.url_for`); the composition root (bot/tracking_links.py)
makes the unguessable, revocable token. `Context.notify` calls `with_tracking_link` for every notification
whose recipient is the customer of the ticket it is about: one place, so no message can forget it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

from core.cards import CardKind, Notification
from core.model import Ticket

TRACKING_LINE = "查看进度："
EXTRA_KEY = "tracking_url"
# A sign-off card also names its page (`<tracking url>/sign`, a contract): channels without forms (微信客服, SMS)
# send that link instead of the card.
SIGNOFF_EXTRA_KEY = "signoff_url"
SIGNOFF_SUFFIX = "/sign"


class TrackingLinkPort(Protocol):
    def url_for(self, ticket: Ticket) -> str:
        """The absolute URL of the ticket's tracking page for its current link generation."""
        ...


def link_generation(ticket: Ticket) -> int:
    """The ticket's link generation: revoking the link bumps it, so every older token stops working."""
    section = ticket.data.get("tracking")
    value = section.get("generation") if isinstance(section, dict) else None
    return value if isinstance(value, int) and value >= 0 else 0


def with_tracking_link(notification: Notification, url: str) -> Notification:
    """`extra["tracking_url"]` and a line `查看进度：<url>` in the text and in the body of the card, if any
    (platforms may deliver the two as separate messages)."""
    extra: dict[str, Any] = {**notification.extra, EXTRA_KEY: url}
    if notification.card is not None and notification.card.kind is CardKind.SIGNOFF and \
            notification.card.closed_note is None:
        extra[SIGNOFF_EXTRA_KEY] = url + SIGNOFF_SUFFIX
    line = TRACKING_LINE + url
    text, card = notification.text, notification.card
    if text or card is None:
        text = text or ""
        if url not in text:
            text = f"{text}\n{line}" if text else line
    # WeCom and Feishu deliver a text and its card as two messages: the card carries the link too.
    if card is not None and url not in card.body:
        card = replace(card, body=f"{card.body}\n\n{line}" if card.body else line)
    return replace(notification, text=text, card=card, extra=extra)
