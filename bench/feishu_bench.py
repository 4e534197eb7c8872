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

from aiohttp import web  # noqa: E402
from callback_load import (  # noqa: E402  (bench/, the script's folder)
    FAILED,
    Discard,
    Request,
    commit_times,
    measure,
    print_answer_table,
    processed,
    record_commits,
    serve_until,
)

KEY = "bench-encrypt-key"
TOKEN = "bench-verification-token"
FAULTS = ["中控黑屏", "底盘有异响", "3号注塑机漏油，已停机", "空压机压力掉到0.4", "配电柜跳闸，车间停电"]
SERVERS = ("echo", "inbox", "app")
WARM_UP = 20


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
    from bot.runtime import Runtime
    from bot.settings import Settings
    from bot.web.app import build_app
    from tests.fakes.feishu_server import APP_ID, APP_SECRET

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=db_url, data_dir=data_dir, playground="off", feishu_app_id=APP_ID,
        feishu_app_secret=APP_SECRET, feishu_encrypt_key=KEY, feishu_verification_token=TOKEN,
        feishu_domain=fake_url)
    runtime = Runtime(settings)
    record_commits(runtime, commits)
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
            runner = await serve_until(app, kind, ports, stop)
            results.put((kind, await commit_times(sessions, commits), await processed(sessions, "feishu")))
            await runner.cleanup()

    asyncio.run(main())


def serve_fake(ports: Any) -> None:
    async def main() -> None:
        from tests.fakes.feishu_server import FakeFeishu

        fake = FakeFeishu()
        fake.requests = Discard()  # type: ignore[assignment]
        await fake.start()
        ports.put(("fake", fake.url))
        await asyncio.Event().wait()

    asyncio.run(main())


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
                # One sender per event: every report is a new ticket (repeats would become follow-ups).
                "sender": {"sender_id": {"open_id": f"ou_bench_{event_id}"}, "sender_type": "user"},
                "message": {"message_id": f"om_{i}", "chat_id": "oc_1", "chat_type": "p2p", "message_type": "text",
                            "content": json.dumps({"text": FAULTS[i % len(FAULTS)]}, ensure_ascii=False)},
            },
        }
        body = json.dumps({"encrypt": encrypt(json.dumps(payload, ensure_ascii=False), KEY)}).encode()
        ts, nonce = str(int(time.time())), secrets.token_hex(8)
        headers = {"Content-Type": "application/json", "X-Lark-Request-Timestamp": ts, "X-Lark-Request-Nonce": nonce,
                   "X-Lark-Signature": signature(ts, nonce, KEY, body)}
        requests.append((event_id, body, headers, {}))
    return requests


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
            figures[kind], phases[kind] = await measure(
                urls[kind], warm, paced, burst, rate=args.rate, concurrency=args.concurrency, settle=args.settle,
                answered=answered[kind])
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
    print_answer_table(SERVERS, figures, {k: reports[k][0] for k in SERVERS}, answered, phases, "events/s")
    for kind in SERVERS:
        if FAILED.get(urls[kind]):
            print(f"{kind}: {FAILED[urls[kind]]} answers were not 200 (Feishu would retry them)")
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
