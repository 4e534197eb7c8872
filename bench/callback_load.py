"""What the webhook benchmarks share (bench/wecom_bench.py, bench/feishu_bench.py): serving one
kind of server in its own process, the commit times its inbox recorded, closed- and open-loop load
from this process, and the table of answer times they print.

A request is (key, body, headers, query): `key` is the inbox event key the server will store, so
that an answer can be matched with the moment its row was committed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import ClientSession, TCPConnector, web

Request = tuple[str, bytes, dict[str, str], dict[str, str]]  # (event key, body, headers, query)

FAILED: dict[str, int] = {}  # url -> answers other than 200 (a platform would retry those)


class Discard(list[Any]):
    """For a fake platform's request log: a long run must not keep every request."""

    def append(self, item: Any) -> None:
        pass


def record_commits(runtime: Any, commits: dict[int, float]) -> None:
    """Note when each inbox row was committed (SqlInbox.on_accepted runs right after the commit, with
    CLOCK_MONOTONIC, which all processes of one machine share); processing then goes on as usual."""
    schedule = runtime.inbox.on_accepted

    def on_accepted(row_id: int) -> None:
        commits[row_id] = time.monotonic()
        if schedule is not None:
            schedule(row_id)

    runtime.inbox.on_accepted = on_accepted


async def serve_until(app: web.Application, kind: str, ports: Any, stop: Any) -> web.AppRunner:
    """Listen on a free loopback port, tell the parent which, return once it says stop."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    ports.put((kind, runner.addresses[0][1]))
    while not stop.is_set():
        await asyncio.sleep(0.05)
    return runner


async def commit_times(sessions: Any, commits: dict[int, float]) -> dict[str, float]:
    """event key → monotonic time its inbox row was committed."""
    if sessions is None:
        return {}
    from sqlmodel import col, select

    from storage.tables import InboxRow

    async with sessions() as session:
        rows = (await session.execute(select(col(InboxRow.id), col(InboxRow.event_key)))).all()
    return {key: commits[row_id] for row_id, key in rows if row_id in commits}


async def processed(sessions: Any, channel: str) -> dict[str, int]:
    """How far the server got: inbox rows stored and done, tickets, replies on `channel` queued and sent."""
    if sessions is None:
        return {}
    from sqlmodel import col, func, select

    from storage.tables import InboxRow, OutboxRow, TicketRow

    async with sessions() as session:

        async def count(stmt: Any) -> int:
            return int((await session.execute(stmt)).scalar_one())

        on_channel = col(OutboxRow.channel) == channel
        return {
            "inbox rows": await count(select(func.count()).select_from(InboxRow)),
            "inbox done": await count(select(func.count()).select_from(InboxRow).where(col(InboxRow.status) == "done")),
            "tickets": await count(select(func.count()).select_from(TicketRow)),
            f"{channel} outbox rows": await count(select(func.count()).select_from(OutboxRow).where(on_channel)),
            f"{channel} sent": await count(
                select(func.count()).select_from(OutboxRow).where(on_channel, col(OutboxRow.status) == "sent")),
        }


async def one(session: ClientSession, url: str, request: Request, answered: dict[str, float]) -> float:
    key, body, headers, query = request
    start = time.monotonic()
    async with session.post(url, params=query, data=body, headers=headers) as resp:
        await resp.read()
        if resp.status != 200:
            FAILED[url] = FAILED.get(url, 0) + 1
    answered[key] = end = time.monotonic()
    return end - start


async def closed_loop(url: str, requests: list[Request], concurrency: int, answered: dict[str, float]) -> float:
    """`concurrency` clients, each sending its next request when the last is answered: requests/s."""
    queue = iter(requests)
    async with ClientSession(connector=TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            for request in queue:
                await one(session, url, request, answered)

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(requests) / (time.monotonic() - start)


async def open_loop(url: str, requests: list[Request], rate: float, answered: dict[str, float]) -> list[float]:
    """Requests at a steady `rate`, whether or not earlier ones are answered: each one's answer time."""
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


async def measure(url: str, warm: list[Request], paced: list[Request], burst: list[Request], *, rate: float,
                  concurrency: int, settle: float, answered: dict[str, float],
                  warm_clients: int = 2) -> tuple[dict[str, float], dict[str, list[str]]]:
    """Warm up, then steady load (a burst first would leave a processing backlog that colours it), then
    the burst. Figures: open-loop p50/p99 ms and burst requests/s; phases: the keys of each phase."""
    await closed_loop(url, warm, warm_clients, answered)  # connections, imports, jieba's dictionary
    await asyncio.sleep(settle)  # and let the app finish processing them
    latencies = await open_loop(url, paced, rate, answered)
    figures = {"p50": pct(latencies, 0.5), "p99": pct(latencies, 0.99)}
    await asyncio.sleep(settle)
    figures["rps"] = await closed_loop(url, burst, concurrency, answered)
    return figures, {"open": [r[0] for r in paced], "burst": [r[0] for r in burst]}


def print_answer_table(servers: tuple[str, ...], figures: dict[str, dict[str, float]],
                       commits: dict[str, dict[str, float]], answered: dict[str, dict[str, float]],
                       phases: dict[str, dict[str, list[str]]], unit: str) -> None:
    print("'after commit' = inbox row committed (server) → answer received (client).")
    print(f"{'':<6} {'open loop':^40} │ {'burst':^40}")
    print(f"{'server':<6} {'p50 ms':>8} {'p99 ms':>8} {'after commit p99':>16} {'max':>6} │ "
          f"{unit:>9} {'after commit p99':>16} {'max':>6} {'>100ms':>6}")
    for kind in servers:
        f, committed, got = figures[kind], commits[kind], answered[kind]
        steady = [got[k] - committed[k] for k in phases[kind]["open"] if k in committed and k in got]
        burst = [got[k] - committed[k] for k in phases[kind]["burst"] if k in committed and k in got]
        slow = sum(1 for a in steady + burst if a > 0.1)
        steady_txt = f"{pct(steady, 0.99):>16.2f} {max(steady) * 1000:>6.1f}" if steady else f"{'—':>16} {'—':>6}"
        burst_txt = (f"{pct(burst, 0.99):>16.2f} {max(burst) * 1000:>6.1f} {slow:>6}" if burst
                     else f"{'—':>16} {'—':>6} {'—':>6}")
        print(f"{kind:<6} {f['p50']:>8.2f} {f['p99']:>8.2f} {steady_txt} │ {f['rps']:>9.0f} {burst_txt}")
