"""Durable timers at scale: firing lateness and throughput for both engines, and worker RSS.

    python bench/timers_bench.py [--pending 100000] [--due 3000] [--window 30] [--burst 5000]
                                 [--engines inproc,arq] [--workers 2]
                                 [--pg postgresql://postgres@127.0.0.1:5432/test] [--redis redis://127.0.0.1:6379/13]

For each engine a fresh database gets `--pending` timer rows: `--due` of them fall due spread over
`--window` seconds a few seconds from now, the rest a day later (they sit in the index, and for
arq in Redis, the whole time). Lateness = fired_at − due_at per timer (fired_at is the claim time).
Then `--burst` more rows are made overdue at once: throughput = timers fired per second.

  * inproc: the embedded default (SQLite file, bot.jobs.timer_loop.InProcessTimerEngine as `serve` runs it,
    in this process); RSS is this process's.
  * arq: PostgreSQL + Redis, `--workers` `ticketbot worker` subprocesses; every pending row has its
    deferred job in Redis (enqueued in bulk, as the post-commit alarm would one by one); RSS per worker.
Target (issue 5): p99 lateness ≤ 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from pg_scratch import drop_postgres, fresh_postgres  # bench/, on sys.path when run as a script
from sqlalchemy import func, insert, select
from sqlmodel import col

from bot.jobs.arq_timers import FIRE_FUNCTION, QUEUE_NAME, timer_job_id
from bot.jobs.timer_loop import InProcessTimerEngine
from bot.rules.rulebook import RuleBook
from core.classification import FaultClassifierPort
from core.clock import SystemClock
from core.service import ServiceConfig, TicketService
from storage.database import create_engine, session_factory
from storage.migrate import upgrade
from storage.tables import TimerRowTable
from storage.timer_store import SqlTimerStore
from storage.unit_of_work import SqlUnitOfWork

KIND = "bench.noop"  # no handler: a fire is the claim, the audit event and the commit
LEAD_S = 3.0  # the due window starts this long after the due rows are in (and, for arq, enqueued)
POLL_S = 0.25


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.5) - 1))]


def make_rows(prefix: str, due: list[datetime]) -> list[dict[str, object]]:
    return [{"kind": KIND, "ticket_key": f"{prefix}-{n}", "due_at": at, "generation": 1, "state": "pending",
             "payload": {}} for n, at in enumerate(due)]


async def insert_rows(sessions: Any, prefix: str, due: list[datetime]) -> list[tuple[int, int, datetime]]:
    """Bulk insert; returns (id, generation, due_at) of the new rows."""
    rows = make_rows(prefix, due)
    async with sessions() as session, session.begin():
        for start in range(0, len(rows), 5000):
            await session.execute(insert(TimerRowTable), rows[start:start + 5000])
    async with sessions() as session:
        found = await session.execute(select(col(TimerRowTable.id), col(TimerRowTable.generation),
                                             col(TimerRowTable.due_at))
                                      .where(col(TimerRowTable.ticket_key).like(f"{prefix}-%")))
        return [(int(i), int(g), d) for i, g, d in found.all()]


def window(count: int, seconds: float) -> list[datetime]:
    start = datetime.now(UTC) + timedelta(seconds=LEAD_S)
    return [start + timedelta(seconds=seconds * n / max(1, count - 1)) for n in range(count)]


async def fired_count(sessions: Any) -> int:
    async with sessions() as session:  # the (state, due_at) index answers this
        return int((await session.execute(select(func.count()).select_from(TimerRowTable).where(
            col(TimerRowTable.state) == "fired"))).scalar_one())


async def wait_fired(sessions: Any, expected: int, timeout_s: float) -> float:
    """Seconds until `expected` timers in all are fired (polled every POLL_S)."""
    started = time.perf_counter()
    done = 0
    while time.perf_counter() - started < timeout_s:
        done = await fired_count(sessions)
        if done >= expected:
            return time.perf_counter() - started
        await asyncio.sleep(POLL_S)
    raise TimeoutError(f"only {done}/{expected} timers fired in {timeout_s} s")


async def lateness(sessions: Any, prefix: str) -> list[float]:
    async with sessions() as session:
        rows = (await session.execute(select(col(TimerRowTable.due_at), col(TimerRowTable.fired_at)).where(
            col(TimerRowTable.ticket_key).like(f"{prefix}-%"), col(TimerRowTable.state) == "fired"))).all()
    rows.sort()
    first = rows[0][0]
    worst: dict[int, float] = {}
    for due, fired in rows:
        bucket = int((due - first).total_seconds() // 10)
        worst[bucket] = max(worst.get(bucket, 0.0), (fired - due).total_seconds())
    print("  worst lateness per 10 s of the window (ms): "
          + " ".join(f"{worst[b] * 1000:.0f}" for b in sorted(worst)))
    return [(fired - due).total_seconds() for due, fired in rows]


def report(name: str, late: list[float], burst: int, burst_s: float, cpu_ms: float, rss: dict[str, float]) -> None:
    print(f"\n== {name}")
    print(f"  lateness over {len(late)} due timers: p50 {pct(late, 0.5) * 1000:.0f} ms, "
          f"p99 {pct(late, 0.99) * 1000:.0f} ms, max {max(late) * 1000:.0f} ms  "
          f"→ target p99 ≤ 1000 ms: {'OK' if pct(late, 0.99) <= 1.0 else 'MISSED'}")
    print(f"  throughput: {burst} overdue timers fired in {burst_s:.2f} s = {burst / burst_s:.0f} timers/s "
          f"(engine CPU {cpu_ms:.1f} ms per fire, database server not counted)")
    for who, mb in rss.items():
        print(f"  RSS {who}: {mb:.0f} MB")


# --- engines ---


async def bench_inproc(args: argparse.Namespace) -> None:
    path = Path(tempfile.mkdtemp(prefix="timers-bench-")) / "bench.db"
    url = f"sqlite:///{path}"
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    t0 = time.perf_counter()
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    await insert_rows(sessions, "L", [tomorrow + timedelta(milliseconds=n) for n in range(args.pending - args.due)])
    classifier = cast(FaultClassifierPort, RuleBook())
    service = TicketService(lambda: SqlUnitOfWork(sessions), SystemClock(), classifier, ServiceConfig())
    loop_engine = InProcessTimerEngine(SqlTimerStore(sessions), service, max_sleep_s=0.5)  # as bot.runtime
    task = asyncio.create_task(loop_engine.run_forever())
    try:
        await insert_rows(sessions, "D", window(args.due, args.window))
        print(f"inproc: {args.pending} pending timers in SQLite ({path}) in {time.perf_counter() - t0:.1f} s")
        await wait_fired(sessions, args.due, LEAD_S + args.window + 300)
        late = await lateness(sessions, "D")
        cpu_before = time.process_time()
        started = time.perf_counter()
        await insert_rows(sessions, "B", [datetime.now(UTC) - timedelta(seconds=1)] * args.burst)
        await wait_fired(sessions, args.due + args.burst, 900)
        burst_s = time.perf_counter() - started
        cpu_ms = (time.process_time() - cpu_before) / args.burst * 1000
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await engine.dispose()
    report("in-process engine (SQLite, as `serve` without REDIS_URL)", late, args.burst, burst_s, cpu_ms,
           {"this process (engine + bench)": rss_mb(os.getpid())})


async def enqueue_bulk(redis_url: str, timers: list[tuple[int, int, datetime]]) -> None:
    """The same jobs ArqTimerAlarm enqueues one by one after each commit, pipelined for setup speed."""
    from arq.connections import ArqRedis
    from arq.jobs import serialize_job

    redis = ArqRedis.from_url(redis_url)
    try:
        now_ms = int(time.time() * 1000)
        for start in range(0, len(timers), 2000):
            async with redis.pipeline(transaction=False) as pipe:
                for timer_id, generation, due in timers[start:start + 2000]:
                    job_id = timer_job_id(timer_id, generation)
                    score = int(due.timestamp() * 1000) + 1
                    pipe.psetex(f"arq:job:{job_id}", max(1, score - now_ms) + 86_400_000,
                                serialize_job(FIRE_FUNCTION, (timer_id, generation), {}, None, now_ms))
                    pipe.zadd(QUEUE_NAME, {job_id: score})
                await pipe.execute()
    finally:
        await redis.aclose()


async def wait_ready(redis_url: str, timeout_s: float = 120) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    try:
        started = time.perf_counter()
        while not await redis.exists(QUEUE_NAME + ":health-check"):
            if time.perf_counter() - started > timeout_s:
                raise TimeoutError("the workers did not start")
            await asyncio.sleep(0.2)
    finally:
        await redis.aclose()
    await asyncio.sleep(2)  # the health key is shared: give the other workers a moment too


async def bench_arq(args: argparse.Namespace) -> None:
    from redis.asyncio import Redis

    url = await fresh_postgres(args.pg, "timers_bench")
    flush = Redis.from_url(args.redis)
    await flush.flushdb()
    await flush.aclose()
    workers: list[subprocess.Popen[bytes]] = []
    engine = None
    try:
        await asyncio.to_thread(upgrade, url)
        engine = create_engine(url)
        sessions = session_factory(engine)
        t0 = time.perf_counter()
        tomorrow = datetime.now(UTC) + timedelta(days=1)
        later = await insert_rows(sessions, "L", [tomorrow + timedelta(milliseconds=n)
                                                  for n in range(args.pending - args.due)])
        await enqueue_bulk(args.redis, later)
        env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": args.redis, "LOAD_DEMO": "off"}
        for _ in range(args.workers):
            workers.append(subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], env=env,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        await wait_ready(args.redis)
        await enqueue_bulk(args.redis, await insert_rows(sessions, "D", window(args.due, args.window)))
        print(f"arq: {args.pending} pending timers in PostgreSQL and Redis in {time.perf_counter() - t0:.1f} s")
        await wait_fired(sessions, args.due, LEAD_S + args.window + 300)
        late = await lateness(sessions, "D")
        cpu_before = sum(cpu_s(w.pid) for w in workers)
        started = time.perf_counter()
        burst = await insert_rows(sessions, "B", [datetime.now(UTC) - timedelta(seconds=1)] * args.burst)
        await enqueue_bulk(args.redis, burst)  # as the post-commit alarm (or the sweep) would
        await wait_fired(sessions, args.due + args.burst, 900)
        burst_s = time.perf_counter() - started
        cpu_ms = (sum(cpu_s(w.pid) for w in workers) - cpu_before) / args.burst * 1000
        rss = {f"worker {n + 1}": rss_mb(w.pid) for n, w in enumerate(workers)}
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(timeout=10)
            except subprocess.TimeoutExpired:
                w.kill()
        if engine is not None:
            await engine.dispose()
        await drop_postgres(args.pg, url)
    report(f"arq engine ({args.workers} `ticketbot worker` processes, PostgreSQL + Redis)", late, args.burst, burst_s,
           cpu_ms, rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=2000, help="timers due during the window")
    parser.add_argument("--window", type=float, default=100.0, help="seconds over which they fall due")
    parser.add_argument("--burst", type=int, default=3000, help="timers made overdue at once (throughput)")
    parser.add_argument("--engines", default="inproc,arq")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pg", default=os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    args = parser.parse_args()
    print(f"{args.pending} pending timers; {args.due} due over {args.window:.0f} s; burst of {args.burst}")
    for name in args.engines.split(","):
        asyncio.run({"inproc": bench_inproc, "arq": bench_arq}[name.strip()](args))


if __name__ == "__main__":
    main()
