"""Tracking page speed (issue 21): `GET /t/{token}` server time with a million tickets in the database.

    python bench/tracking_bench.py --database /work/bench1m/ticketbot.db [--audit-key-file F]
                                   [--tickets 300] [--requests 3000] [--copy]

The database (bench/prefill_db.py builds one) is only read: the real app (build_app: its middlewares and
routes, the runtime's engine and service) serves it through aiohttp's test server, but the runtime is not
started (no timers, no outbox, no migrations: nothing writes), so a shared database is used in place;
--copy serves a copy in a temporary folder instead. A middleware times each request from the first
middleware until the response is rendered, compressed and written to the transport (server time, the figure of
the target); the client times the round trip too.

Tickets: a random sample across the whole table (closed ones with their ~13-event trails, and the open ones
when the database has them), each opened through its real token (runtime.tracking.url_for). The link
expiry is set far out so that old closed tickets still resolve (an expired link answers a 404 at once,
which would flatter the figure). Also timed: the 404 of a forged token, a photo thumbnail-less page's
fingerprint poll (what an open page's event stream costs every 2 s), and the page's bytes (gzip).

Target: p99 ≤ 20 ms server time. The machine may be shared: figures carry that caveat.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.runtime import Runtime
from bot.settings import Settings
from bot.web.app import build_app
from bot.web.customer.tracking_view import fingerprint

TARGET_P99_MS = 20.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def figures(name: str, values: list[float]) -> str:
    return (f"{name:<34} n={len(values):>5}  p50 {percentile(values, 50):6.2f} ms  p90 {percentile(values, 90):6.2f} ms"
            f"  p99 {percentile(values, 99):6.2f} ms  max {max(values):6.2f} ms")


def sample_numbers(path: Path, count: int, seed: int) -> tuple[list[str], int, int]:
    """`count` ticket numbers spread over the table (by rowid), open ones included; (numbers, total, open)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        low, high = db.execute("SELECT min(id), max(id) FROM tickets").fetchone()
        total = db.execute("SELECT count(*) FROM tickets").fetchone()[0]
        open_numbers = [r[0] for r in db.execute(
            "SELECT number FROM tickets WHERE status NOT IN ('closed', 'cancelled') LIMIT ?", (count // 4,))]
        rng = random.Random(seed)
        numbers: list[str] = list(open_numbers)
        while len(numbers) < count:
            row = db.execute("SELECT number FROM tickets WHERE id >= ? ORDER BY id LIMIT 1",
                             (rng.randint(low, high),)).fetchone()
            if row:
                numbers.append(row[0])
        open_total = db.execute(
            "SELECT count(*) FROM tickets WHERE status NOT IN ('closed', 'cancelled')").fetchone()[0]
    return numbers, total, open_total


async def run(args: argparse.Namespace) -> None:
    source = Path(args.database)
    folder = Path(tempfile.mkdtemp(prefix="tracking-bench-", dir=args.scratch))
    try:
        if not args.copy:
            db_path = source
        else:
            started = time.perf_counter()
            db_path = folder / "ticketbot.db"
            shutil.copy(source, db_path)
            for suffix in ("-wal", "-shm"):
                if Path(f"{source}{suffix}").exists():
                    shutil.copy(f"{source}{suffix}", f"{db_path}{suffix}")
            print(f"copied {source} ({source.stat().st_size / 1e9:.1f} GB) in {time.perf_counter() - started:.0f} s")
        numbers, total, open_total = sample_numbers(db_path, args.tickets, args.seed)
        audit_key = Path(args.audit_key_file).read_text().strip() if args.audit_key_file else os.environ.get(
            "AUDIT_KEY", "bench-" + "k" * 40)
        settings = Settings(_env_file=None, database_url=f"sqlite:///{db_path}",  # type: ignore[call-arg]
                            data_dir=folder / "data", playground="off", load_demo="off", audit_key=audit_key,
                            tracking_link_days_after_close=36500)
        runtime = Runtime(settings)
        app = build_app(settings, runtime=runtime, prepare=False)
        app.on_startup.clear()  # the runtime is not started: nothing runs that writes (see the docstring)
        server_ms: dict[str, list[float]] = {}

        @web.middleware
        async def timed(request: web.Request,
                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
            started = time.perf_counter()
            response = await handler(request)
            # Rendered, compressed and handed to the transport: what the server spends on the request
            # (aiohttp's own prepare/write_eof after this do nothing more for a finished response).
            await response.prepare(request)
            await response.write_eof()
            server_ms.setdefault(request.get("bench_kind", "page"), []).append(
                (time.perf_counter() - started) * 1000)
            return response

        app.middlewares.insert(0, timed)
        async with TestClient(TestServer(app)) as client:
            paths = []
            async with runtime.lookup_uow() as uow:
                for number in numbers:
                    ticket = await uow.get_ticket(number)
                    assert ticket is not None
                    paths.append(urlsplit(runtime.tracking.url_for(ticket)).path)
            print(f"database: {total:,} tickets ({open_total:,} open); sample of {len(paths)} tickets (a quarter of "
                  f"them open), {args.requests} timed requests after {args.warmup} warm-up ones")
            rng = random.Random(args.seed)
            round_trip: list[float] = []
            sizes: list[tuple[int, int]] = []
            for i in range(args.warmup + args.requests):
                path = rng.choice(paths)
                started = time.perf_counter()
                resp = await client.get(path, headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
                body = await resp.read()
                elapsed = (time.perf_counter() - started) * 1000
                assert resp.status == 200, (resp.status, path)
                if i == args.warmup - 1:
                    server_ms.clear()
                if i >= args.warmup:
                    round_trip.append(elapsed)
                    if len(sizes) < 200:
                        sizes.append((len(body), len(gzip.decompress(body))
                                      if resp.headers.get("Content-Encoding") == "gzip" else len(body)))
            pages = server_ms.pop("page", [])
            forged = []
            for path in paths[:200]:
                bad = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
                started = time.perf_counter()
                resp = await client.get(bad)
                await resp.read()
                forged.append((time.perf_counter() - started) * 1000)
                assert resp.status == 404
            polls = []
            for number in numbers[:200]:
                started = time.perf_counter()
                assert await fingerprint(runtime, number) is not None
                polls.append((time.perf_counter() - started) * 1000)
        print(figures("GET /t/{token}: server time", pages))
        print(figures("GET /t/{token}: round trip (client)", round_trip))
        print(figures("forged token → 404: round trip", forged))
        print(figures("live stream poll (per open page, 2 s)", polls))
        wire = statistics.mean(s[0] for s in sizes)
        html = statistics.mean(s[1] for s in sizes)
        print(f"page size: {html / 1024:.1f} KB of HTML, {wire / 1024:.1f} KB on the wire (gzip)")
        p99 = percentile(pages, 99)
        verdict = "met" if p99 <= TARGET_P99_MS else "MISSED"
        print(f"target p99 ≤ {TARGET_P99_MS:.0f} ms server time: {p99:.2f} ms — {verdict} "
              f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs: a shared machine's figures)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True, help="a prefilled SQLite database (bench/prefill_db.py)")
    parser.add_argument("--audit-key-file", default=None, help="its audit key (default: $AUDIT_KEY)")
    parser.add_argument("--tickets", type=int, default=300)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--scratch", default=None, help="folder for the copy (default: the system's temp)")
    parser.add_argument("--copy", action="store_true", help="serve a copy (in --scratch) instead of the file")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
