"""A unit of work that commits and goes on (the runtime's sweep does: rules, then the template)
starts a fresh transaction: nothing cached from the committed one is used again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from storage.audit_verify import verify_audit
from storage.database import create_engine, session_factory
from storage.migrate import upgrade
from storage.unit_of_work import SqlUnitOfWork

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


async def test_reading_and_auditing_after_a_commit_in_the_same_unit_of_work(database_url: str) -> None:
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        async with SqlUnitOfWork(sessions) as uow:
            await uow.save_config("test_after_commit", {"n": 1}, actor_id="a", note="", at=NOW)
            await uow.append_audit(kind="first", actor_id="a", at=NOW, payload={}, ticket_number=None)
            await uow.commit()
            async with SqlUnitOfWork(sessions) as other:  # someone else appends meanwhile
                await other.append_audit(kind="between", actor_id="b", at=NOW, payload={}, ticket_number=None)
                await other.commit()
            assert await uow.latest_config("test_after_commit") == (1, {"n": 1})  # was: "Connection is closed"
            await uow.append_audit(kind="after", actor_id="a", at=NOW, payload={}, ticket_number=None)
            await uow.commit()
        checked, problems = await verify_audit(sessions)
        assert checked >= 3 and problems == []  # "after" chained onto "between", not onto a stale head
    finally:
        await engine.dispose()


async def test_outbox_rows_and_the_audit_head_are_written_at_commit_and_only_then(database_url: str) -> None:
    """Both are deferred to the commit: in the transaction the dispatch change feed sees the held
    head, after it the stored head ends the chain, and a rollback stores nothing of either."""
    from sqlalchemy import func, select

    from core.cards import Notification
    from core.dispatch.store import ChainMark
    from storage.tables import AuditHeadRow, OutboxRow

    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    sessions = session_factory(engine)

    async def stored() -> tuple[int, tuple[int, str] | None]:
        async with sessions() as session:
            outbox = (await session.execute(select(func.count()).select_from(OutboxRow))).scalar_one()
            head = (await session.execute(select(AuditHeadRow.seq, AuditHeadRow.hash))).first()
            return int(outbox), (int(head[0]), str(head[1])) if head else None

    async def three_events_and_two_messages(uow: SqlUnitOfWork) -> ChainMark:
        for kind in ("one", "two", "three"):
            await uow.append_audit(kind=kind, actor_id="a", at=NOW, payload={}, ticket_number=None)
        for text in ("甲", "乙"):
            await uow.enqueue(Notification(recipient_id="nobody", text=text), at=NOW, reply_context=None)
        return await uow.dispatch_store().chain_head()

    try:
        async with SqlUnitOfWork(sessions) as uow:
            assert (await three_events_and_two_messages(uow)).seq == 3
            # Left without a commit: rolled back.
        assert await stored() in {(0, None), (0, (0, "0" * 64))}

        async with SqlUnitOfWork(sessions) as uow:
            held = await three_events_and_two_messages(uow)
            await uow.commit()
        outbox, head = await stored()
        assert outbox == 2 and held.seq == 3 and head == (held.seq, held.hash)
        async with sessions() as session:
            texts = [p["text"] for p in (await session.execute(
                select(OutboxRow.payload).order_by(OutboxRow.id))).scalars()]
        assert texts == ["甲", "乙"]
        checked, problems = await verify_audit(sessions)
        assert checked == 3 and problems == []
    finally:
        await engine.dispose()
