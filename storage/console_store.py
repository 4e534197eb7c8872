"""The staff console's sign-in links, sessions and saved views (issue 22, bot/console/auth.py).

Tokens are 256 random bits, handed out once (in the chat reply, in the cookie) and stored only as their
SHA-256. Each call is its own short transaction (a savepoint when the caller runs inside the inbox's
shared transaction: the `后台` command's link becomes durable with its reply).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlmodel import col

from core.model import Person
from storage.database import Sessions
from storage.tables import PersonRow
from storage.tables_console import ConsoleLinkRow, ConsoleSavedViewRow, ConsoleSessionRow
from storage.unit_of_work import person_from_row

_SESSION_WITH_PERSON: Any = (
    select(PersonRow, col(ConsoleSessionRow.created_at).label("session_created_at"),
           col(ConsoleSessionRow.last_seen_at), col(ConsoleSessionRow.expires_at), col(ConsoleSessionRow.revoked_at))
    .join(ConsoleSessionRow, col(PersonRow.id) == col(ConsoleSessionRow.person_id))
    .where(col(ConsoleSessionRow.token_hash) == bindparam("token_hash")))
TOUCH_EVERY = timedelta(seconds=30)  # last_seen_at is rewritten at most this often (a write per page is waste)
MAX_SAVED_VIEWS = 50


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


class LinkRefusal(StrEnum):
    """Why a sign-in link opened no session (the page says it in words)."""

    UNKNOWN = "unknown"  # forged, mistyped, or from another installation
    USED = "used"
    EXPIRED = "expired"
    PERSON_GONE = "person_gone"  # deactivated (or no longer staff) since the link was sent


@dataclass(frozen=True, slots=True)
class Redeemed:
    session_token: str | None  # the new session's cookie value; None: refused
    refusal: LinkRefusal | None
    person: Person | None


@dataclass(frozen=True, slots=True)
class ActiveSession:
    token_hash: str
    person: Person
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SavedView:
    id: int
    name: str
    query: str


class ConsoleStore:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    # --- links ---
    async def issue_link(self, person_id: str, *, now: datetime, valid_for: timedelta) -> str:
        token = new_token()
        async with self._sessions.transaction() as conn:
            await conn.execute(insert(ConsoleLinkRow).values(
                token_hash=token_hash(token), person_id=person_id, created_at=now, expires_at=now + valid_for))
        return token

    async def redeem_link(self, token: str, *, now: datetime, lifetime: timedelta,
                          allowed_roles: frozenset[str]) -> Redeemed:
        """Use the link once: marks it used (even when the person turns out not to be allowed, so a
        link is never worth a second try) and opens a session for its person."""
        hashed = token_hash(token)
        async with self._sessions.transaction() as conn:
            row = (await conn.execute(select(ConsoleLinkRow).where(col(ConsoleLinkRow.token_hash) == hashed)))\
                .one_or_none()
            if row is None:
                return Redeemed(None, LinkRefusal.UNKNOWN, None)
            if row.used_at is not None:
                return Redeemed(None, LinkRefusal.USED, None)
            if row.expires_at <= now:
                return Redeemed(None, LinkRefusal.EXPIRED, None)
            # The UPDATE decides between two simultaneous openings: only one sees the unused row.
            claimed = await conn.execute(update(ConsoleLinkRow).where(
                col(ConsoleLinkRow.token_hash) == hashed, col(ConsoleLinkRow.used_at).is_(None)).values(used_at=now))
            if claimed.rowcount != 1:
                return Redeemed(None, LinkRefusal.USED, None)
            person_row = (await conn.execute(select(PersonRow).where(col(PersonRow.id) == row.person_id)))\
                .one_or_none()
            person = person_from_row(person_row) if person_row is not None else None
            if person is None or not person.active or person.role.value not in allowed_roles:
                return Redeemed(None, LinkRefusal.PERSON_GONE, person)
            session_token = new_token()
            await conn.execute(insert(ConsoleSessionRow).values(
                token_hash=token_hash(session_token), person_id=person.id, created_at=now, last_seen_at=now,
                expires_at=now + lifetime))
        return Redeemed(session_token, None, person)

    # --- sessions ---
    async def active_session(self, session_token: str, *, now: datetime, idle: timedelta,
                             touch: bool = True) -> ActiveSession | None:
        """The session and its person as they are now (re-read on every request), or None when it
        ended: unknown, revoked, past its absolute or idle expiry. `touch`: a person's request (not a
        page's automatic refresh) — it moves last_seen_at, the start of the idle time."""
        hashed = token_hash(session_token)
        async with self._sessions.transaction() as conn:
            row = (await conn.execute(_SESSION_WITH_PERSON, {"token_hash": hashed})).one_or_none()
            if row is None:
                return None
            if row.revoked_at is not None or row.expires_at <= now or row.last_seen_at + idle <= now:
                return None
            if touch and now - row.last_seen_at >= TOUCH_EVERY:
                await conn.execute(update(ConsoleSessionRow).where(col(ConsoleSessionRow.token_hash) == hashed)
                                   .values(last_seen_at=now))
        return ActiveSession(hashed, person_from_row(row), row.session_created_at, row.expires_at)

    async def end_session(self, session_token_hash: str, *, now: datetime) -> None:
        async with self._sessions.transaction() as conn:
            await conn.execute(update(ConsoleSessionRow).where(
                col(ConsoleSessionRow.token_hash) == session_token_hash, col(ConsoleSessionRow.revoked_at).is_(None))
                .values(revoked_at=now))

    async def revoke_all(self, person_id: str, *, now: datetime) -> int:
        """`后台 退出全部`: every session of the person ends, and every unused link stops working.
        Returns how many sessions were still open."""
        async with self._sessions.transaction() as conn:
            open_sessions = await conn.execute(update(ConsoleSessionRow).where(
                col(ConsoleSessionRow.person_id) == person_id, col(ConsoleSessionRow.revoked_at).is_(None),
                col(ConsoleSessionRow.expires_at) > now).values(revoked_at=now))
            await conn.execute(update(ConsoleLinkRow).where(
                col(ConsoleLinkRow.person_id) == person_id, col(ConsoleLinkRow.used_at).is_(None))
                .values(used_at=now))
        return int(open_sessions.rowcount or 0)

    async def purge_ended(self, *, before: datetime) -> None:
        """Links and sessions that ended before `before` (nothing reads them after that)."""
        async with self._sessions.transaction() as conn:
            await conn.execute(delete(ConsoleLinkRow).where(col(ConsoleLinkRow.expires_at) < before))
            await conn.execute(delete(ConsoleSessionRow).where(col(ConsoleSessionRow.expires_at) < before))

    async def supervised_stores(self, person_id: str) -> set[str]:
        """The stores of the active people whose supervisor is `person_id`."""
        async with self._sessions.transaction() as conn:
            rows = await conn.execute(select(col(PersonRow.store_id)).distinct().where(
                col(PersonRow.supervisor_id) == person_id, col(PersonRow.active).is_(True),
                col(PersonRow.store_id).is_not(None)))
            return {str(r[0]) for r in rows}

    # --- saved views ---
    async def saved_views(self, person_id: str) -> list[SavedView]:
        async with self._sessions.transaction() as conn:
            rows = await conn.execute(select(ConsoleSavedViewRow).where(
                col(ConsoleSavedViewRow.person_id) == person_id).order_by(col(ConsoleSavedViewRow.name)))
            return [SavedView(int(r.id), r.name, r.query) for r in rows]

    async def save_view(self, person_id: str, name: str, query: str, *, now: datetime) -> bool:
        """Saves (or replaces) the view called `name`; False when the person already has the maximum."""
        async with self._sessions.transaction() as conn:
            existing = (await conn.execute(select(col(ConsoleSavedViewRow.id)).where(
                col(ConsoleSavedViewRow.person_id) == person_id, col(ConsoleSavedViewRow.name) == name))).first()
            if existing is not None:
                await conn.execute(update(ConsoleSavedViewRow).where(col(ConsoleSavedViewRow.id) == existing[0])
                                   .values(query=query, created_at=now))
                return True
            count = (await conn.execute(select(func.count()).select_from(ConsoleSavedViewRow).where(
                col(ConsoleSavedViewRow.person_id) == person_id))).scalar_one()
            if count >= MAX_SAVED_VIEWS:
                return False
            await conn.execute(insert(ConsoleSavedViewRow).values(person_id=person_id, name=name, query=query,
                                                                  created_at=now))
        return True

    async def delete_view(self, person_id: str, view_id: int) -> bool:
        async with self._sessions.transaction() as conn:
            result = await conn.execute(delete(ConsoleSavedViewRow).where(
                col(ConsoleSavedViewRow.id) == view_id, col(ConsoleSavedViewRow.person_id) == person_id))
        return bool(result.rowcount)
