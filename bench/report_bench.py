"""报表 and the dashboards at a million tickets (issues 22, 24): the maintained aggregates' speed, their
backfill, and intake while a 30-day report is computed again and again.

    python bench/report_bench.py --db /work/bench1m/d2-aggregates.db [--backfill] [--repeat 5]
                                 [--raw] [--intake 10] [--audit-key KEY]

The database is a prefilled SQLite file (bench/prefill_db.py; the shared 1 M one is described in
/tmp/helpers/bench1m.txt) that this script MAY CHANGE: give it a copy.

1. `--backfill`: the aggregates' first fold (what the runtime's background job does on its first
   start), timed: steps, seconds, tickets/s.
2. 报表 7天 / 30天 from the aggregates (the chat command's job, in the report worker process as the
   service runs it), `--repeat` times each: median and max ms. `--raw`: once each from the tickets too
   (today's path before the aggregates: minutes at 1 M).
3. The dashboards' 30-day figures (the page's job): unfiltered, one store, one category, one technician.
4. `--intake SECONDS`: `ticketbot serve` on the file; playground intake (bench/intake.py's load: unique
   reports, 16 connections) for SECONDS alone, then for SECONDS while a supervisor sends `报表 30天` in a
   loop; tickets/s, p99 of acceptance, and the 报表 round trips. Target: ≥ 90 % of the throughput.

The machine is shared: figures vary with what else runs; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ZONE_NAME = "Asia/Shanghai"


def shim(engine: Any, zone: ZoneInfo) -> Any:
    """What ReportAggregator reads of a runtime (the engine, sessions, clock, zone)."""
    from core.clock import SystemClock
    from storage.database import session_factory

    return SimpleNamespace(engine=engine, sessions=session_factory(engine), clock=SystemClock(),
                           service=SimpleNamespace(config=SimpleNamespace(timezone=zone)))


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


async def backfill(db: Path) -> None:
    from bot.jobs.report_aggregates import ReportAggregator
    from storage.database import create_engine

    engine = create_engine(f"sqlite:///{db}")
    try:
        aggregator = ReportAggregator(shim(engine, ZoneInfo(ZONE_NAME)))
        began = time.perf_counter()
        last_print = began
        while True:
            plan = await aggregator.step()
            if time.perf_counter() - last_print > 30:
                last_print = time.perf_counter()
                state = plan.new_state
                print(f"  … {aggregator.steps} steps, next id {state.get('backfill_next_id')}, "
                      f"{last_print - began:.0f} s (load {load()})", flush=True)
            if plan.caught_up and plan.state is not None and not plan.reset:
                break
        took = time.perf_counter() - began
        from sqlalchemy import func, select

        from storage.report_aggregates import FACTS
        from storage.report_store import async_engine

        reports = async_engine(db)  # the report tables' own file beside the database
        async with reports.connect() as conn:
            facts = (await conn.execute(select(func.count()).select_from(FACTS))).scalar_one()
        await reports.dispose()
        print(f"backfill: {facts:,} tickets folded in {took:.0f} s ({facts / took:,.0f} tickets/s, "
              f"{aggregator.steps} steps; load {load()})")
    finally:
        await engine.dispose()


async def timings(db: Path, repeat: int, raw: bool) -> None:
    import bot.chat.lifecycle  # noqa: F401  (the first-time-fix section)
    from bot.chat.report_reads import ReportReads
    from bot.chat.reports import _SECTIONS, parse_period, raw_report_job, report_job
    from storage.database import create_engine
    from storage.report_aggregates import Filters
    from storage.report_dashboard import dashboard_job

    zone = ZoneInfo(ZONE_NAME)
    engine = create_engine(f"sqlite:///{db}")
    reads = ReportReads(engine)
    try:
        now = datetime.now(UTC)
        await reads.run(report_job, *parse_period(["今天"], now, zone)[:1], now, zone, None, [])  # worker warm
        for words in (["7天"], ["30天"]):
            period, state = parse_period(words, now, zone)
            times = []
            text = ""
            for _ in range(repeat):
                began = time.perf_counter()
                text = await reads.run(report_job, period, now, zone, state, list(_SECTIONS))
                times.append((time.perf_counter() - began) * 1000)
            line = (f"报表 {words[0]:>4} from the aggregates: median {statistics.median(times):6.0f} ms, "
                    f"max {max(times):6.0f} ms ({repeat} runs; load {load()})")
            if raw:
                began = time.perf_counter()
                slow = await reads.run(raw_report_job, period, now, zone, state, list(_SECTIONS))
                line += f"; from the tickets {time.perf_counter() - began:.1f} s, same text: {slow == text}"
            print(line, flush=True)
        today = now.astimezone(zone).date()
        first = today - timedelta(days=29)
        for label, filters in (("all stores", Filters()), ("one store", Filters(store_ids=frozenset({"store-003"}))),
                               ("one category", Filters(category="空调")),
                               ("one technician", Filters(technician="tech-0007"))):
            times = []
            for _ in range(repeat):
                began = time.perf_counter()
                figures = await reads.run(dashboard_job, first, today, now, ZONE_NAME, filters)
                times.append((time.perf_counter() - began) * 1000)
            print(f"dashboard 30 days, {label:<14}: median {statistics.median(times):6.0f} ms, max {max(times):6.0f} ms"
                  f" (reported {figures.totals.get('reported', 0):,}; ready {figures.ready}; load {load()})",
                  flush=True)
    finally:
        await engine.dispose()


async def intake(db: Path, seconds: float, audit_key: str) -> None:
    import aiohttp

    from bench.intake import Load, free_port, http_sender, playground_report, run_load, wait_ready

    port = free_port()
    workdir = db.parent / f"report-bench-{secrets.token_hex(3)}"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "PROCESS_INBOX")}
    env.update(DATABASE_URL=f"sqlite:///{db}", DATA_DIR=str(workdir), PLAYGROUND="on", AUDIT_KEY=audit_key,
               LOAD_DEMO="off", PYTHONPATH=str(ROOT))
    with open(workdir / "serve.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)], cwd=workdir,
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", timeout_s=300, process=process)
        url = f"http://127.0.0.1:{port}/playground/api/messages"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            plain = http_sender(session, url)
            latencies: list[float] = []

            async def send(report: Any) -> bool:
                began = time.perf_counter()
                ok = bool(await plain(report))
                latencies.append(time.perf_counter() - began)
                return ok
            warm = Load()
            await run_load(send, playground_report, f"rb-warm-{secrets.token_hex(2)}-", duration=30, connections=4,
                           rate=0, load=warm, count=200)
            results = {}
            for label, with_report in (("alone", False), ("with 报表 30天 in a loop", True),
                                       ("alone again", False)):
                reports: list[float] = []
                stop = asyncio.Event()

                async def report_loop(stop: asyncio.Event = stop, reports: list[float] = reports) -> None:
                    while not stop.is_set():
                        began = time.perf_counter()
                        async with session.post(url, json={"user": "sup-000", "text": "报表 30天"}) as resp:
                            body = await resp.read()
                        if resp.status != 200 or "工单报表".encode() not in body:
                            raise RuntimeError(f"报表 answered {resp.status}: {body[:300]!r}")
                        reports.append((time.perf_counter() - began) * 1000)

                looping = asyncio.create_task(report_loop()) if with_report else None
                run = Load()
                latencies.clear()
                await run_load(send, playground_report, f"rb-{secrets.token_hex(3)}-", duration=seconds,
                               connections=16, rate=0, load=run)
                stop.set()
                if looping is not None:
                    await looping
                rate = len(run.accepted) / seconds
                waits = sorted(latencies)
                p99 = f", p99 {waits[int(len(waits) * 0.99)] * 1000:.0f} ms" if waits else ""
                results[label] = rate
                extra = (f"; 报表 30天 round trips: {len(reports)}, median {statistics.median(reports):.0f} ms, "
                         f"max {max(reports):.0f} ms") if reports else ""
                print(f"intake {label:<26}: {rate:6.0f} tickets/s{p99}{extra} (load {load()})", flush=True)
            base = (results["alone"] + results["alone again"]) / 2
            print(f"intake with the report loop: {results['with 报表 30天 in a loop'] / base * 100:.0f} % of alone "
                  "(target ≥ 90 %)")
    finally:
        process.terminate()
        process.wait(60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, required=True, help="a prefilled SQLite file this script may change")
    parser.add_argument("--backfill", action="store_true", help="fold the aggregates first (timed)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--raw", action="store_true", help="also compute 报表 from the tickets once (slow)")
    parser.add_argument("--intake", type=float, default=0.0, help="seconds of intake load alone / with 报表 30天")
    parser.add_argument("--audit-key", default=os.environ.get("AUDIT_KEY", ""))
    parser.add_argument("--skip-timings", action="store_true")
    args = parser.parse_args()
    print(f"{args.db} ({args.db.stat().st_size / 2**30:.1f} GiB), {os.cpu_count()} CPUs, load {load()}")
    from storage.migrate import upgrade

    upgrade(f"sqlite:///{args.db}")  # a file prefilled before the newest migration: as the service's start would
    if args.backfill:
        asyncio.run(backfill(args.db))
    if not args.skip_timings:
        asyncio.run(timings(args.db, args.repeat, args.raw))
    if args.intake:
        if not args.audit_key:
            parser.error("--intake needs --audit-key (the database's AUDIT_KEY)")
        asyncio.run(intake(args.db, args.intake, args.audit_key))
    from bot.chat.report_reads import shutdown_worker_process

    shutdown_worker_process()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
