"""The "sms" delivery channel: outbox rows for people whose preferred channel is SMS.

SMS templates are approved in advance, so a notice is not the notification's text but the notice
template filled with the ticket's number, its status now and its tracking link. Consequences:
* one SMS per state change: a notice whose ticket status this phone was already told is folded
  (nothing sent; the tracking page carries the rest), and several notices queued in a burst send the
  newest status once;
* a notification about no ticket is not sent (there is no template for free text);
* the per-phone hourly limit (SMS_LIMIT_PER_PHONE_HOUR) defers a notice until a place frees.
Every outcome (sent with the provider's message id, folded, deferred, failed) is in the ticket's trail.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

from adapters.base import adapter_logger
from bot.sms.errors import SmsPermanent, SmsRetryable
from bot.sms.notices import notice_params, ticket_of, tracking_link
from bot.sms.phones import mobile_or_none
from bot.sms.services import LIMIT_WINDOW, sms_of
from core.audit.deliveries import RecordDelivery
from core.errors import DeliveryRejected, DeliveryRetryLater, TicketbotError
from core.masterdata.identifiers import mask_phone
from core.ports import DeliveryReceipt, OutboundDelivery
from core.service import SYSTEM_ACTOR

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = adapter_logger(__name__)

CHANNEL = "sms"
FOLDED = "folded"  # the receipt's message id of a notice that needed no SMS


class SmsSender:
    platform = CHANNEL

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        # The dispatcher delivers a batch at once: one phone's notices go one after another, so that
        # the second of a burst sees the first's reservation (storage/sms_store.py folds it).
        self._phone_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def send(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        key = delivery.recipient_external_id
        lock = self._phone_locks.get(key)
        if lock is None:
            lock = self._phone_locks[key] = asyncio.Lock()
        async with lock:
            return await self._send(delivery)

    async def _send(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        runtime = self._runtime
        services = sms_of(runtime)
        notification = delivery.notification
        phone = mobile_or_none(delivery.recipient_external_id)
        if phone is None:
            raise DeliveryRejected("the SMS identity is not a mainland mobile number")
        number = ticket_of(notification)
        if number is None:
            raise DeliveryRejected("SMS carries ticket notices only (no template for free text)")
        async with runtime.lookup_uow() as uow:
            ticket = await uow.get_ticket(number)
        if ticket is None:
            raise DeliveryRejected(f"ticket {number} does not exist")
        status = ticket.status.label
        details: dict[str, Any] = {"phone": mask_phone(phone), "status": status, "outbox_id": delivery.outbox_id,
                                   "provider": services.provider.name}
        slot = await services.store.reserve(phone, "notice", now=runtime.clock.now(), limit=services.limit_per_hour,
                                            window=LIMIT_WINDOW, ticket_number=number, ticket_status=status)
        if slot.folded:
            await self._record(number, "folded", {**details, "text": (notification.text or "")[:80]})
            return DeliveryReceipt(external_message_id=FOLDED)
        if slot.id is None:
            if delivery.attempt == 1:
                await self._record(number, "deferred", {**details, "retry_after_s": round(slot.retry_after_s)})
            raise DeliveryRetryLater("per-phone SMS limit reached", retry_after_s=slot.retry_after_s)
        params = notice_params(number, status, tracking_link(runtime, notification, ticket))
        try:
            message_id = await services.provider.send(phone, services.settings.sms_template_code_notice, params)
        except SmsRetryable as error:
            await services.store.release(slot.id)
            raise DeliveryRetryLater(error.reason, retry_after_s=error.retry_after_s) from error
        except SmsPermanent as error:
            await services.store.release(slot.id)
            await self._record(number, "failed", {**details, "reason": error.reason[:200]})
            raise DeliveryRejected(error.reason) from error
        await services.store.confirm(slot.id, provider=services.provider.name, message_id=message_id)
        await self._record(number, "sent", {**details, "message_id": message_id,
                                            "template": services.settings.sms_template_code_notice})
        return DeliveryReceipt(external_message_id=message_id)

    async def _record(self, number: str, outcome: str, details: dict[str, Any]) -> None:
        """The ticket's trail; a failure here never undoes an SMS that went out."""
        try:
            await self._runtime.service.handle(RecordDelivery(number, CHANNEL, outcome, details), SYSTEM_ACTOR)
        except TicketbotError as error:
            log.warning("SMS %s of %s not recorded: %s", outcome, number, error.user_message)

    async def fetch_media(self, media_ref: str) -> bytes:
        raise DeliveryRejected("SMS carries no media")
