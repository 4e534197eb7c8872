"""The worker processes of heavy reads (报表 and the report fold, the dashboards, exports): spawned, and
at a lower CPU priority than the service.

Why lower: on a small machine the service process (intake, callbacks, timers) and a report worker want
the same cores. A supervisor's 30-day report or a large export may take a few hundred milliseconds more
when the machine is busy; a customer's fault report should not wait behind it (issue 24: intake while a
30-day 报表 loops keeps ≥ 90 % of its rate). Niceness only weighs contention: an idle machine gives the
worker every cycle it wants, so a report on a quiet service is as fast as before.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

# Linux CFS weights: nice 10 is ~1/10 of nice 0's share while both run. Added to the service's own
# niceness (a service started with `nice` keeps its workers below it); the kernel caps it at 19.
BACKGROUND_NICENESS = 10


def lower_priority() -> None:
    """The workers' initializer (module-level: the spawned process imports it). Raising one's own
    niceness needs no privilege."""
    os.nice(BACKGROUND_NICENESS)


def background_pool(max_workers: int) -> ProcessPoolExecutor:
    """A pool of spawned worker processes (not forked from a process with an event loop and threads)
    at the background priority."""
    return ProcessPoolExecutor(max_workers=max_workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=lower_priority)
