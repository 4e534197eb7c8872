"""SMS and the store report page (issue 21): the SMS log and the per-phone limit, phone codes, the
report page's per-IP counter, and queueing a notification on the SMS channel.

Limits are counted conservatively: a request first records itself (committed), then counts what
is in the window, and withdraws its own row when the window is over the limit. Two processes racing
for the last slot may both be refused; neither can make the count exceed the limit.

Personal data (docs/sms.md, "Personal data"): the log keeps its rows (what was sent when, about which
ticket, by which provider: the counts stay true) but their phone is masked (`138****8000`) once they
are older than the retention, or at once for a forgotten customer, whose codes are dropped too.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, literal, or_, select, update
from sqlmodel import col

from storage.database import Sessions
from storage.outbox import rows_queued
from storage.tables import IdentityRow, OutboxRow, TicketRow
from storage.tables_sms import ReportPageHitRow, SmsCodeRow, SmsSendRow

SMS_CHANNEL = "sms"
CODE_KEPT = timedelta(days=1)  # an expired code's row is dropped this long after its expiry
# 13812345678 → 138****5678 in SQL (core.masterdata.identifiers.mask_phone for the log's normalised mobiles).
_PHONE = col(SmsSendRow.phone)
_MASKED_PHONE = func.substr(_PHONE, 1, 3) + literal("****") + func.substr(_PHONE, func.length(_PHONE) - 3, 4)
_NOT_MASKED = _PHONE.not_like("%*%")


@dataclass(frozen=True, slots=True)
class Slot:
    """A reserved place in a phone's hourly SMS budget (`id` None: refused, retry after `retry_after_s`;
    or `folded`: a notice of the same status went just before, nothing to send)."""

    id: int | None
    retry_after_s: float = 0.0
    folded: bool = False

    @property
    def granted(self) -> bool:
        return self.id is not None


@dataclass(frozen=True, slots=True)
class StoredCode:
    phone: str
    code_mac: str
    created_at: datetime
    expires_at: datetime
    attempts: int


class SqlSmsStore:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    # --- the SMS log and the per-phone limit ---
    async def reserve(self, phone: str, kind: str, *, now: datetime, limit: int, window: timedelta,
                      ticket_number: str | None = None, ticket_status: str | None = None) -> Slot:
        """A place for one SMS in the phone's hourly budget. A notice (`ticket_number` and `ticket_status`)
        is folded instead when the notice about that ticket just before it (sent or being sent, by
        any process) told the same status: of a burst, exactly one SMS goes out."""
        async with self._sessions.transaction(savepoint=False) as conn:
            slot_id: int = (await conn.execute(insert(SmsSendRow).values(
                phone=phone, at=now, kind=kind, state="reserved", ticket_number=ticket_number,
                ticket_status=ticket_status, provider="").returning(col(SmsSendRow.id)))).scalar_one()  # type: ignore[assignment]
        since = now - window
        async with self._sessions.transaction(savepoint=False) as conn:
            if ticket_number is not None:
                before = (await conn.execute(select(col(SmsSendRow.ticket_status)).where(
                    col(SmsSendRow.phone) == phone, col(SmsSendRow.ticket_number) == ticket_number,
                    col(SmsSendRow.kind) == kind, col(SmsSendRow.id) < slot_id)
                    .order_by(col(SmsSendRow.id).desc()).limit(1))).first()
                if before is not None and before[0] == ticket_status:
                    await conn.execute(delete(SmsSendRow).where(col(SmsSendRow.id) == slot_id))
                    return Slot(None, folded=True)
            times = sorted((await conn.execute(select(col(SmsSendRow.at)).where(
                col(SmsSendRow.phone) == phone, col(SmsSendRow.at) > since))).scalars())
            if len(times) <= limit:
                return Slot(slot_id)
            await conn.execute(delete(SmsSendRow).where(col(SmsSendRow.id) == slot_id))
        # The window frees a place when its oldest counted SMS leaves it.
        return Slot(None, retry_after_s=max(1.0, (times[0] + window - now).total_seconds()))

    async def confirm(self, slot_id: int, *, provider: str, message_id: str | None) -> None:
        async with self._sessions.transaction(savepoint=False) as conn:
            await conn.execute(update(SmsSendRow).where(col(SmsSendRow.id) == slot_id).values(
                state="sent", provider=provider, message_id=(message_id or "")[:128] or None))

    async def release(self, slot_id: int) -> None:
        """The provider refused or failed: the SMS did not go out and does not count."""
        async with self._sessions.transaction(savepoint=False) as conn:
            await conn.execute(delete(SmsSendRow).where(col(SmsSendRow.id) == slot_id))

    async def sent(self, phone: str) -> list[dict[str, Any]]:
        """The SMS log of a phone, oldest first (operators, tests)."""
        async with self._sessions.transaction(savepoint=False) as conn:
            rows = await conn.execute(select(SmsSendRow).where(col(SmsSendRow.phone) == phone)
                                      .order_by(col(SmsSendRow.id)))
            return [dict(row._mapping) for row in rows]

    # --- personal data ---
    async def forget(self, person_id: str, phones: list[str]) -> int:
        """`customer forget`: mask the phone of every log row to one of `phones` or about one of the
        person's tickets, and drop the phones' codes. Returns how many rows were masked."""
        about_theirs = col(SmsSendRow.ticket_number).in_(
            select(col(TicketRow.number)).where(col(TicketRow.customer_id) == person_id).scalar_subquery())
        async with self._sessions.transaction(savepoint=False) as conn:
            if phones:
                await conn.execute(delete(SmsCodeRow).where(col(SmsCodeRow.phone).in_(phones)))
            which = or_(_PHONE.in_(phones), about_theirs) if phones else about_theirs
            result = await conn.execute(update(SmsSendRow).where(which, _NOT_MASKED).values(phone=_MASKED_PHONE))
            return int(result.rowcount or 0)

    async def mask_before(self, cutoff: datetime, *, after_id: int, limit: int = 250) -> tuple[int, int, bool]:
        """The retention: mask the rows after `after_id` (in id order, which is sending order) up to the
        first one sent at or after `cutoff`, at most `limit` of them. Returns (rows masked, the id up to
        which everything is done, whether the walk reached a row too young or the end)."""
        async with self._sessions.transaction(savepoint=False) as conn:
            rows = list(await conn.execute(select(col(SmsSendRow.id), col(SmsSendRow.at)).where(
                col(SmsSendRow.id) > after_id).order_by(col(SmsSendRow.id)).limit(limit)))
            due = [int(r.id) for r in itertools.takewhile(lambda r: r.at < cutoff, rows)]
            masked = 0
            if due:
                result = await conn.execute(update(SmsSendRow).where(
                    col(SmsSendRow.id) > after_id, col(SmsSendRow.id) <= due[-1], _NOT_MASKED)
                    .values(phone=_MASKED_PHONE))
                masked = int(result.rowcount or 0)
        return masked, due[-1] if due else after_id, len(due) < limit

    async def drop_expired_codes(self, now: datetime) -> int:
        """Codes that expired a day ago (as `put_code` drops them): a phone that never came back and
        no other phone asked since would otherwise keep its row for ever."""
        async with self._sessions.transaction(savepoint=False) as conn:
            result = await conn.execute(delete(SmsCodeRow).where(col(SmsCodeRow.expires_at) < now - CODE_KEPT))
            return int(result.rowcount or 0)

    # --- confirmation codes ---
    async def put_code(self, phone: str, code_mac: str, *, now: datetime, expires_at: datetime) -> None:
        """The phone's new code replaces any older one (and its count of wrong guesses); codes that
        expired a day ago go too (a phone that never came back leaves no row behind)."""
        async with self._sessions.transaction(savepoint=False) as conn:
            await conn.execute(delete(SmsCodeRow).where(col(SmsCodeRow.phone) == phone))
            await conn.execute(delete(SmsCodeRow).where(col(SmsCodeRow.expires_at) < now - CODE_KEPT))
            await conn.execute(insert(SmsCodeRow).values(phone=phone, code_mac=code_mac, created_at=now,
                                                         expires_at=expires_at, attempts=0))

    async def get_code(self, phone: str) -> StoredCode | None:
        async with self._sessions.transaction(savepoint=False) as conn:
            row = (await conn.execute(select(SmsCodeRow).where(col(SmsCodeRow.phone) == phone))).first()
        return None if row is None else StoredCode(row.phone, row.code_mac, row.created_at, row.expires_at,
                                                   int(row.attempts))

    async def count_wrong_guess(self, phone: str) -> None:
        async with self._sessions.transaction(savepoint=False) as conn:
            await conn.execute(update(SmsCodeRow).where(col(SmsCodeRow.phone) == phone).values(
                attempts=SmsCodeRow.attempts + 1))

    async def use_code(self, phone: str, code_mac: str) -> bool:
        """Consume the code: True for exactly one caller (a double submit uses it once)."""
        async with self._sessions.transaction(savepoint=False) as conn:
            result = await conn.execute(delete(SmsCodeRow).where(col(SmsCodeRow.phone) == phone,
                                                                 col(SmsCodeRow.code_mac) == code_mac))
            return bool(result.rowcount)

    async def drop_code(self, phone: str) -> None:
        async with self._sessions.transaction(savepoint=False) as conn:
            await conn.execute(delete(SmsCodeRow).where(col(SmsCodeRow.phone) == phone))

    # --- the report page's per-IP counter ---
    async def count_hit(self, ip: str, kind: str, *, now: datetime, limit: int, window: timedelta) -> bool:
        """Record one request of `kind` from `ip`; False (and not recorded) when the window is full."""
        since = now - window
        async with self._sessions.transaction(savepoint=False) as conn:
            # What left the window is of no use any more: the table stays as small as the traffic.
            await conn.execute(delete(ReportPageHitRow).where(
                col(ReportPageHitRow.ip) == ip, col(ReportPageHitRow.kind) == kind, col(ReportPageHitRow.at) <= since))
            hit_id: int = (await conn.execute(insert(ReportPageHitRow).values(ip=ip, kind=kind, at=now)
                                              .returning(col(ReportPageHitRow.id)))).scalar_one()  # type: ignore[assignment]
        async with self._sessions.transaction(savepoint=False) as conn:
            count = int((await conn.execute(select(func.count()).select_from(ReportPageHitRow).where(
                col(ReportPageHitRow.ip) == ip, col(ReportPageHitRow.kind) == kind,
                col(ReportPageHitRow.at) > since))).scalar_one())
            if count <= limit:
                return True
            await conn.execute(delete(ReportPageHitRow).where(col(ReportPageHitRow.id) == hit_id))
            return False

    # --- the SMS channel ---
    async def phone_identity(self, phone: str) -> str | None:
        """The person the phone reaches on the SMS channel, if any."""
        async with self._sessions.transaction(savepoint=False) as conn:
            return (await conn.execute(select(col(IdentityRow.person_id)).where(
                col(IdentityRow.platform) == SMS_CHANNEL, col(IdentityRow.external_id) == phone))).scalar()

    async def queue_sms(self, person_id: str, phone: str, payload: dict[str, Any], *, now: datetime) -> bool:
        """Queue `payload` (a Notification's dict) for `person_id` on the SMS channel, linking the phone
        as their SMS identity when it is free. False when the phone is another person's SMS identity."""
        async with self._sessions.transaction(savepoint=False) as conn:
            holder = (await conn.execute(select(col(IdentityRow.person_id)).where(
                col(IdentityRow.platform) == SMS_CHANNEL, col(IdentityRow.external_id) == phone))).scalar()
            if holder is not None and holder != person_id:
                return False
            mine = (await conn.execute(select(col(IdentityRow.external_id)).where(
                col(IdentityRow.platform) == SMS_CHANNEL, col(IdentityRow.person_id) == person_id))).scalar()
            if mine is not None and mine != phone:
                return False  # the dispatcher sends to the SMS identity: it must be this phone
            if holder is None and mine is None:
                await conn.execute(insert(IdentityRow).values(platform=SMS_CHANNEL, external_id=phone,
                                                              person_id=person_id))
            await conn.execute(insert(OutboxRow).values(
                recipient_id=person_id, channel=SMS_CHANNEL, payload=payload, reply_context={}, status="pending",
                attempts=0, created_at=now, next_attempt_at=now))
        await rows_queued()  # the dispatcher wakes now, not at its next poll
        return True
