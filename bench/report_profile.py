"""Where 报表's and the dashboards' time goes (issues 22, 24): every statement of one job, timed.

    python bench/report_profile.py --db COPY.db [--job report7|report30|dash-all|dash-store|dash-category|dash-tech]
                                   [--plans]

Runs the job in this process on a read-only connection (as the report worker does), printing each
statement's milliseconds and rows (slowest first), the SQL total and the job's total (the rest is
Python: row processing, the live part, text). `--plans`: EXPLAIN QUERY PLAN of the slow ones.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ZONE_NAME = "Asia/Shanghai"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--job", default="report30")
    parser.add_argument("--plans", action="store_true")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--summary", action="store_true", help="only the job's median wall and CPU ms")
    args = parser.parse_args()

    import bot.chat.lifecycle  # noqa: F401  (the first-time-fix section)
    from bot.chat.report_reads import read_only_sqlite
    from bot.chat.reports import _SECTIONS, parse_period, report_job
    from storage.report_aggregates import Filters
    from storage.report_dashboard import dashboard_job

    zone = ZoneInfo(ZONE_NAME)
    engine = read_only_sqlite(args.db)
    now = datetime.now(UTC)
    today = now.astimezone(zone).date()
    log: list[tuple[float, int, Any]] = []
    with engine.connect() as connection:
        def execute(statement: Any) -> Sequence[Any]:
            began = time.perf_counter()
            rows = connection.execute(statement).all()
            log.append(((time.perf_counter() - began) * 1000, len(rows), statement))
            return rows

        def job() -> Any:
            if args.job.startswith("report"):
                period, state = parse_period([f"{args.job[6:]}天"], now, zone)
                return report_job(execute, period, now, zone, state, list(_SECTIONS))
            filters = {"dash-all": Filters(), "dash-store": Filters(store_ids=frozenset({"store-003"})),
                       "dash-category": Filters(category="空调"), "dash-tech": Filters(technician="tech-0007")}
            return dashboard_job(execute, today - timedelta(days=29), today, now, ZONE_NAME, filters[args.job])

        walls, cpus = [], []
        for _ in range(args.repeat):
            log.clear()
            began, cpu = time.perf_counter(), time.process_time()
            job()
            walls.append((time.perf_counter() - began) * 1000)
            cpus.append((time.process_time() - cpu) * 1000)
        total = walls[-1]
        if args.summary:
            print(f"{args.job:<14} median wall {statistics.median(walls):6.0f} ms, "
                  f"CPU {statistics.median(cpus):6.0f} ms ({args.repeat} runs, in-process; "
                  f"load {' '.join(f'{x:.1f}' for x in os.getloadavg())})")
            return 0
        sql = sum(ms for ms, _, _ in log)
        print(f"{args.job}: {total:.0f} ms, of which SQL (execute + fetch) {sql:.0f} ms in {len(log)} statements")
        for ms, rows, statement in sorted(log, key=lambda x: -x[0])[:15]:
            text = " ".join(str(statement.compile(connection)).split())
            print(f"  {ms:7.1f} ms {rows:7} rows  {text[:230]}")
            if args.plans and ms > 5:
                compiled = statement.compile(connection)
                params = compiled.construct_params()
                raw = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}",
                                                 tuple(params[k] for k in compiled.positiontup or ()))
                for row in raw:
                    print("      plan:", row[3])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
