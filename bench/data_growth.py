"""How the service's slow-growing paths behave as the data grows (issue 24, "flat as data grows").

    python bench/data_growth.py DB [DB ...] [--labels empty,100k,1M] [--runs 3] [--audit-key KEY]
    python bench/data_growth.py --prefill 0,100000 --folder /work/bench-dbs   (builds them first)

Each DB is a SQLite file made by bench/prefill_db.py (empty: a prefill of 0 tickets), opened by the
real service (Runtime + aiohttp app, playground on, the demo directory loaded into it). Side by side:

  * start: Runtime start-up until the app answers.
  * dispatch index: what its (re)build reads, every acceptance of the last 3 days (`acceptances_since`),
    on a fresh connection (cold) and again (warm); then a customer's first fault report after the
    start (which builds the index, and waits for the classifier's dictionary), and the next one.
  * 报表 7天 / 报表 30天: the supervisor's report through the playground, median of `--runs`, with the
    event loop's longest stall during the 30-day one (a 1 ms sleep's lateness, sampled the whole time).
  * GET /api/tickets, GET /api/tickets/{number}: median of `--runs`.
  * audit verify: `ticketbot audit verify` in its own process: wall time and peak RSS (GNU time).

The database is copied to nothing: the service writes to it (the demo directory, the reports' tickets),
so use a scratch copy for repeated runs if the numbers must be from exactly the same rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_KEY = "bench-audit-key-0123456789abcdef0123456789"
SUPERVISOR = "sup-li"


class StallProbe:
    """Worst delay of a 1 ms sleep on the loop: how long the loop was blocked at worst."""

    def __init__(self) -> None:
        self.worst_s = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.worst_s = 0.0
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            self.worst_s = max(self.worst_s, time.perf_counter() - started - 0.001)

    async def stop(self) -> float:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return self.worst_s * 1000


async def _timed(call: Any) -> tuple[float, Any]:
    began = time.perf_counter()
    result = await call
    return (time.perf_counter() - began) * 1000, result


async def measure_service(db: Path, runs: int, key: str) -> dict[str, Any]:
    from aiohttp.test_utils import TestClient, TestServer
    from pydantic import SecretStr

    from bot.runtime import Runtime
    from bot.settings import Settings
    from bot.web.app import build_app

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(_env_file=None, database_url=f"sqlite:///{db}", data_dir=Path(data),  # type: ignore[call-arg]
                            playground="on", load_demo="on", audit_key=SecretStr(key))
        began = time.perf_counter()
        runtime = Runtime(settings)
        async with TestClient(TestServer(build_app(settings, runtime=runtime))) as client:
            out["start_ms"] = (time.perf_counter() - began) * 1000

            async def say(user: str, text: str) -> dict[str, Any]:
                resp = await client.post("/playground/api/messages", json={"user": user, "text": text})
                assert resp.status == 200, await resp.text()
                return await resp.json()

            out["first_report_ms"], _ = await _timed(say("bench-cust-1", "空调不制冷，出风口是热风"))
            out["next_report_ms"], _ = await _timed(say("bench-cust-2", "卫生间水龙头漏水"))
            for days in (7, 30):
                times = []
                for _ in range(runs):
                    probe = StallProbe()
                    probe.start()
                    elapsed, _answer = await _timed(say(SUPERVISOR, f"报表 {days}天"))
                    stall = await probe.stop()
                    times.append(elapsed)
                    out[f"report_{days}_stall_ms"] = max(out.get(f"report_{days}_stall_ms", 0.0), stall)
                out[f"report_{days}_ms"] = statistics.median(times)
                out[f"report_{days}_first_ms"] = times[0]
            for name, path in (("list", "/api/tickets"), ("one", None)):
                times = []
                for _ in range(runs):
                    if path is None:
                        listed = await (await client.get("/api/tickets")).json()
                        items = listed.get("tickets", listed) if isinstance(listed, dict) else listed
                        number = items[0]["number"] if items else "GD-00000000-0000"
                        path_now = f"/api/tickets/{number}"
                    else:
                        path_now = path
                    elapsed, resp = await _timed(client.get(path_now))
                    await resp.read()
                    times.append(elapsed)
                out[f"api_{name}_ms"] = statistics.median(times)
    return out


async def measure_dispatch_index(db: Path, runs: int) -> dict[str, Any]:
    """What the dispatch index reads when it is (re)built (core/dispatch/live.py `_rebuild`): every
    acceptance of the last ACCEPTED_WINDOW, through the service's own statement."""
    from datetime import UTC, datetime

    from sqlalchemy.ext.asyncio import AsyncConnection

    from core.dispatch.live import ACCEPTED_WINDOW
    from storage.database import create_engine
    from storage.technicians import SqlDispatchStore

    engine = create_engine(f"sqlite:///{db}")
    try:
        async with engine.connect() as conn:
            async def connection() -> AsyncConnection:
                return conn

            store = SqlDispatchStore(connection, lambda: None)  # type: ignore[arg-type,return-value]
            times, found = [], 0
            for _ in range(runs):
                elapsed, rows = await _timed(store.acceptances_since(datetime.now(UTC) - ACCEPTED_WINDOW))
                times.append(elapsed)
                found = len(rows)
    finally:
        await engine.dispose()
    return {"acceptances_ms": times[0], "acceptances_warm_ms": statistics.median(times), "acceptances": found}


