"""Which numbers get SMS: mainland mobiles only (a landline cannot receive one)."""

from __future__ import annotations

import re

from bot.sms.errors import BadPhone
from core.masterdata.identifiers import normalise_phone

MOBILE = re.compile(r"1[3-9]\d{9}")


def mobile_or_none(text: str | None) -> str | None:
    phone = normalise_phone(text or "")
    return phone if phone is not None and MOBILE.fullmatch(phone) else None


def mobile(text: str) -> str:
    phone = mobile_or_none(text)
    if phone is None:
        raise BadPhone(f"not a mainland mobile number: {len(text)} characters",
                       user_message="请填写正确的 11 位手机号（例如 13800138000）。")
    return phone
