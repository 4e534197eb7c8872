"""The notice SMS: one template (SMS_TEMPLATE_CODE_NOTICE) with three variables, in this order (Tencent's
TemplateParamSet is positional): number (the ticket), status (its status now, in Chinese) and link
(the ticket's tracking page). Example Aliyun template: 您的工单${number}当前状态：${status}，查看进度：${link}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.cards import Notification
from core.model import Ticket

if TYPE_CHECKING:
    from bot.runtime import Runtime


def ticket_of(notification: Notification) -> str | None:
    if notification.ticket_number:
        return notification.ticket_number
    return notification.card.ticket_number if notification.card is not None else None


def tracking_link(runtime: Runtime, notification: Notification, ticket: Ticket) -> str:
    """The link the core put on the notice (core/tracking), else the tracking service's own, else the
    site's base (a deployment without tracking pages still tells where to look)."""
    link = notification.extra.get("tracking_url")
    if isinstance(link, str) and link:
        return link
    tracking: Any = getattr(runtime, "tracking", None)
    if tracking is not None:
        return str(tracking.url_for(ticket))
    return runtime.public_base_url


def notice_params(number: str, status: str, link: str) -> dict[str, str]:
    return {"number": number, "status": status, "link": link}
