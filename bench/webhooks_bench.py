"""Outbound webhook fan-out: 1,000 events to 10 subscribers through the real outbox and dispatcher.

    python bench/webhooks_bench.py [--events 1000] [--subscribers 10] [--answer-ms 50]
                                   [--concurrency 8] [--timeout 10] [--database-url URL]

Events are queued the way the service queues them — `core.hub.webhook_events.emit` inside real units
of work (one delivery row per subscription, in the transaction) — 50 events per transaction, before
the clock starts. Then the dispatcher (bot/jobs/webhooks.py, the one `ticketbot serve` runs) delivers
them to receivers in another process (aiohttp, loopback) that check every signature and answer after
`--answer-ms`. Two runs on fresh databases:

  1. `--subscribers` receivers answering in `--answer-ms`;
  2. the same plus one receiver that never answers (each of its requests hangs until `--timeout`):
     the others must be unaffected.

Printed per run: time until every healthy delivery was acknowledged, deliveries per second, the
queue-to-acknowledged latency p50/p95/max, bad signatures seen by the receivers, and for run 2 the
hanging subscription's deliveries in flight. Target (issue 23): ≤ 30 s for 1,000 events × 10.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import logging
import multiprocessing
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import func, select
from sqlmodel import col

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.jobs.webhooks import WebhookDispatcher  # noqa: E402
from core.clock import SystemClock  # noqa: E402
from core.hub.webhook_events import emit, write_events  # noqa: E402
from core.model import Ticket, TicketStatus  # noqa: E402
from storage.database import create_engine, session_factory  # noqa: E402
from storage.migrate import create_fresh_schema  # noqa: E402
from storage.tables import WebhookDeliveryRow  # noqa: E402
from storage.unit_of_work import SqlUnitOfWork  # noqa: E402
from storage.webhook_store import SqlWebhookStore  # noqa: E402

BATCH = 50


def receiver_process(port_out: Any, secrets_by_name: dict[str, str], answer_ms: float, stats_queue: Any) -> None:
    """Receivers on loopback, in their own process: /hooks/<name> checks the signature (the contract
    written out again) and answers after answer_ms; /hooks/hang never answers."""
    bad = 0
    received = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal bad, received
        name = request.match_info["name"]
        raw = await request.read()
        if name == "hang":
            await asyncio.sleep(3600)
        fields = dict(part.split("=", 1) for part in request.headers["X-Ticketbot-Signature"].split(","))
        expected = hmac.new(secrets_by_name[name].encode(), fields["t"].encode() + b"." + raw,
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, fields["v1"]):
            bad += 1
            return web.Response(status=401)
        await asyncio.sleep(answer_ms / 1000)
        received += 1
        return web.Response(text="ok")

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response({"bad": bad, "received": received})

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/hooks/{name}", handle)
        app.router.add_get("/stats", stats)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port_out.put(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(main())


async def queue_events(sessions: Any, events: int) -> None:
    clock = SystemClock()
    from bot.rules.rulebook import RuleBook
    from core.service import SYSTEM_ACTOR, Context, TicketService

    service = TicketService(lambda: SqlUnitOfWork(sessions), clock, RuleBook())
    now = clock.now()
    for start in range(0, events, BATCH):
        async with SqlUnitOfWork(sessions) as uow:
            ctx = Context(uow=uow, clock=clock, actor=SYSTEM_ACTOR, service=service)
            for i in range(start, min(events, start + BATCH)):
                ticket = Ticket(number=f"GD-20261206-{i:04d}", customer_id=f"cust-{i}", description="底盘有异响",
                                status=TicketStatus.DISPATCHED, created_at=now, updated_at=now,
                                assignee_id="tech-wang", data={"global_id": f"00000000-0000-4000-8000-{i:012d}"})
                await emit(ctx, "ticket.status_changed", ticket,
                           {"transition": "dispatch", "from": "pending_dispatch", "to": "dispatched"})
            await write_events(ctx)  # as TicketService.handle does before its commit
            await uow.commit()


async def run(args: argparse.Namespace, *, hanging: bool) -> dict[str, Any]:
    names = [f"sys{i:02d}" for i in range(args.subscribers)] + (["hang"] if hanging else [])
    secrets_by_name = {name: f"secret-{name}" for name in names}
    ctx = multiprocessing.get_context("spawn")
    port_queue = ctx.Queue()
    receiver = ctx.Process(target=receiver_process, args=(port_queue, secrets_by_name, args.answer_ms, None),
                           daemon=True)
    receiver.start()
    port = port_queue.get(timeout=30)
    tmp = tempfile.TemporaryDirectory()
    url = args.database_url or f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    engine = create_engine(url)
    try:
        await create_fresh_schema(engine)
        sessions = session_factory(engine)
        store = SqlWebhookStore(sessions, SystemClock())
        subscriptions = {}
        for name in names:
            subscriptions[name] = await store.add_subscription(
                client=name, url=f"http://127.0.0.1:{port}/hooks/{name}", secret=secrets_by_name[name],
                events=["ticket.status_changed"])
        hang_id = subscriptions["hang"].id if hanging else None
        queued_at = time.perf_counter()
        await queue_events(sessions, args.events)
        queue_s = time.perf_counter() - queued_at
        healthy_total = args.events * args.subscribers
        dispatcher = WebhookDispatcher(store, SystemClock(), timeout_s=args.timeout, concurrency=args.concurrency,
                                       allow_private=True, idle_s=0.2)
        started = time.perf_counter()
        task = asyncio.get_running_loop().create_task(dispatcher.run_forever())
        delivered = 0
        hang_in_flight = 0
        while delivered < healthy_total:
            await asyncio.sleep(0.2)
            async with sessions.transaction() as conn:
                stmt = select(func.count()).where(col(WebhookDeliveryRow.status) == "delivered")
                delivered = int((await conn.execute(stmt)).scalar_one())
            if hang_id is not None:
                hang_in_flight = max(hang_in_flight, dispatcher.stats()["in_flight"].get(hang_id, 0))
            if time.perf_counter() - started > 300:
                break
        elapsed = time.perf_counter() - started
        task.cancel()
        await dispatcher.close()
        async with sessions.transaction() as conn:
            rows = list(await conn.execute(select(col(WebhookDeliveryRow.created_at),
                                                  col(WebhookDeliveryRow.delivered_at))
                                           .where(col(WebhookDeliveryRow.status) == "delivered")))
        latencies = sorted((d - c).total_seconds() for c, d in rows)
        # the events were all queued before the dispatcher started: latency from its start
        offset = (datetime.now(UTC) - rows[0][0]).total_seconds() - elapsed if rows else 0.0
        from_start = sorted(max(0.0, x - offset) for x in latencies)
        import aiohttp

        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/stats") as response:
            seen = await response.json()
        return {
            "hanging": hanging, "events": args.events, "subscribers": args.subscribers, "deliveries": delivered,
            "queue_s": queue_s, "elapsed_s": elapsed, "per_s": delivered / elapsed if elapsed else 0.0,
            "p50_s": statistics.median(from_start) if from_start else None,
            "p95_s": from_start[int(len(from_start) * 0.95) - 1] if from_start else None,
            "max_s": from_start[-1] if from_start else None, "bad_signatures": seen["bad"],
            "hang_in_flight_max": hang_in_flight,
        }
    finally:
        await engine.dispose()
        receiver.terminate()
        receiver.join()
        tmp.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--answer-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(f"webhook fan-out: {args.events} events × {args.subscribers} subscribers, receivers answer in "
          f"{args.answer_ms:g} ms, {args.concurrency} in flight per subscription, timeout {args.timeout:g} s")
    for hanging in (False, True):
        result = asyncio.run(run(args, hanging=hanging))
        label = "with one hanging receiver" if hanging else "all receivers healthy"
        verdict = "OK" if result["deliveries"] == args.events * args.subscribers and result["elapsed_s"] <= 30 \
            else "MISSED"
        print(f"{label:28} {result['deliveries']:6d} delivered in {result['elapsed_s']:6.2f} s "
              f"({result['per_s']:7.1f}/s; queueing took {result['queue_s']:.2f} s)  "
              f"latency from start p50 {result['p50_s']:.2f} s p95 {result['p95_s']:.2f} s max {result['max_s']:.2f} s"
              f"  bad signatures {result['bad_signatures']}"
              + (f"  hanging in flight ≤ {result['hang_in_flight_max']}" if hanging else "") + f"  [{verdict} ≤ 30 s]")


if __name__ == "__main__":
    main()
