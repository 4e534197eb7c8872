"""The per-process candidate index (core/dispatch/live.py) follows the database, whoever changed it.

Each Runtime is a process here: its own engine, its own TicketService and so its own LiveIndex.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from bot.runtime import Runtime
from core.clock import FixedClock
from core.commands import ReportPosition, Transition
from core.dispatch.admin import DryRunDispatch, SetDispatchWeights, SetDuty, TechnicianFields, UpdateTechnician
from core.dispatch.engine import DispatchPolicy, DispatchRequest
from core.dispatch.live import LiveIndex, live_index
from tests.conftest import make_settings
from tests.playground_client import PlaygroundUser
from tests.test_dispatch_support import advance, clocked, events, person, report, the_offer, ticket


async def _defaults() -> tuple[int, DispatchPolicy]:
    return 0, DispatchPolicy()


@asynccontextmanager
async def second_process(database_url: str, tmp_path: Path, clock: FixedClock) -> AsyncIterator[Runtime]:
    other = Runtime(make_settings(database_url, tmp_path / "other"), clock=clock)
    try:
        yield other
    finally:
        await other.stop()


async def _profiles(rt: Runtime, live: LiveIndex) -> dict:  # type: ignore[type-arg]
    async with rt.uow() as uow:
        return await live.everyone(uow.dispatch_store(), rt.clock.now())


async def _rebuilt(rt: Runtime) -> dict:  # type: ignore[type-arg]
    return await _profiles(rt, LiveIndex())


async def test_changes_made_by_another_process_reach_the_next_decision(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, clock), \
            second_process(database_url, tmp_path, clock) as other:
        assert live_index(other.service) is not live_index(rt.service)
        admin = await person(rt, "admin")
        first, _ = await report(client, "cust-x1", "中控黑屏")
        assert (await ticket(rt, first)).assignee_id == "tech-liu"  # this process's index is built now
        # The other process takes tech-wang off duty and lowers tech-xu's maximum load.
        await other.service.handle(SetDuty(False, "tech-wang"), admin)
        await other.service.handle(UpdateTechnician("tech-xu", TechnicianFields(max_load=1)), admin)
        second, _ = await report(client, "cust-x2", "中控黑屏")
        assert (await ticket(rt, second)).assignee_id == "tech-xu"  # liu is busier now, wang is off duty
        # ... and sees this process's offers as load in its own index (built lazily from the database).
        dry = await other.service.handle(DryRunDispatch(second), admin)
        assert "徐师傅（tech-xu）：在办 1 单，已达上限 1 单" in dry and "王师傅（tech-wang）：不在岗" in dry
        # A position reported through the other process counts here too (positions carry no audit event).
        await other.service.handle(ReportPosition(31.2040, 121.5908), await person(rt, "tech-liu"))
        profiles = await _profiles(rt, live_index(rt.service))
        assert profiles["tech-liu"].last_position is not None
        assert profiles["tech-liu"].last_position_at == clock.now()
        assert profiles == await _rebuilt(rt)
        # A new dispatch policy saved by the other process applies to this process's next decision.
        await other.service.handle(SetDispatchWeights((("qualification", 0.5), ("distance", 0.2))), admin)
        third, _ = await report(client, "cust-x3", "中控黑屏")
        sent = (await events(rt, third, "offer_sent"))[0]
        assert sent["policy_version"] == 1 and sent["weights"]["qualification"] == 0.5
        assert live_index(rt.service).rebuilds == 1  # kept up incrementally, never rebuilt


async def test_the_incremental_index_equals_a_rebuild_after_many_changes(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, clock):
        live = live_index(rt.service)

        async def same_as_rebuild() -> dict:  # type: ignore[type-arg]
            incremental = await _profiles(rt, live)
            assert incremental == await _rebuilt(rt)
            return incremental

        numbers = []
        for i in range(4):
            number, _ = await report(client, f"cust-m{i}", "中控黑屏" if i % 2 else "底盘有异响")
            numbers.append(number)
            await same_as_rebuild()
        tech, card = await the_offer(client, numbers[0])
        await PlaygroundUser(client, tech).press(card["id"], "decline", {"reason": "too_far"})
        await same_as_rebuild()
        tech, card = await the_offer(client, numbers[1])
        await PlaygroundUser(client, tech).press(card["id"], "accept")
        await same_as_rebuild()
        await rt.service.handle(Transition(numbers[2], "cancel"), await person(rt, "cust-m2"))
        await same_as_rebuild()
        previous = (await ticket(rt, numbers[3])).assignee_id
        await PlaygroundUser(client, "sup-li").say(f"转派 {numbers[3]} tech-zhang")  # filters overridden
        assert (await ticket(rt, numbers[3])).assignee_id == "tech-zhang"
        assert (await same_as_rebuild())[previous].open_load == 0
        await PlaygroundUser(client, "tech-zhang").say("下班")
        await same_as_rebuild()
        resp = await client.post("/playground/api/messages",
                                 json={"user": "tech-huang", "location": {"lat": 31.17, "lng": 121.39}})
        assert resp.status == 200
        await same_as_rebuild()
        # A customer's rating the way the sign-off records it (rating and an event on the ticket).
        async with rt.uow() as uow:
            await uow.add_technician_rating(tech, 2)
            await uow.append_audit(kind="signed_off", actor_id="cust-m1", at=clock.now(), payload={"rating": 2},
                                   ticket_number=numbers[1])
            await uow.commit()
        await same_as_rebuild()
        await advance(rt, clock, minutes=16)  # open offers expire and move on
        incremental = await same_as_rebuild()
        assert live.rebuilds == 1
        assert incremental[tech].rating is not None and incremental[tech].rating < 4.6
        assert incremental[tech].open_load == 1 and incremental[tech].accepted_last_3_days == 1
        assert not incremental["tech-zhang"].on_duty
        assert incremental["tech-huang"].last_position is not None


async def test_a_rolled_back_catch_up_forces_a_rebuild(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, clock):
        live = live_index(rt.service)
        await report(client, "cust-r", "中控黑屏")
        built = live.rebuilds
        request = DispatchRequest("GD-X", "电控类")
        async with rt.uow() as uow:  # a transaction that changes a technician, decides, then rolls back
            store = uow.dispatch_store()
            await store.set_on_duty("tech-wang", False)
            await uow.append_audit(kind="technician_duty_changed", actor_id="admin", at=clock.now(),
                                   payload={"person_id": "tech-wang", "on_duty": False}, ticket_number=None)
            _, _, ranked = await live.rank(store, request, _defaults, clock.now(), limit=None)
            assert "tech-wang" not in [c.person_id for c in ranked]
            # no commit: rolled back
        # Another transaction reuses the rolled-back sequence number: only the hash tells.
        await rt.service.handle(SetDuty(False, "tech-xu"), await person(rt, "admin"))
        profiles = await _profiles(rt, live)
        assert live.rebuilds == built + 1  # the event at our mark is not the one we applied: rebuilt
        assert profiles["tech-wang"].on_duty and not profiles["tech-xu"].on_duty
        assert profiles == await _rebuilt(rt)


async def test_jobs_accepted_in_the_last_three_days_decay_without_any_event(database_url: str,
                                                                            tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, clock):
        live = live_index(rt.service)
        live.full_refresh_after = timedelta(days=30)  # no safety-net rebuild: the decay must do it alone
        number, _ = await report(client, "cust-d", "中控黑屏")
        tech, card = await the_offer(client, number)
        await PlaygroundUser(client, tech).press(card["id"], "accept")
        # After acceptance only staff may cancel (the customer is told to call the store).
        await rt.service.handle(Transition(number, "cancel"), await person(rt, "sup-li"))
        assert (await _profiles(rt, live))[tech].accepted_last_3_days == 1
        clock.advance(timedelta(days=3) - timedelta(seconds=1))
        assert (await _profiles(rt, live))[tech].accepted_last_3_days == 1
        clock.advance(timedelta(seconds=1))
        profiles = await _profiles(rt, live)
        assert profiles[tech].accepted_last_3_days == 0
        assert live.rebuilds == 1
        assert profiles == await _rebuilt(rt)


async def test_a_position_stamped_before_the_last_poll_but_committed_after_it_is_seen(
        database_url: str, tmp_path: Path) -> None:
    """Positions carry no event: they are polled by time. A transaction stamps the position with its own
    start time and may commit after another, later-stamped one was polled (a lock wait, PostgreSQL's
    concurrent workers): the poll looks a little behind its mark, or that position was missed until the
    hourly rebuild."""
    async with clocked(database_url, tmp_path) as (client, rt, clock):
        live = live_index(rt.service)
        await report(client, "cust-late-pos", "中控黑屏")  # the index is built
        async with rt.uow() as uow:
            assert await uow.update_technician_position("tech-liu", 31.2040, 121.5908, clock.now())
            await uow.commit()
        assert (await _profiles(rt, live))["tech-liu"].last_position is not None  # polled up to now
        async with rt.uow() as uow:  # began a second earlier, committed only now
            assert await uow.update_technician_position("tech-xu", 31.1700, 121.3900,
                                                         clock.now() - timedelta(seconds=1))
            await uow.commit()
        profiles = await _profiles(rt, live)
        assert profiles["tech-xu"].last_position is not None
        assert profiles == await _rebuilt(rt)
