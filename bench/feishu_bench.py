"""Feishu webhook benchmark: encrypted, signed events through POST /feishu/events with the real
SQLite inbox, against a bare aiohttp echo endpoint, in the same run on loopback.

Each server runs in its own process; the load generator runs in this one. Servers:
- echo:  aiohttp answering {"msg": "success"} — the floor;
- inbox: the Feishu adapter on the real SqlInbox (SQLite file, WAL), rows committed, not processed;
- app:   the whole service (build_app with FEISHU_* pointing at a fake Feishu in a third process):
         every event is also processed (ticket, outbox row) and the reply delivered to the fake.

Figures per server: closed-loop events/s (`--concurrency` clients), open-loop p50/p99 answer time
at a steady `--rate`, and — the issue's target — the time from the inbox commit to the answer
arriving at the client (`after commit`, must stay under 100 ms). Commit times are taken in the
server from SqlInbox.on_accepted (called right after the commit) with CLOCK_MONOTONIC, which
is shared by all processes of one machine.

    python bench/feishu_bench.py [--events 1000] [--concurrency 16] [--rate 5] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: make `tests.fakes` importable

from aiohttp import ClientSession, TCPConnector, web  # noqa: E402

KEY = "bench-encrypt-key"
TOKEN = "bench-verification-token"
FAULTS = ["中控黑屏", "底盘有异响", "3号注塑机漏油，已停机", "空压机压力掉到0.4", "配电柜跳闸，车间停电"]
SERVERS = ("echo", "inbox", "app")
WARM_UP = 20

Request = tuple[str, bytes, dict[str, str]]  # (event_id, body, headers)


# --- servers (each in its own process) ---


def echo_app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"msg": "success"})

    app = web.Application()
    app.router.add_post("/feishu/events", echo)
    return app


async def inbox_app(db_url: str, commits: dict[int, float]) -> tuple[web.Application, Any]:
    from adapters.feishu import FeishuConfig, create_feishu_adapter
    from bot.token_cache import MemoryTokenCache
    from core.clock import SystemClock
    from storage.database import create_engine, session_factory
    from storage.inbox import SqlInbox
    from storage.migrate import upgrade

    await asyncio.to_thread(upgrade, db_url)  # alembic's env.py runs its own loop
    sessions = session_factory(create_engine(db_url))
    inbox = SqlInbox(sessions, SystemClock(), on_accepted=lambda row_id: commits.__setitem__(row_id, time.monotonic()))
    config = FeishuConfig("cli_bench", "secret", encrypt_key=KEY, verification_token=TOKEN, bot_open_id="ou_bot",
                          domain="http://127.0.0.1:9")
    app = web.Application()
    create_feishu_adapter(config, inbox, MemoryTokenCache()).add_routes(app)
    return app, sessions


def full_app(db_url: str, data_dir: Path, fake_url: str, commits: dict[int, float]) -> tuple[web.Application, Any]:
    from bot.app import build_app
    from bot.runtime import Runtime
    from bot.settings import Settings
    from tests.fakes.feishu_server import APP_ID, APP_SECRET

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=db_url, data_dir=data_dir, playground="off", feishu_app_id=APP_ID,
        feishu_app_secret=APP_SECRET, feishu_encrypt_key=KEY, feishu_verification_token=TOKEN,
        feishu_domain=fake_url)
    runtime = Runtime(settings)
    schedule = runtime.inbox.on_accepted

    def on_accepted(row_id: int) -> None:  # right after the commit; then processing as usual
        commits[row_id] = time.monotonic()
        if schedule is not None:
            schedule(row_id)

    runtime.inbox.on_accepted = on_accepted
    return build_app(settings, runtime=runtime), runtime.sessions


def serve(kind: str, ports: Any, stop: Any, results: Any, fake_url: str = "") -> None:
    async def main() -> None:
        commits: dict[int, float] = {}
        sessions = None
        with tempfile.TemporaryDirectory() as tmp:
            db_url = f"sqlite:///{tmp}/bench.db"
            if kind == "echo":
                app = echo_app()
            elif kind == "inbox":
                app, sessions = await inbox_app(db_url, commits)
            else:
                app, sessions = full_app(db_url, Path(tmp) / "data", fake_url, commits)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            ports.put((kind, runner.addresses[0][1]))
            while not stop.is_set():
                await asyncio.sleep(0.05)
            results.put((kind, await commit_times(sessions, commits), await processed(sessions)))
            await runner.cleanup()

    asyncio.run(main())


async def commit_times(sessions: Any, commits: dict[int, float]) -> dict[str, float]:
    """event_id → monotonic time its inbox row was committed."""
    if sessions is None:
        return {}
    from sqlmodel import col, select

    from storage.tables import InboxRow

    async with sessions() as session:
        rows = (await session.execute(select(col(InboxRow.id), col(InboxRow.event_key)))).all()
    return {key: commits[row_id] for row_id, key in rows if row_id in commits}


async def processed(sessions: Any) -> dict[str, int]:
    if sessions is None:
        return {}
    from sqlmodel import col, func, select

    from storage.tables import InboxRow, OutboxRow, TicketRow

    async with sessions() as session:
        async def count(stmt: Any) -> int:
            return int((await session.execute(stmt)).scalar_one())

        done = col(InboxRow.status) == "done"
        sent = col(OutboxRow.status) == "sent"
        return {
            "inbox rows": await count(select(func.count()).select_from(InboxRow)),
            "inbox done": await count(select(func.count()).select_from(InboxRow).where(done)),
            "tickets": await count(select(func.count()).select_from(TicketRow)),
            "replies sent": await count(select(func.count()).select_from(OutboxRow).where(sent)),
        }


def serve_fake(ports: Any) -> None:
    async def main() -> None:
        from tests.fakes.feishu_server import FakeFeishu

        fake = FakeFeishu()
        fake.requests = _Discard()  # type: ignore[assignment]  # a long run must not keep every request
        await fake.start()
        ports.put(("fake", fake.url))
        await asyncio.Event().wait()

    asyncio.run(main())


class _Discard(list[Any]):
    def append(self, item: Any) -> None:
        pass


# --- load ---


def build_requests(count: int) -> list[Request]:
    from adapters.feishu.crypto import encrypt, signature

    requests = []
    for i in range(count):
        event_id = f"ev-{i}-{secrets.token_hex(4)}"
        payload = {
            "schema": "2.0",
            "header": {"event_id": event_id, "token": TOKEN, "event_type": "im.message.receive_v1",
                       "create_time": str(int(time.time() * 1000)), "app_id": "cli_bench", "tenant_key": "t"},
            "event": {
                "sender": {"sender_id": {"open_id": f"ou_bench_{i % 50}"}, "sender_type": "user"},
                "message": {"message_id": f"om_{i}", "chat_id": "oc_1", "chat_type": "p2p", "message_type": "text",
                            "content": json.dumps({"text": FAULTS[i % len(FAULTS)]}, ensure_ascii=False)},
            },
        }
        body = json.dumps({"encrypt": encrypt(json.dumps(payload, ensure_ascii=False), KEY)}).encode()
        ts, nonce = str(int(time.time())), secrets.token_hex(8)
        headers = {"Content-Type": "application/json", "X-Lark-Request-Timestamp": ts, "X-Lark-Request-Nonce": nonce,
                   "X-Lark-Signature": signature(ts, nonce, KEY, body)}
        requests.append((event_id, body, headers))
    return requests


async def one(session: ClientSession, url: str, request: Request, answered: dict[str, float]) -> float:
    event_id, body, headers = request
    start = time.monotonic()
    async with session.post(url, data=body, headers=headers) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}")
    answered[event_id] = end = time.monotonic()
    return end - start


async def closed_loop(url: str, requests: list[Request], concurrency: int, answered: dict[str, float]) -> float:
    queue = iter(requests)
    async with ClientSession(connector=TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            for request in queue:
                await one(session, url, request, answered)

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(requests) / (time.monotonic() - start)


async def open_loop(url: str, requests: list[Request], rate: float, answered: dict[str, float]) -> list[float]:
    async with ClientSession(connector=TCPConnector(limit=0)) as session:
        start = time.monotonic()
        tasks = []
        for i, request in enumerate(requests):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, url, request, answered)))
        return list(await asyncio.gather(*tasks))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000 if ordered else float("nan")


async def run(args: argparse.Namespace) -> None:
    ctx = mp.get_context("spawn")
    ports, results, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    fake_proc = ctx.Process(target=serve_fake, args=(ports,), daemon=True)
    fake_proc.start()
    _, fake_url = ports.get(timeout=60)
    procs = [ctx.Process(target=serve, args=(kind, ports, stop, results, fake_url), daemon=True) for kind in SERVERS]
    for proc in procs:
        proc.start()
    urls = {}
    for _ in SERVERS:
        kind, port = ports.get(timeout=120)
        urls[kind] = f"http://127.0.0.1:{port}/feishu/events"
    answered: dict[str, dict[str, float]] = {kind: {} for kind in SERVERS}
    phases: dict[str, dict[str, list[str]]] = {kind: {} for kind in SERVERS}
    figures: dict[str, dict[str, float]] = {kind: {} for kind in SERVERS}
    try:
        paced_n = int(args.rate * args.seconds)
        for kind in SERVERS:  # fresh events per server: each inbox must accept every one
            requests = build_requests(WARM_UP + paced_n + args.events)
            warm, paced, burst = requests[:WARM_UP], requests[WARM_UP: WARM_UP + paced_n], requests[WARM_UP + paced_n:]
            await closed_loop(urls[kind], warm, 2, answered[kind])  # connections, imports, jieba's dictionary
            await asyncio.sleep(args.settle)  # and let the app finish processing them
            # Steady load first: a burst leaves a processing backlog that would colour it.
            latencies = await open_loop(urls[kind], paced, args.rate, answered[kind])
            figures[kind] |= {"p50": pct(latencies, 0.5), "p99": pct(latencies, 0.99)}
            figures[kind]["rps"] = await closed_loop(urls[kind], burst, args.concurrency, answered[kind])
            phases[kind] = {"open": [r[0] for r in paced], "burst": [r[0] for r in burst]}
        await asyncio.sleep(args.settle)  # let the app process and deliver what it accepted
        stop.set()
        reports = {}
        for _ in SERVERS:
            kind, commits, counts = results.get(timeout=120)
            reports[kind] = (commits, counts)
    finally:
        for proc in [*procs, fake_proc]:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()

    print(f"SQLite inbox, {mp.cpu_count()} CPUs. Open loop: {args.rate:g} events/s for {args.seconds:g} s; "
          f"then a burst of {args.events} events from {args.concurrency} concurrent clients.")
    print("'after commit' = inbox row committed (server) → answer received (client).")
    print(f"{'':<6} {'open loop':^40} │ {'burst':^40}")
    print(f"{'server':<6} {'p50 ms':>8} {'p99 ms':>8} {'after commit p99':>16} {'max':>6} │ "
          f"{'events/s':>9} {'after commit p99':>16} {'max':>6} {'>100ms':>6}")
    for kind in SERVERS:
        f, commits = figures[kind], reports[kind][0]

        def after(keys: list[str], kind: str = kind, commits: dict[str, float] = commits) -> list[float]:
            return [answered[kind][k] - commits[k] for k in keys if k in commits and k in answered[kind]]

        steady, burst_after = after(phases[kind]["open"]), after(phases[kind]["burst"])
        slow = sum(1 for a in steady + burst_after if a > 0.1)
        steady_txt = f"{pct(steady, 0.99):>16.2f} {max(steady) * 1000:>6.1f}" if steady else f"{'—':>16} {'—':>6}"
        burst_txt = (f"{pct(burst_after, 0.99):>16.2f} {max(burst_after) * 1000:>6.1f} {slow:>6}" if burst_after
                     else f"{'—':>16} {'—':>6} {'—':>6}")
        print(f"{kind:<6} {f['p50']:>8.2f} {f['p99']:>8.2f} {steady_txt} │ {f['rps']:>9.0f} {burst_txt}")
    e = figures["echo"]
    for kind in ("inbox", "app"):
        f = figures[kind]
        print(f"ratio {kind}/echo: burst throughput {f['rps'] / e['rps']:.3f}x, "
              f"open-loop p99 {f['p99'] / e['p99']:.1f}x")
    print(f"app {args.settle:g} s after the last event: {reports['app'][1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000, help="closed-loop events per server")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=5.0, help="open-loop events/s (below the app's capacity)")
    parser.add_argument("--seconds", type=float, default=10.0, help="open-loop duration")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds the app gets to catch up between phases")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