def measure_verify(db: Path, key: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DATA_DIR", "AUDIT_KEY"}}
    with tempfile.TemporaryDirectory() as data:
        env.update(DATABASE_URL=f"sqlite:///{db}", DATA_DIR=data, AUDIT_KEY=key, PYTHONPATH=str(ROOT))
        began = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-f", "maxrss_kb=%M", sys.executable, "-m", "bot.cli", "audit",
                               "verify"], env=env, capture_output=True, text=True, cwd=data)
        elapsed = time.perf_counter() - began
    rss = re.search(r"maxrss_kb=(\d+)", done.stderr)
    return {"verify_s": elapsed, "verify_rss_mb": int(rss.group(1)) / 1024 if rss else None,
            "verify_ok": done.returncode == 0, "verify_out": done.stdout.strip()[-80:]}


ROWS = (
    ("database size", "size_mib", "{:,.0f} MiB"),
    ("tickets", "tickets", "{:,}"),
    ("start-up", "start_ms", "{:,.0f} ms"),
    ("dispatch index: acceptances of 3 days (cold)", "acceptances_ms", "{:,.1f} ms"),
    ("dispatch index: acceptances of 3 days (warm)", "acceptances_warm_ms", "{:,.1f} ms"),
    ("first fault report after start", "first_report_ms", "{:,.0f} ms"),
    ("next fault report", "next_report_ms", "{:,.0f} ms"),
    ("报表 7天 (first run)", "report_7_first_ms", "{:,.0f} ms"),
    ("报表 7天 (median)", "report_7_ms", "{:,.0f} ms"),
    ("报表 30天 (first run)", "report_30_first_ms", "{:,.0f} ms"),
    ("报表 30天 (median)", "report_30_ms", "{:,.0f} ms"),
    ("longest loop stall during 报表 30天", "report_30_stall_ms", "{:,.1f} ms"),
    ("GET /api/tickets", "api_list_ms", "{:,.1f} ms"),
    ("GET /api/tickets/{number}", "api_one_ms", "{:,.1f} ms"),
    ("audit verify", "verify_s", "{:,.1f} s"),
    ("audit verify peak RSS", "verify_rss_mb", "{:,.0f} MiB"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dbs", nargs="*", type=Path)
    parser.add_argument("--labels", default=None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--audit-key", default=os.environ.get("AUDIT_KEY", DEFAULT_KEY))
    parser.add_argument("--prefill", default=None, help="ticket counts to build first, e.g. 0,100000")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--no-verify", action="store_true")
    args = parser.parse_args(argv)
    dbs = list(args.dbs)
    if args.prefill:
        for count in (int(c) for c in args.prefill.split(",")):
            path = args.folder / f"growth-{count}.db"
            if not path.exists():
                subprocess.run([sys.executable, str(ROOT / "bench" / "prefill_db.py"), "--sqlite", str(path),
                                "--tickets", str(count), "--audit-key", args.audit_key], check=True)
            dbs.append(path)
    if not dbs:
        parser.error("give databases, or --prefill")
    labels = args.labels.split(",") if args.labels else [db.stem for db in dbs]
    results = []
    for db in dbs:
        import sqlite3

        with contextlib.closing(sqlite3.connect(db)) as conn:
            tickets = conn.execute("SELECT count(*) FROM tickets").fetchone()[0]
        row: dict[str, Any] = {"size_mib": db.stat().st_size / 2**20, "tickets": tickets}
        if not args.no_verify:
            row.update(measure_verify(db, args.audit_key))  # before the service adds its rows
        row.update(asyncio.run(measure_dispatch_index(db, args.runs)))
        row.update(asyncio.run(measure_service(db, args.runs, args.audit_key)))
        results.append(row)
        print(f"{db}: {row}", file=sys.stderr)
    width = max(len(label) for label, _, _ in ROWS)
    print("| " + " | ".join([" " * width, *labels]) + " |")
    print("|" + "|".join(["-" * (width + 2)] + ["-" * (len(label) + 2) for label in labels]) + "|")
    for label, field, fmt in ROWS:
        cells = [fmt.format(r[field]) if r.get(field) is not None else "—" for r in results]
        print(f"| {label:<{width}} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
