"""Phone confirmation codes: 6 digits, valid 10 minutes, 5 guesses, one live code per phone, only
their keyed hash at rest. Sending one counts against the phone's hourly SMS limit, and a phone gets
a new code at most once a minute.

Codes go to the provider at once, not through the outbox: the person is waiting on the page, a
refusal must be shown to them, and a code must never be stored in clear (an outbox row would hold it).
Each one is in the SMS log (sms_sends) like every other SMS.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from bot.sms.errors import SmsError, SmsLimitReached, SmsNotConfigured, SmsPermanent, SmsRetryable
from bot.sms.phones import mobile
from bot.sms.services import LIMIT_WINDOW, SmsServices, sms_of
from core.masterdata.identifiers import mask_phone

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

CODE_DIGITS = 6
CODE_TTL = timedelta(minutes=10)
MAX_ATTEMPTS = 5
RESEND_AFTER = timedelta(seconds=60)


def code_mac(services: SmsServices, phone: str, code: str) -> str:
    return services.key.mac(f"sms-code\x1f{phone}\x1f{code}")


async def send_code(runtime: Runtime, phone: str) -> None:
    """Send a new code to `phone` (any common notation of a mainland mobile). Raises BadPhone,
    SmsLimitReached (the hourly limit, or a code sent under a minute ago), SmsNotConfigured, or
    SmsRetryable/SmsPermanent from the provider; each carries a Chinese `user_message`."""
    services = sms_of(runtime)
    if not services.settings.sms_template_code_verify:
        raise SmsNotConfigured("SMS_TEMPLATE_CODE_VERIFY is not set")
    phone = mobile(phone)
    now = runtime.clock.now()
    live = await services.store.get_code(phone)
    if live is not None and now - live.created_at < RESEND_AFTER:
        wait = (live.created_at + RESEND_AFTER - now).total_seconds()
        raise SmsLimitReached("a code was sent less than a minute ago", retry_after_s=wait, phone=mask_phone(phone))
    slot = await services.store.reserve(phone, "code", now=now, limit=services.limit_per_hour, window=LIMIT_WINDOW)
    if slot.id is None:
        raise SmsLimitReached("the phone's hourly SMS limit is reached", retry_after_s=slot.retry_after_s,
                              phone=mask_phone(phone))
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    await services.store.put_code(phone, code_mac(services, phone, code), now=now, expires_at=now + CODE_TTL)
    try:
        message_id = await services.provider.send(phone, services.settings.sms_template_code_verify, {"code": code})
    except SmsError as error:
        await services.store.drop_code(phone)
        await services.store.release(slot.id)
        log.warning("confirmation code to %s not sent: %s", mask_phone(phone), error.reason)
        if isinstance(error, (SmsRetryable, SmsPermanent)):
            error.user_message = "验证码短信发送失败，请稍后再试。"
        raise
    await services.store.confirm(slot.id, provider=services.provider.name, message_id=message_id)


async def check_code(runtime: Runtime, phone: str, code: str, *, consume: bool = True) -> bool:
    """True when `code` is the live code of `phone`. A right code is used up (`consume`); a wrong one
    counts, and after MAX_ATTEMPTS wrong ones the code is dead; an expired code is never right."""
    services = sms_of(runtime)
    normalised = mobile(phone)
    code = code.strip()
    live = await services.store.get_code(normalised)
    if live is None or live.attempts >= MAX_ATTEMPTS or runtime.clock.now() >= live.expires_at:
        return False
    mac = code_mac(services, normalised, code)
    if not (len(code) == CODE_DIGITS and code.isdigit() and hmac.compare_digest(mac, live.code_mac)):
        await services.store.count_wrong_guess(normalised)
        return False
    return await services.store.use_code(normalised, mac) if consume else True
