"""Front-desk registration (代客报修 / 进店登记): which customer a staff member reports for.

The customer is named by person id or by phone. A phone is normalised (spaces, dashes, +86 go) and
looked up among customers; a phone nobody has yet makes a new customer person holding it, with no
chat identity: they sign in person on the technician's device (core/lifecycle/signoff.py). A staff
member's own phone on their staff record is not a customer: `代客报修 我的手机号 …` makes them a
customer person of their own, apart from their staff account, so that no staff account ever becomes
a ticket's customer (it could never sign, or would sign its own work).
"""

from __future__ import annotations

import re
import uuid

from core.errors import InvalidInput
from core.model import Person, Role
from core.service import Context

PHONE_LIKE = re.compile(r"[+\d][\d\s()（）-]{4,}")
MOBILE = re.compile(r"1[3-9]\d{9}")
LANDLINE = re.compile(r"0\d{9,11}")  # area code + number


def normalise_phone(text: str) -> str | None:
    """The phone as stored (digits, no +86), None when `text` is not a valid mainland number."""
    digits = re.sub(r"[\s()（）-]", "", text)
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    return digits if MOBILE.fullmatch(digits) or LANDLINE.fullmatch(digits) else None


def looks_like_phone(text: str) -> bool:
    return bool(PHONE_LIKE.fullmatch(text))


def masked(phone: str) -> str:
    """138****8000: enough for staff to recognise a number, not enough to copy it."""
    return f"{phone[:3]}****{phone[-4:]}" if len(phone) >= 8 else phone


async def customer_for(ctx: Context, ref: str) -> tuple[Person, bool]:
    """The customer `ref` names (person id or phone) and whether they were created just now."""
    ref = ref.strip()
    phone = normalise_phone(ref) if looks_like_phone(ref) else None
    if phone is not None:
        found = [p for p in await ctx.uow.people_by_phone(phone) if p.role is Role.CUSTOMER]
        if found:
            return found[0], False
        # A customer's second or third phone lives in master data only (people.phone holds the first).
        for record in await ctx.uow.masterdata().customers_by_phone(phone):
            holder = await ctx.uow.get_person(record.id)
            if holder is not None and holder.role is Role.CUSTOMER and holder.active:
                return holder, False
        customer = Person(id=f"c-{uuid.uuid4().hex[:16]}", name=f"客户{phone[-4:]}", role=Role.CUSTOMER,
                          phone=phone, preferred_channel="local")
        # Audited with the ticket it is made for (ticket_created: customer_created), not here: an audit
        # event now would take the chain's head before the ticket counter, against every other report.
        await ctx.uow.add_person(customer)
        return customer, True
    person = await ctx.uow.get_person(ref)  # digits that are no phone may still be a customer number
    if person is None and looks_like_phone(ref):
        raise InvalidInput(f"手机号格式不对：{ref}（例如 13800138000）。", ref=ref)
    if person is None:
        raise InvalidInput(f"没有找到客户「{ref}」：请写客户编号或手机号。", ref=ref)
    if person.role is not Role.CUSTOMER:
        raise InvalidInput(f"{person.name}（{ref}）不是客户：代客报修只能为客户登记；"
                           "员工本人报修请写自己的手机号。", ref=ref)
    if not person.active:
        raise InvalidInput(f"客户 {person.name}（{ref}）已停用。", ref=ref)
    return person, False


async def reachable_in_chat(ctx: Context, person_id: str) -> bool:
    """Whether the person has a chat identity where we answer them (a customer made from a phone
    at the front desk has none: cards sent to them reach nobody)."""
    person = await ctx.uow.get_person(person_id)
    return person is not None and await ctx.uow.external_id(person.id, person.preferred_channel) is not None
