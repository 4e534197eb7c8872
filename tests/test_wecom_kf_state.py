"""The 微信客服 state in the database (storage/kf_store.py) under concurrency, on SQLite and PostgreSQL:
the budget is booked atomically (never a 6th, whatever the number of processes), a window opens
only forward in time, held notices are taken once, cursors move only over the version read."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from storage.database import Sessions
from storage.kf_store import SqlKfState

T0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


async def test_concurrent_bookings_never_exceed_five(db_sessions: Sessions) -> None:
    states = [SqlKfState(db_sessions) for _ in range(3)]  # three "processes" on one database
    await states[0].customers_spoke({"wk:a": (T0, "m1")})
    results = await asyncio.gather(*(states[n % 3].take("wk:a", T0 + timedelta(minutes=1)) for n in range(20)))
    granted = sorted(r for r in results if r is not None)
    assert granted == [0, 1, 2, 3, 4]  # five bookings, each told what was left
    assert await states[1].take("wk:a", T0 + timedelta(minutes=2)) is None


async def test_a_window_opens_only_with_a_newer_message_and_closes_after_48_hours(db_sessions: Sessions) -> None:
    state = SqlKfState(db_sessions)
    assert await state.take("wk:b", T0) is None  # never wrote: nothing may be sent
    await state.customers_spoke({"wk:b": (T0, "m1")})
    for _ in range(5):
        assert await state.take("wk:b", T0) is not None
    await state.customers_spoke({"wk:b": (T0 - timedelta(hours=1), "m0")})  # an old message pulled late
    await state.customers_spoke({"wk:b": (T0, "m1")})  # the same message pulled again
    assert await state.take("wk:b", T0) is None  # neither opens a new budget
    await state.customers_spoke({"wk:b": (T0, "m2")})  # a new message within the same second does
    assert await state.take("wk:b", T0) == 4
    await state.customers_spoke({"wk:b": (T0 + timedelta(hours=1), "m3")})
    assert await state.take("wk:b", T0 + timedelta(hours=1)) == 4
    assert await state.take("wk:b", T0 + timedelta(hours=49, minutes=1)) is None  # 48 h after their message
    await state.spend("wk:b")
    assert await state.remaining("wk:b", T0 + timedelta(hours=2)) == 0


async def test_held_notices_are_taken_once_and_reported_with_the_next_message(db_sessions: Sessions) -> None:
    state = SqlKfState(db_sessions)
    await state.hold("wk:c", "通知一", "GD-20261206-0001", T0)
    await state.hold("wk:c", "通知二", None, T0)
    assert await state.customers_spoke({"wk:c": (T0, "m1"), "wk:d": (T0, "m2")}) == {"wk:c"}
    first, second = await asyncio.gather(state.take_held("wk:c"), state.take_held("wk:c"))
    taken = first + second
    assert [text for _id, text, _number in taken] == ["通知一", "通知二"] and (not first or not second)
    assert [number for _id, _text, number in taken] == ["GD-20261206-0001", None]
    assert await state.take_held("wk:c") == []


async def test_a_msgid_answered_outside_the_inbox_is_first_only_once(db_sessions: Sessions) -> None:
    state = SqlKfState(db_sessions)
    results = await asyncio.gather(*(state.first_time("m1", T0) for _ in range(4)))
    assert sorted(results) == [False, False, False, True]
