"""A unit of work's audit events go in at its commit, as one statement (one round trip on PostgreSQL
instead of one per event), and nothing inside or outside the transaction can tell: its own reads of
the chain see them, a rollback leaves none, and the chain verifies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.model import Person, Role
from storage.audit_verify import verify_audit
from storage.database import Sessions
from storage.unit_of_work import SqlUnitOfWork
from tests.statements import statements_sent

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


@pytest.fixture
def sessions(db_sessions: Sessions) -> Sessions:
    return db_sessions


async def append(uow: SqlUnitOfWork, kind: str, number: str = "GD-1", minutes: int = 0) -> None:
    await uow.append_audit(kind=kind, actor_id="tech-1", at=NOW + timedelta(minutes=minutes),
                           payload={"说明": kind, "n": minutes}, ticket_number=number)


def audit_inserts(sent: list[str]) -> list[str]:
    return [s for s in sent if s.lstrip().upper().startswith("INSERT INTO AUDIT_EVENTS")]


async def test_events_go_in_at_commit_as_one_statement(sessions: Sessions) -> None:
    engine = sessions.kw["bind"]
    async with statements_sent(engine) as sent, SqlUnitOfWork(sessions) as uow:
        for i, kind in enumerate(("ticket_created", "sla_started", "offered")):
            await append(uow, kind, minutes=i)
        assert audit_inserts(sent) == []  # nothing yet: the head row is locked, nobody else can append
        await uow.commit()
    # PostgreSQL: one executemany, one round trip (its listeners see it once); SQLite traces each row.
    assert len(audit_inserts(sent)) == (3 if engine.dialect.name == "sqlite" else 1)
    async with SqlUnitOfWork(sessions) as uow:
        stored = await uow.audit_for_ticket("GD-1")
    assert [(e.kind, e.id, e.payload["n"]) for e in stored] == [("ticket_created", 1, 0), ("sla_started", 2, 1),
                                                               ("offered", 3, 2)]
    count, problems = await verify_audit(sessions)
    assert (count, problems) == (3, [])


async def test_reads_in_the_transaction_see_its_pending_events(sessions: Sessions) -> None:
    async with SqlUnitOfWork(sessions) as uow:  # two committed events, by someone else
        await append(uow, "ticket_created", "GD-0")
        await append(uow, "offered", "GD-0", 1)
        await uow.commit()
    async with statements_sent(sessions.kw["bind"]) as sent, SqlUnitOfWork(sessions) as uow:
        await append(uow, "ticket_created", "GD-1", 2)
        await append(uow, "offered", "GD-1", 3)
        store = uow.dispatch_store()
        assert (await store.chain_head()).seq == 4
        # From before the committed ones: the table's part, then this transaction's, in chain order.
        events = await store.events_after(0, 100)
        assert [(e.id, e.kind, e.ticket_number) for e in events] == [
            (1, "ticket_created", "GD-0"), (2, "offered", "GD-0"),
            (3, "ticket_created", "GD-1"), (4, "offered", "GD-1")]
        assert [e.id for e in await store.events_after(0, 3)] == [1, 2, 3]  # the limit holds across both parts
        assert [e.id for e in await store.events_after(1, 1)] == [2]
        reads = len(sent)
        caught_up = await store.events_after(2, 100)  # all of it pending here: no read at all
        assert [(e.id, e.payload) for e in caught_up] == [(3, {"说明": "ticket_created", "n": 2}),
                                                          (4, {"说明": "offered", "n": 3})]
        assert caught_up[1].hash == events[3].hash and len(caught_up[1].hash or "") == 64
        assert await store.events_after(4, 100) == []
        assert len(sent) == reads
        assert audit_inserts(sent) == []
        # Reading a ticket's trail writes what is pending first.
        assert [e.kind for e in await uow.audit_for_ticket("GD-1")] == ["ticket_created", "offered"]
        assert len(audit_inserts(sent)) >= 1
        await append(uow, "accepted", "GD-1", 4)
        assert [e.id for e in await store.events_after(3, 100)] == [4, 5]  # table, then pending
        await uow.commit()
    count, problems = await verify_audit(sessions)
    assert (count, problems) == (5, [])


async def test_a_rolled_back_transaction_leaves_no_event_and_the_next_continues_the_chain(
        sessions: Sessions) -> None:
    async with SqlUnitOfWork(sessions) as uow:
        await append(uow, "ticket_created")
        await uow.commit()
    async with SqlUnitOfWork(sessions) as uow:
        await append(uow, "offered", minutes=1)
        await append(uow, "accepted", minutes=2)  # and no commit
    async with SqlUnitOfWork(sessions) as uow:
        await append(uow, "closed", minutes=3)
        await uow.commit()
    async with SqlUnitOfWork(sessions) as uow:
        assert [(e.id, e.kind) for e in await uow.audit_for_ticket("GD-1")] == [(1, "ticket_created"), (2, "closed")]
    count, problems = await verify_audit(sessions)
    assert (count, problems) == (2, [])


async def test_a_person_this_transaction_added_is_not_locked_again(sessions: Sessions) -> None:
    """Locking a customer before counting their reports (intake) costs nothing for a new customer:
    the row this transaction inserted is invisible to the others until it commits."""
    def locks(sent: list[str]) -> list[str]:
        return [s for s in sent if " ".join(s.split()).startswith("SELECT people.id FROM people WHERE people.id =")]

    async with statements_sent(sessions.kw["bind"]) as sent, SqlUnitOfWork(sessions) as uow:
        await uow.add_person(Person(id="cust-new", name="新客户", role=Role.CUSTOMER))
        await uow.lock_person("cust-new")
        assert locks(sent) == []
        await uow.commit()
        await uow.lock_person("cust-new")  # committed: an ordinary row now, locked as any other
        assert len(locks(sent)) == 1


async def test_an_event_is_stored_as_it_was_appended_even_if_its_payload_changes_before_the_commit(
        sessions: Sessions) -> None:
    """The event is hashed when appended and written at commit: what the caller changes in between
    (the payload dict, a list inside it) must not reach the row, or the chain would not verify."""
    history = [{"person_id": "tech-1", "outcome": "offered"}]
    payload = {"history": history, "说明": "派单"}
    async with SqlUnitOfWork(sessions) as uow:
        await uow.append_audit(kind="offered", actor_id="system", at=NOW, payload=payload, ticket_number="GD-1")
        payload["说明"] = "改了"
        history.append({"person_id": "tech-2", "outcome": "offered"})
        await uow.commit()
    async with SqlUnitOfWork(sessions) as uow:
        [stored] = await uow.audit_for_ticket("GD-1")
    assert stored.payload == {"history": [{"person_id": "tech-1", "outcome": "offered"}], "说明": "派单"}
    count, problems = await verify_audit(sessions)
    assert (count, problems) == (1, [])
