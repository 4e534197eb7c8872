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
