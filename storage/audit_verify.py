"""`ticketbot audit verify`: walk the hash chain in the database."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from core.audit.chain import ChainProblem, ChainRow, verify_chain
from storage.tables import AuditEventRow, AuditHeadRow


async def verify_audit(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, list[ChainProblem]]:
    async with sessions() as session:
        head = await session.get(AuditHeadRow, 1)
        result = await session.stream_scalars(select(AuditEventRow).order_by(col(AuditEventRow.seq)))
        rows = [
            ChainRow(seq=r.seq, kind=r.kind, actor_id=r.actor_id, at=r.at, ticket_number=r.ticket_number,
                     payload=r.payload, prev_hash=r.prev_hash, hash=r.hash)
            async for r in result
        ]
    problems = verify_chain(rows, head_seq=head.seq if head else 0, head_hash=head.hash if head else "0" * 64)
    return len(rows), problems
