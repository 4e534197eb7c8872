"""Who reports on the store page: the customer holding the phone number, as the front desk finds
them (core/intake/front_desk.py: a customer person with that phone, else the customer record of
master data listing it), or a new customer.

A new web customer gets the store of the page and, when SMS is configured, the SMS channel (their
phone as the "sms" identity), so that every notice about their ticket reaches them by SMS. A known
customer without a chat (preferred channel "local": made at the front desk) gets SMS too; one who
talks to us in a chat keeps it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from core.model import Person, Role
from core.service import NewActor

if TYPE_CHECKING:
    from bot.runtime import Runtime

SMS_CHANNEL = "sms"


@dataclass(slots=True)
class WebCustomer:
    person: Person  # the actor of the report: with the page's store when they have none of their own
    new_actor: NewActor | None  # not stored yet: stored by the report's transaction
    known: bool


async def web_customer(runtime: Runtime, phone: str, store_code: str) -> WebCustomer:
    sms = runtime.settings.sms_provider is not None
    async with runtime.lookup_uow() as uow:
        found = next((p for p in await uow.people_by_phone(phone) if p.role is Role.CUSTOMER and p.active), None)
        if found is None:
            for record in await uow.masterdata().customers_by_phone(phone):
                holder = await uow.get_person(record.id)
                if holder is not None and holder.role is Role.CUSTOMER and holder.active:
                    found = holder
                    break
        if found is None:
            person = Person(id=f"c-{uuid.uuid4().hex[:16]}", name=f"客户{phone[-4:]}", role=Role.CUSTOMER,
                            phone=phone, store_id=store_code, preferred_channel=SMS_CHANNEL if sms else "local")
            taken = await uow.person_by_identity(SMS_CHANNEL, phone) is not None
            return WebCustomer(person, NewActor({SMS_CHANNEL: phone} if sms and not taken else {}), known=False)
        if sms and found.preferred_channel == "local":
            holder = await uow.person_by_identity(SMS_CHANNEL, phone)
            if holder is None:
                await uow.link_identity(found.id, SMS_CHANNEL, phone)
            if holder is None or holder.id == found.id:
                found.preferred_channel = SMS_CHANNEL
                await uow.save_person(found)
            await uow.commit()
    # The page's store is the report's unless master data names one (core/masterdata/prefill.py: the
    # asset's store, else the customer record's, else this person's).
    return WebCustomer(replace(found, store_id=store_code), None, known=True)
