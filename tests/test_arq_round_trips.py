"""Round trips to Redis (issue 24): a commit's timer alarms, with the withdrawal of the generations
they supersede, go to Redis in one pipeline; a burst of inbox hand-offs in one too. Counted on the
client's real connection to a real Redis server (every packed write is one round trip), and the jobs
checked as an arq worker reads them."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from arq.connections import ArqRedis
from arq.constants import job_key_prefix
from arq.jobs import deserialize_job
from redis.asyncio import Connection, ConnectionPool

from bot.jobs.arq_inbox import INBOX_FUNCTION, ArqInboxHandoff, inbox_job_id
from bot.jobs.arq_timers import FIRE_FUNCTION, ArqTimerAlarm, timer_job_id
from core.repository import TimerRow


class CountingConnection(Connection):
    """redis-py's own connection; counts the writes to the socket (one per command or pipeline)."""

    writes = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.writes += 1
        await super().send_packed_command(command, check_health)


@pytest.fixture
async def counted(redis_url: str) -> AsyncIterator[ArqRedis]:
    pool = ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    redis = ArqRedis(connection_pool=pool)
    await redis.ping()  # connect (and its handshake) before counting
    yield redis
    await redis.aclose()
    await pool.disconnect()


def timer(timer_id: int, generation: int, due_at: datetime, state: str = "pending") -> TimerRow:
    return TimerRow(id=timer_id, kind="sla.test", ticket_number="T-1", due_at=due_at, generation=generation,
                    state=state, payload={})


async def test_a_commits_timers_and_withdrawals_are_one_round_trip(counted: ArqRedis) -> None:
    queue = f"test:timers:{secrets.token_hex(4)}"
    alarm = ArqTimerAlarm(counted, queue)
    now = datetime.now(UTC)
    base = 10_000_000 + secrets.randbelow(10_000_000)
    # Generation 1 of the rescheduled timer is queued from an earlier commit.
    await alarm.enqueue([timer(base + 4, 1, now + timedelta(minutes=5))])
    assert await counted.zscore(queue, timer_job_id(base + 4, 1)) is not None

    # One commit: four SLA timers, a timer rescheduled twice in it (generations 2 and 3), a cancelled one.
    dues = [now + timedelta(minutes=m) for m in (1, 2, 3, 4)]
    rows = [timer(base + i, 1, due) for i, due in enumerate(dues)]
    rows += [timer(base + 4, 2, now + timedelta(minutes=6)), timer(base + 4, 3, now + timedelta(minutes=7)),
             timer(base + 5, 2, now, state="cancelled")]
    CountingConnection.writes = 0
    await alarm.enqueue(rows)
    assert CountingConnection.writes == 1

    # As arq's enqueue_job writes them: a deferred job per alarm, scored at due_at (+1 ms), read by arq.
    for i, due in enumerate(dues):
        job_id = timer_job_id(base + i, 1)
        score = await counted.zscore(queue, job_id)
        assert score is not None and 0 < score - due.timestamp() * 1000 <= 2
        record = await counted.get(job_key_prefix + job_id)
        assert record is not None
        job = deserialize_job(record)
        assert (job.function, job.args, job.kwargs, job.job_try) == (FIRE_FUNCTION, (base + i, 1), {}, None)
        ttl_ms = await counted.pttl(job_key_prefix + job_id)
        assert timedelta(days=1) < timedelta(milliseconds=ttl_ms) <= timedelta(days=1, minutes=i + 2)
    # Only the newest generation of the rescheduled timer stays queued; nothing for the cancelled one.
    assert await counted.zscore(queue, timer_job_id(base + 4, 3)) is not None
    for gone in (timer_job_id(base + 4, 1), timer_job_id(base + 4, 2), timer_job_id(base + 5, 2)):
        assert await counted.zscore(queue, gone) is None
        assert not await counted.exists(job_key_prefix + gone)

    # The same alarms again (a retried hand-off): one round trip, and nothing is rewritten.
    before = await counted.get(job_key_prefix + timer_job_id(base, 1))
    await asyncio.sleep(0.01)
    CountingConnection.writes = 0
    await alarm.enqueue([timer(base + i, 1, due + timedelta(hours=1)) for i, due in enumerate(dues)])
    assert CountingConnection.writes == 1
    assert await counted.get(job_key_prefix + timer_job_id(base, 1)) == before
    assert await counted.zscore(queue, timer_job_id(base, 1)) == pytest.approx(dues[0].timestamp() * 1000, abs=2)
    assert await alarm.enqueue_many([(base, 1, dues[0]), (base + 9, 1, dues[0])]) == 1  # only the new one
    await counted.delete(queue, *(job_key_prefix + timer_job_id(base + i, g) for i in range(10) for g in (1, 3)))


async def test_inbox_hand_offs_of_one_turn_are_one_round_trip(counted: ArqRedis) -> None:
    queue = f"test:inbox:{secrets.token_hex(4)}"
    handoff = ArqInboxHandoff(counted, queue)
    base = 10_000_000 + secrets.randbelow(10_000_000)
    CountingConnection.writes = 0
    for row_id in range(base, base + 8):  # eight callbacks committed in one turn of the loop
        handoff(row_id)
    await handoff.drain()
    assert CountingConnection.writes == 1
    queued = await counted.zrange(queue, 0, -1)
    assert sorted(queued) == sorted(inbox_job_id(r).encode() for r in range(base, base + 8))
    record = await counted.get(job_key_prefix + inbox_job_id(base))
    assert record is not None
    job = deserialize_job(record)
    assert (job.function, job.args) == (INBOX_FUNCTION, (base,))
    # A second hand-off of a row still queued is a no-op, as with arq's own enqueue_job.
    handoff(base)
    await handoff.drain()
    assert await counted.get(job_key_prefix + inbox_job_id(base)) == record
    await counted.delete(queue, *(job_key_prefix + inbox_job_id(r) for r in range(base, base + 8)))
