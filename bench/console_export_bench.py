"""The console's ticket export at 100,000 rows (issue 22): time to the last byte and memory growth.

    python bench/console_export_bench.py                          # builds a 100,000-ticket SQLite DB
    python bench/console_export_bench.py --db /work/bench1m/ticketbot.db   # a copy of the 1 M one
    python bench/console_export_bench.py --workdir /tmp/export-bench --reuse   # the DB built last time

Target: a 100,000-row xlsx export ≤ 30 s with RSS growth ≤ 100 MB.

The real app runs in this process (aiohttp TestServer on a socket, the console gate, an admin session
opened from a sign-in link); an in-process client downloads `GET /console/tickets.xlsx` (and `.csv`)
to a file in chunks, so the client holds no more than the server does. Memory: the peak resident
set (VmHWM, reset before each export through /proc/<pid>/clear_refs) minus the resident set just
before, for this serving process AND for the export worker process (on SQLite the workbook is written
there, bot/console/exports.py), each reported. With a 1 M database, `from`/`to` are chosen so that the
list holds ~`--rows` tickets (the newest days); the 100 k database is exported whole.

The database is prefilled by bench/prefill_db.py (closed tickets with their trail) or copied from
--db (SQLite's backup API: a consistent copy while the source is in use), never written in place:
signing in writes links, sessions and audit events. The dashboards' background aggregator is not started
(its backfill of a fresh database would compete for the CPUs). The machine is shared and noisy: figures vary
from run to run; load average printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp.test_utils import TestClient, TestServer

TARGET_S = 30.0
TARGET_MB = 100.0
AUDIT_KEY = "console-export-bench-key-0123456789abcdef"


def status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (load-independent, unlike the wall time)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def reset_peak(pid: int) -> bool:
    """Linux: writing 5 to clear_refs resets VmHWM to the current RSS."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Sampler:
    """Samples VmRSS of some processes every 20 ms (a fallback where VmHWM cannot be reset)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], status_kb(pid, "VmRSS"))
            self._stop.wait(0.02)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def prepare_database(args: argparse.Namespace, workdir: Path) -> Path:
    target = workdir / "export-bench.db"
    if args.reuse and target.exists():
        return target
    for suffix in ("", "-wal", "-shm"):
        Path(str(target) + suffix).unlink(missing_ok=True)
    started = time.perf_counter()
    if args.db:
        with sqlite3.connect(f"file:{args.db}?mode=ro", uri=True) as src, sqlite3.connect(target) as dst:
            src.backup(dst, pages=65536)
        print(f"copied {args.db} → {target} in {time.perf_counter() - started:.0f} s", flush=True)
    else:
        subprocess.run([sys.executable, str(Path(__file__).parent / "prefill_db.py"), "--sqlite", str(target),
                        "--tickets", str(args.rows), "--days", "120", "--audit-key", args.audit_key], check=True)
        print(f"prefilled {args.rows:,} tickets in {time.perf_counter() - started:.0f} s", flush=True)
    return target


def add_schema_and_admin(path: Path) -> None:
    """The console's tables when the copy predates them (as `ticketbot db upgrade` would), and an admin."""
    from sqlalchemy import create_engine
    from sqlmodel import SQLModel

    import storage.tables  # noqa: F401  (every table on the metadata)

    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        for table in SQLModel.metadata.sorted_tables:
            if table.name.startswith("console_"):
                table.create(conn, checkfirst=True)
        for index in SQLModel.metadata.tables["tickets"].indexes:
            index.create(conn, checkfirst=True)
        conn.exec_driver_sql("INSERT OR IGNORE INTO people (id, name, role, store_id, preferred_channel, active) "
                             "VALUES ('bench-admin', '基准 管理员', 'admin', NULL, 'local', 1)")
    engine.dispose()


def window_for(path: Path, rows: int, zone: Any) -> dict[str, str]:
    """`from`/`to` (the newest days) holding at least `rows` tickets; {} when the table is that small."""
    with sqlite3.connect(path) as conn:
        total = conn.execute("SELECT count(*) FROM tickets").fetchone()[0]
        if total <= rows * 1.05:
            return {}
        newest = conn.execute("SELECT max(created_at) FROM tickets").fetchone()[0]
        end = date.fromisoformat(str(newest)[:10]) + timedelta(days=1)
        days = 1
        while True:
            start = end - timedelta(days=days)
            count = conn.execute("SELECT count(*) FROM tickets WHERE created_at >= ?",
                                 (start.isoformat(),)).fetchone()[0]
            if count >= rows or days > 4000:
                return {"from": start.isoformat(), "to": end.isoformat()}
            days += 1


