"""API v1 benchmark: `POST /api/v1/tickets` with an Idempotency-Key per ticket into `ticketbot serve`
(SQLite, one process), and the playground intake measured in the same run for the ratio.

    python bench/api_v1_bench.py [--duration 10] [--connections 32] [--retries 200]

Each request is a new ticket (a new external_ref, a new customer phone, a new key), answered 201
after the whole intake (classification, SLA clock, dispatch) and the key's answer committed. The
API client is registered with `ticketbot api-client add` in the service's folder; its rate limit is
lifted for the run. Afterwards `--retries` of the accepted requests are sent again with their keys:
each must answer the same status and body, and the database must hold exactly one ticket per
accepted request (no duplicate from a retry).

Printed: API tickets/s, p50/p99 latency, CPU ms per ticket, the playground's figures from
bench/intake.py (its answer also comes after the handling) and the ratio. Target (issue 23):
>= 300 tickets/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/intake.py's helpers, unchanged
from intake import (
    ROOT,
    WARM_UP,
    Figures,
    Load,
    Report,
    cpu_s,
    measure_http_door,
    pct,
    run_load,
    start_service,
    wait_ready,
)

TARGET = 300.0


def register_client(workdir: Path) -> str:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}", "DATA_DIR": str(workdir),
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "bot.cli", "api-client", "add", "bench", "--scopes",
                           "tickets:write,tickets:read"], cwd=workdir, env=env, capture_output=True, text=True,
                          check=True, timeout=120)
    return str(json.loads(done.stdout)["token"])


class ApiReports:
    """A new ticket per sender: its own external_ref, customer phone and Idempotency-Key."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.phones = iter(range(10_000_000, 99_999_999))
        self.sent: dict[str, Report] = {}

    def __call__(self, sender: str) -> Report:
        body = {"description": "底盘有异响，开起来咣当咣当的", "customer": {"phone": f"139{next(self.phones)}"},
                "external_ref": sender}
        report = Report(sender, json.dumps(body, ensure_ascii=False).encode(), {
            "Content-Type": "application/json", "Authorization": f"Bearer {self.token}", "Idempotency-Key": sender})
        self.sent[sender] = report
        return report


async def measure_api(args: argparse.Namespace) -> tuple[Figures, str]:
    service = start_service({"API_RATE_LIMIT_PER_MINUTE": "100000000"})
    try:
        wait_ready(f"http://127.0.0.1:{service.port}/healthz", process=service.process)
        reports = ApiReports(register_client(service.workdir))
        url = f"http://127.0.0.1:{service.port}/api/v1/tickets"
        answers: dict[str, tuple[int, bytes]] = {}
        latencies: list[float] = []

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            async def send(report: Report) -> bool:
                started = time.perf_counter()
                async with session.post(url, data=report.body, headers=report.headers) as resp:
                    body = await resp.read()
                latencies.append(time.perf_counter() - started)
                answers[report.sender] = (resp.status, body)
                return resp.status == 201

            run_id = secrets.token_hex(3)
            await run_load(send, reports, f"warm-{run_id}-", duration=120, connections=4, rate=0, load=Load(),
                           count=WARM_UP)
            latencies.clear()
            cpu_before = cpu_s(service.process.pid)
            load = Load()
            await run_load(send, reports, f"api-{run_id}-", duration=args.duration, connections=args.connections,
                           rate=0, load=load)
            cpu = cpu_s(service.process.pid) - cpu_before
            # Retries with the same keys: the first answers again, no new ticket.
            retried = list(load.accepted)[: args.retries]
            first = {s: answers[s] for s in retried}
            same = 0
            for sender in retried:
                report = reports.sent[sender]
                async with session.post(url, data=report.body, headers=report.headers) as resp:
                    if (resp.status, await resp.read()) == first[sender]:
                        same += 1
        db = sqlite3.connect(service.db)
        try:
            tickets = db.execute("SELECT count(*) FROM ticket_external_refs WHERE ref LIKE ?",
                                 (f"api-{run_id}-%",)).fetchone()[0]
        finally:
            db.close()
        duration = load.stopped - load.started
        accepted = len(load.accepted)
        figures = Figures("api v1", accepted / duration, accepted / duration, (pct(latencies, 50), pct(latencies, 99)),
                          cpu_ms=cpu / accepted * 1000 if accepted else float("nan"), accepted=accepted,
                          processed=accepted, failed=load.failed)
        check = (f"retries: {same}/{len(retried)} answered identically; tickets in the database for the "
                 f"{accepted} accepted requests: {tickets}" + ("" if tickets == accepted else "  DUPLICATES"))
        return figures, check
    finally:
        service.stop()
        shutil.rmtree(service.workdir, ignore_errors=True)


async def run(args: argparse.Namespace) -> None:
    api, check = await measure_api(args)
    args.database, args.profile, args.drain, args.rate = None, None, 0.0, 0.0
    playground = await measure_http_door("playground", args)
    print(f"SQLite, one service process, {os.cpu_count()} CPUs; closed loop, {args.connections} connections, "
          f"{args.duration:g} s each, after {WARM_UP} warm-up requests.")
    print(f"{'door':<12}{'tickets/s':>10}{'p50/p99 ms':>16}{'CPU ms/ticket':>15}")
    for f in (api, playground):
        # the playground's figures carry no latency (its answer is the acceptance in bench/intake.py)
        lat = f"{f.to_processed[0]:.0f} / {f.to_processed[1]:.0f}" if f is api else "—"
        print(f"{f.door:<12}{f.processed_rate:>10.0f}{lat:>16}{f.cpu_ms:>15.2f}  {f.accepted} accepted"
              + (f", {f.failed} failed" if f.failed else ""))
    ratio = api.processed_rate / playground.processed_rate if playground.processed_rate else float("nan")
    print(f"api v1 / playground: {ratio:.2f}x the rate, {api.cpu_ms / playground.cpu_ms:.2f}x the CPU per ticket")
    print(check)
    print(f"target >= {TARGET:.0f} tickets/s: {'met' if api.processed_rate >= TARGET else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per door")
    parser.add_argument("--connections", type=int, default=32, help="requests in flight")
    parser.add_argument("--retries", type=int, default=200, help="accepted requests sent again with their keys")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
