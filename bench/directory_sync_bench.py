"""Directory sync at scale: a WeCom address book of N members in D departments, fetched from the fake
server over HTTP and applied to a fresh database (the demo directory loaded).

    python bench/directory_sync_bench.py [--people 5000] [--departments 50] [--pg postgresql://…]

Prints the time of the first sync (everyone created), of a second run (everything unchanged) and of
a run in which 1 % left and 1 % were renamed, each split into fetch and apply.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.jobs.directory_job import build_client, role_mapping
from bot.settings import Settings
from bot.token_cache import MemoryTokenCache
from core.clock import SystemClock
from core.masterdata.directory import SyncDirectory
from core.service import SYSTEM_ACTOR, TicketService
from tests.fakes.directory import WeComDirectoryServer
from tests.fakes.wecom_server import SAMPLE_AES_KEY, SAMPLE_TOKEN, FakeWeCom


def directory(people: int, departments: int) -> WeComDirectoryServer:
    server = WeComDirectoryServer()
    server.departments = [{"id": 1, "name": "公司", "parentid": 0, "department_leader": []}]
    server.departments += [{"id": d, "name": f"{'维修' if d % 3 else '客服'}{d}部", "parentid": 1,
                            "department_leader": []} for d in range(2, departments + 2)]
    server.users = [{"userid": f"u{i:06d}", "name": f"员工{i}", "department": [2 + i % departments],
                     "main_department": 2 + i % departments, "position": "职员", "status": 1,
                     "direct_leader": []} for i in range(people)]
    return server


async def run(args: argparse.Namespace) -> None:
    from bot.demo import load_demo
    from bot.rules.rulebook import RuleBook
    from bot.service_config import service_config
    from storage.database import create_engine, session_factory
    from storage.migrate import create_fresh_schema
    from storage.unit_of_work import SqlUnitOfWork

    fake = FakeWeCom(per_user_per_minute=None)
    server = directory(args.people, args.departments).attach(fake)
    await fake.start()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.pg or f"sqlite:///{tmp}/bench.db"
        settings = Settings(_env_file=None, database_url=url, data_dir=Path(tmp),  # type: ignore[call-arg]
                            wecom_corp_id=fake.corp_id, wecom_agent_id=str(fake.agent_id), wecom_secret=fake.secret,
                            wecom_token=SAMPLE_TOKEN, wecom_encoding_aes_key=SAMPLE_AES_KEY,
                            wecom_api_base=fake.base_url, directory_role_map="维修=technician,客服=front_desk")
        engine = create_engine(url)
        await create_fresh_schema(engine)
        sessions = session_factory(engine)
        clock = SystemClock()
        await load_demo(sessions, clock.now())
        service = TicketService(lambda: SqlUnitOfWork(sessions), clock, RuleBook(), service_config(settings))
        tokens = MemoryTokenCache()

        async def once(label: str) -> dict[str, Any]:
            client, closable = build_client("wecom", settings, tokens)
            started = time.perf_counter()
            snapshot = await client.fetch()
            fetched = time.perf_counter()
            await closable.close()
            report = await service.handle(SyncDirectory(snapshot, role_mapping(settings)), SYSTEM_ACTOR)
            done = time.perf_counter()
            print(f"{label:<28} fetch {fetched - started:6.2f} s  apply {done - fetched:6.2f} s  "
                  f"created {len(report.created)} updated {len(report.updated)} "
                  f"deactivated {len(report.deactivated)} unchanged {report.unchanged}")
            return report.to_dict()

        print(f"{args.people} people in {args.departments} departments, {'PostgreSQL' if args.pg else 'SQLite'}")
        await once("first sync (all created)")
        await once("second sync (unchanged)")
        step = 100
        for user in server.users[::step]:
            user["name"] += "（新）"
        server.users = [u for i, u in enumerate(server.users) if i % step != 1]
        await once("1 % renamed, 1 % left")
        await engine.dispose()
    await fake.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=5000)
    parser.add_argument("--departments", type=int, default=50)
    parser.add_argument("--pg", default=None, help="an empty PostgreSQL database (it gets the schema)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
