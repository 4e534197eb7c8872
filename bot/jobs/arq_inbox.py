"""PROCESS_INBOX=worker: web processes accept messages, `ticketbot worker` processes them.

Right after an inbox row commits, the web process enqueues one arq job `process_inbox(row_id)`
with the deterministic id `inbox:{row_id}` (a second enqueue of the same row is a no-op) on the
timers' queue, and answers the platform; the work (classification, the ticket, dispatch, SLA
timers) happens in a worker. The row stays the truth: its claim lets exactly one worker process
it, and a job lost on the way (Redis down, a crash between commit and enqueue) is recovered by
the workers' inbox sweep, like any row left pending.
"""

from __future__ import annotations

import asyncio
import logging

from arq.connections import ArqRedis

from bot.jobs.arq_timers import QUEUE_NAME, JobSpec, enqueue_jobs

log = logging.getLogger(__name__)

INBOX_FUNCTION = "process_inbox"


def inbox_job_id(row_id: int) -> str:
    return f"inbox:{row_id}"


class ArqInboxHandoff:
    """SqlInbox.on_accepted for web processes: hand each new row to the workers.

    Rows accepted in the same turn of the event loop (a burst of callbacks) go to Redis together:
    one round trip for all of them (bot.jobs.arq_timers.enqueue_jobs), not three per row."""

    def __init__(self, redis: ArqRedis, queue_name: str = QUEUE_NAME) -> None:
        self._redis = redis
        self._queue_name = queue_name
        self._rows: list[int] = []
        self._pending: set[asyncio.Task[None]] = set()

    def __call__(self, row_id: int, sender: str | None = None) -> None:
        # (The sender is not used: arq workers take jobs in any order. docs/architecture.md, "Inbox".)
        # Called synchronously right after the commit: the answer to the platform does not wait.
        self._rows.append(row_id)
        if len(self._rows) == 1:  # the first of this turn schedules the hand-off of all of them
            task = asyncio.get_running_loop().create_task(self._enqueue())
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _enqueue(self) -> None:
        rows, self._rows = self._rows, []
        try:
            await enqueue_jobs(self._redis, self._queue_name,
                               [JobSpec(INBOX_FUNCTION, (row_id,), inbox_job_id(row_id)) for row_id in rows])
        except Exception:  # the rows are committed: a worker's sweep processes them within seconds
            log.warning("could not hand inbox rows %s to the workers; their sweep will pick them up", rows,
                        exc_info=True)

    async def drain(self) -> None:
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