async def download(client: TestClient, path: str, query: dict[str, str], target: Path,
                   pids: list[int]) -> dict[str, Any]:
    before = {pid: status_kb(pid, "VmRSS") for pid in pids}
    resettable = all(reset_peak(pid) for pid in pids)
    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    started = time.perf_counter()
    first_byte = None
    size = 0
    with Sampler(pids) as sampler:
        resp = await client.get(path, params=query)
        assert resp.status == 200, (resp.status, (await resp.text())[:500])
        with target.open("wb") as out:
            async for chunk in resp.content.iter_chunked(256 * 1024):
                if first_byte is None:
                    first_byte = time.perf_counter() - started
                out.write(chunk)
                size += len(chunk)
    elapsed = time.perf_counter() - started
    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
    growth = {}
    for pid in pids:
        peak = status_kb(pid, "VmHWM") if resettable else sampler.peak[pid]
        growth[pid] = (max(peak, sampler.peak[pid]) - before[pid]) / 1024
    return {"seconds": elapsed, "cpu": cpu, "first_byte": first_byte or elapsed, "bytes": size, "growth_mb": growth,
            "before_mb": {pid: kb / 1024 for pid, kb in before.items()}}


async def run(args: argparse.Namespace) -> int:
    import bot.jobs.report_aggregates as aggregates
    from bot.console.exports import export_worker_pids
    from bot.runtime import Runtime
    from bot.settings import Settings
    from bot.web.app import build_app
    from storage.console_store import ConsoleStore

    class Idle:  # the export alone: the dashboards' background fold (a backfill of a fresh database) not started
        async def run_forever(self) -> None:
            return None

    aggregates.start_report_aggregator = lambda _runtime: Idle()  # type: ignore[assignment,return-value]
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    db = prepare_database(args, workdir)
    add_schema_and_admin(db)
    data_dir = workdir / "data"
    settings = Settings(_env_file=None, database_url=f"sqlite:///{db}", data_dir=data_dir,  # type: ignore[call-arg]
                        audit_key=args.audit_key, playground="off", load_demo="off")
    runtime = Runtime(settings)
    app = build_app(settings, runtime=runtime, prepare=False)
    query = window_for(db, args.rows, runtime.service.config.timezone)
    failures = 0
    async with TestClient(TestServer(app)) as client:
        token = await ConsoleStore(runtime.sessions).issue_link("bench-admin", now=runtime.clock.now(),
                                                                valid_for=timedelta(minutes=5))
        resp = await client.get(f"/console/signin/{token}", allow_redirects=False)
        assert resp.status == 302, await resp.text()
        # Warm-up: starts the export worker process, loads openpyxl there (not counted as growth).
        warm = await client.get("/console/tickets.xlsx", params={"q": "不存在的工单-warmup"})
        assert warm.status == 200, await warm.text()
        await warm.read()
        me = os.getpid()
        workers = export_worker_pids()
        pids = [me, *workers]
        load = os.getloadavg()
        print(f"database {db} ({db.stat().st_size / 2**20:,.0f} MB), filter {query or '(none: every ticket)'}; "
              f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs", flush=True)
        print(f"{'export':<14} {'rows':>8} {'seconds':>8} {'CPU s':>6} {'1st byte':>9} {'MB':>7} "
              f"{'RSS growth: server':>19} {'export worker':>14}")
        for name, path in (("tickets.xlsx", "/console/tickets.xlsx"), ("tickets.csv", "/console/tickets.csv")):
            target = workdir / name
            figures = await download(client, path, query, target, pids)
            rows = count_rows(target)
            growth = figures["growth_mb"]
            worker_growth = max((growth[pid] for pid in workers), default=0.0)
            over = figures["seconds"] > TARGET_S or max(growth.values()) > TARGET_MB
            failures += over and name.endswith(".xlsx")
            print(f"{name:<14} {rows:>8,} {figures['seconds']:>8.1f} {figures['cpu']:>6.1f} "
                  f"{figures['first_byte']:>9.1f} {figures['bytes'] / 2**20:>7.1f} {growth[me]:>16.1f} MB "
                  f"{worker_growth:>11.1f} MB"
                  f"{'  ✗ over target' if over else ''}", flush=True)
        print(f"(resident now: server {status_kb(me, 'VmRSS') / 1024:.0f} MB, export worker "
              f"{sum(status_kb(p, 'VmRSS') for p in workers) / 1024:.0f} MB)")
    print("(CPU s: server + export worker, user + system: what the wall time would be on an idle core)")
    print(f"\ntarget: 100,000-row xlsx ≤ {TARGET_S:.0f} s and RSS growth ≤ {TARGET_MB:.0f} MB: "
          f"{'met' if not failures else 'missed'} (a shared, noisy machine: compare runs)")
    if not args.keep:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 1 if failures else 0


def count_rows(path: Path) -> int:
    if path.suffix == ".csv":
        with path.open("rb") as handle:
            return sum(1 for _ in handle) - 1
    import openpyxl

    wb = openpyxl.load_workbook(path, read_only=True)
    rows = sum(1 for _ in wb["工单列表"].iter_rows(min_row=2, values_only=True))
    wb.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="copy this SQLite database (e.g. the 1 M one) instead of building")
    parser.add_argument("--rows", type=int, default=100_000, help="rows to export (and tickets to prefill)")
    parser.add_argument("--workdir", default="/tmp/console-export-bench")
    parser.add_argument("--reuse", action="store_true", help="use the database left by the last run")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--audit-key", default=os.environ.get("AUDIT_KEY") or AUDIT_KEY)
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
