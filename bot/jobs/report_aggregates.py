"""The background fold of the report aggregates (issues 22, 24; storage/report_aggregates.py).

Started by the runtime (`Runtime.start`, with the other background loops). Every few seconds: plan a
step off the event loop, then write it in one short transaction guarded by a compare-and-set of the
fold state. Both happen in the report worker process (ReportReads.run_writing) and the plan is not sent
back: on PostgreSQL over asyncpg (planned in a thread of the service, it decoded every row it read on the
loop and took the interpreter lock from it); on a SQLite file into the report tables' own file
(storage/report_store.py: the service's file has one write lock, held back to back by its group
commits under load; the loop's write of a step was ~10 % of a fault report's instructions). The
first run backfills every ticket, BACKFILL_BATCH at a time, yielding to the loop between steps; until
it is done 报表 computes from the tickets as before. Nothing here runs in the ticket's transaction:
intake writes what it wrote.

Several processes (web + workers) may all run it: a step made from a fold state that another process
has moved on is not written (and planned again from the new state).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.chat.report_reads import Execute, report_reads
from storage.report_aggregates import FoldPlan, apply_fold, plan_fold, write_fold

log = logging.getLogger(__name__)
EVERY_S = 3.0


def plan_step(execute: Execute, zone_name: str, now: datetime) -> FoldPlan:
    """The read job (module level: pickled by reference into the worker process)."""
    return plan_fold(execute, ZoneInfo(zone_name), zone_name, now)


def fold_step(execute: Execute, write: Callable[..., Any], zone_name: str, now: datetime) -> tuple[FoldPlan, bool]:
    """Plan and write one step in the worker process (ReportReads.run_writing): the plan is
    read, then written in a short transaction. Only the plan's state comes back (not its facts): the
    service has nothing to do with them."""
    plan = plan_step(execute, zone_name, now)
    written = bool(write(write_fold, plan))
    return replace(plan, old={}, new={}), written


class ReportAggregator:
    def __init__(self, runtime: Any, every_s: float = EVERY_S, *, in_worker: bool = True) -> None:
        """`in_worker=False` (PostgreSQL): plan in a thread and write on this loop — so that
        several folders of one test process contend as several processes do (one process's worker runs
        its jobs one at a time)."""
        self.runtime = runtime
        self.every_s = every_s
        self.in_worker = in_worker
        self.steps = 0
        self.written = 0

    @property
    def zone_name(self) -> str:
        return str(self.runtime.service.config.timezone.key)

    async def step(self) -> FoldPlan:
        """Plan and write one step; the plan says whether there is more to fold."""
        reads, now = report_reads(self.runtime), self.runtime.clock.now()
        # A SQLite file's report tables are in a file the service's connection does not see: always the worker.
        if self.in_worker or reads.path is not None:
            plan, written = await reads.run_writing(fold_step, self.zone_name, now)
        else:  # in_worker=False on PostgreSQL: planned in a thread, written here
            plan = await reads.run(plan_step, self.zone_name, now)
            async with self.runtime.sessions.transaction() as conn:
                written = await apply_fold(conn, plan)
        self.steps += 1
        self.written += int(written)
        if not written:
            plan.new_state["more"] = True  # another process moved on: plan again from its state
        return plan

    async def catch_up(self, max_steps: int = 1_000_000) -> int:
        """Fold until nothing is left (tests, benchmarks, the CLI); the steps taken."""
        for taken in range(1, max_steps + 1):
            plan = await self.step()
            if plan.caught_up and plan.state is not None and not plan.reset:
                return taken
        return max_steps

    async def run_forever(self) -> None:
        began = time.monotonic()
        backfilling = False
        while True:
            try:
                plan = await self.step()
                if plan.new_state.get("backfill_next_id") is not None:
                    backfilling = True
                elif backfilling:
                    backfilling = False
                    log.info("report aggregates backfilled in %.0f s", time.monotonic() - began)
                more = not plan.caught_up or plan.state is None or plan.reset
                await asyncio.sleep(0 if more else self.every_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("report aggregates: fold failed")
                await asyncio.sleep(self.every_s)


def start_report_aggregator(runtime: Any) -> ReportAggregator:
    """The aggregator as the runtime starts it (`runtime._spawn(start_report_aggregator(self).run_forever())`)."""
    aggregator = ReportAggregator(runtime)
    runtime.report_aggregator = aggregator
    return aggregator
