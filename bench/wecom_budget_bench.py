"""Cost of one booking in WeCom's per-recipient budget as the number of people messaged within the
hour grows (issue 24: above 10,000 the in-memory budget rebuilt its table on every send).

    python bench/wecom_budget_bench.py [--sends 20000]

Prints µs per `take()` with 100, 10,000, 20,000 and 50,000 recipients already booked within the
hour; flat is the target.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from adapters.wecom.budget import MemoryRecipientBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def per_take_us(recipients: int, sends: int) -> float:
    clock = Clock()
    budget = MemoryRecipientBudget(clock=clock)
    for i in range(recipients):  # booked within the hour, one ms apart
        await budget.take(f"warm{i}")
        clock.now += 0.001
    started = time.perf_counter()
    for i in range(sends):
        await budget.take(f"new{i % 5000}")  # a few messages each, as a busy service sends
        clock.now += 0.001
    return (time.perf_counter() - started) / sends * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sends", type=int, default=20_000)
    args = parser.parse_args()
    print(f"{'recipients in the hour':>24}  {'µs per take()':>14}")
    base = None
    for recipients in (100, 10_000, 20_000, 50_000):
        us = await per_take_us(recipients, args.sends)
        base = base or us
        print(f"{recipients:>24,}  {us:>14.2f}  ({us / base:.2f}× the 100-recipient cost)")


if __name__ == "__main__":
    asyncio.run(main())
