"""The SMS fallback of other channels (微信客服 when its 5-in-48-h budget is spent): the same
notification, queued on the "sms" channel for the same person."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.sms.phones import mobile_or_none
from bot.sms.services import sms_configured, sms_of
from core.ports import OutboundDelivery

if TYPE_CHECKING:
    from bot.runtime import Runtime


async def queue_sms_instead(runtime: Runtime, delivery: OutboundDelivery) -> bool:
    """Queue `delivery`'s notification on channel "sms" for its recipient. True when queued; False
    when SMS is not configured, the person has no mobile number, or the number is another person's
    SMS identity. The SMS sender then sends it as a notice (one per state change, the limit applies)."""
    if not sms_configured(runtime.settings):
        return False
    notification = delivery.notification
    async with runtime.lookup_uow() as uow:
        person = await uow.get_person(notification.recipient_id)
    phone = mobile_or_none(person.phone if person is not None else None)
    if person is None or phone is None:
        return False
    return await sms_of(runtime).store.queue_sms(person.id, phone, notification.to_dict(),
                                                 now=runtime.clock.now())
