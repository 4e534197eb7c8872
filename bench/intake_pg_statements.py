"""Which SQL statements a playground fault report costs on PostgreSQL, per ticket (pg_stat_statements).

    python bench/intake_pg_statements.py [--tickets 300] [--connections 8] [--engine postgres|postgres-redis]
                                         [--top 40] [--postgres ADMIN_URL]

A deployment as `bench/intake.py --engine …` builds it (bench/intake_engines.py: a private cluster with
pg_stat_statements, the service as role `ticketbot`), 100 warm-up reports, then `--tickets` more;
prints the statements the service ran for those, per ticket, most frequent first, with their mean time.
Deterministic enough to compare two trees (the counts do not depend on the machine's load).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from intake import Load, playground_report, run_load, spread_sender, wait_ready
from intake_engines import SERVICE_ROLE, EngineSetup, PostgresServer, end_deployment, start_deployment

QUERY = """
SELECT s.queryid, s.query, s.calls, s.total_exec_time FROM pg_stat_statements s
JOIN pg_database d ON d.oid = s.dbid JOIN pg_roles r ON r.oid = s.userid
WHERE d.datname = $1 AND r.rolname = $2
"""


async def snapshot(admin_url: str, database: str) -> dict[int, tuple[str, int, float]]:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        rows = await conn.fetch(QUERY, database, SERVICE_ROLE)
    finally:
        await conn.close()
    return {int(r["queryid"]): (str(r["query"]), int(r["calls"]), float(r["total_exec_time"])) for r in rows}


async def main(args: argparse.Namespace) -> None:
    server = PostgresServer(args.postgres)
    await server.start()
    if not server.counts_statements:
        raise SystemExit("the server does not preload pg_stat_statements")
    setup = EngineSetup(args.engine, args.engine, 1, 1 if args.engine == "postgres-redis" else 0)
    deployment = await start_deployment(setup, server, {}, wait_ready)
    try:
        urls = [f"http://127.0.0.1:{port}/playground/api/messages" for port in deployment.ports]
        run_id = secrets.token_hex(3)
        async with aiohttp.ClientSession() as session:
            send = spread_sender(session, urls)
            await run_load(send, playground_report, f"w{run_id}_", duration=300, connections=args.connections,
                           rate=0, load=Load(), count=100)
            before = await snapshot(server.admin_url, deployment.database)
            load = Load()
            await run_load(send, playground_report, f"b{run_id}_", duration=300, connections=args.connections,
                           rate=0, load=load, count=args.tickets)
        await asyncio.sleep(0.5)
        after = await snapshot(server.admin_url, deployment.database)
        tickets = len(load.accepted)
        rows = []
        for queryid, (query, calls, total) in after.items():
            old_calls, old_total = before.get(queryid, ("", 0, 0.0))[1:]
            if calls > old_calls:
                rows.append((calls - old_calls, (total - old_total) / (calls - old_calls), " ".join(query.split())))
        rows.sort(reverse=True)
        print(f"{tickets} tickets, {sum(r[0] for r in rows) / tickets:.1f} statements per ticket "
              f"({len(rows)} distinct)")
        for calls, mean_ms, query in rows[: args.top]:
            print(f"{calls / tickets:6.2f}  {mean_ms:7.3f} ms  {query[:160]}")
    finally:
        await end_deployment(deployment)
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=300)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--engine", choices=("postgres", "postgres-redis"), default="postgres")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--postgres", default=None, help="admin URL of a server preloading pg_stat_statements")
    asyncio.run(main(parser.parse_args()))
