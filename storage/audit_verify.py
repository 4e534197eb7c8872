"""`ticketbot audit verify` / `audit anchor`: walk the keyed hash chain in the database, cross-check
that every ticket has its creation event, and (given an anchor) that the chain still reaches it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from core.audit.chain import (
    Anchor,
    AuditKey,
    ChainHead,
    ChainProblem,
    ChainReport,
    ChainRow,
    check_anchor,
    check_ticket_creations,
    verify_chain,
)
from storage.audit_keys import audit_key_for
from storage.tables import AuditEventRow, AuditHeadRow, TicketRow


async def verify_audit(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, list[ChainProblem]]:
    """(events, problems) under the key bound to the sessions' engine."""
    report = await check_audit(sessions)
    return report.count, report.problems


async def check_audit(sessions: async_sessionmaker[AsyncSession], *, key: AuditKey | None = None,
                      anchor: Anchor | None = None) -> ChainReport:
    """`key`: default, the one bound to the sessions' engine (storage/audit_keys.py)."""
    key = key or audit_key_for(sessions.kw["bind"])
    async with sessions() as session, session.begin():  # one snapshot of rows, head and tickets
        stored = await session.get(AuditHeadRow, 1)
        head = ChainHead(stored.seq, stored.hash, stored.mac) if stored is not None else None
        result = await session.stream_scalars(select(AuditEventRow).order_by(col(AuditEventRow.seq)))
        rows = [
            ChainRow(seq=r.seq, kind=r.kind, actor_id=r.actor_id, at=r.at, ticket_number=r.ticket_number,
                     payload=r.payload, prev_hash=r.prev_hash, hash=r.hash)
            async for r in result
        ]
        numbers = list((await session.execute(select(col(TicketRow.number)))).scalars())
    report = verify_chain(rows, key=key, head=head)
    report.problems.extend(check_ticket_creations(numbers, rows))
    if anchor is not None:
        report.problems.extend(check_anchor(rows, anchor))
    return report
