"""bench/prefill_db.py (issue 24): a database of historical tickets written with plain SQL that the
service accepts as its own — the audit chain verifies under the key, the schema is the models' at
head, and 报表 reads it. SQLite and PostgreSQL, through the real scripts."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.chat.report_reads import direct, read_only_sqlite
from bot.chat.reports import parse_period, report_job
from tests.audit_support import ROOT, cli_env

KEY = "prefill-test-key-0123456789abcdef01234567"
TICKETS = 150


def prefill(target: list[str], tickets: int = TICKETS) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "prefill_db.py"), *target, "--tickets", str(tickets),
                           "--audit-key", KEY, "--heavy-customer", "20"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def verify(database_url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.cli", "audit", "verify"],
                          env=cli_env(database_url, data_dir, AUDIT_KEY=KEY), capture_output=True, text=True,
                          timeout=300, cwd=data_dir.parent)


def test_a_prefilled_sqlite_database_verifies_and_reports(tmp_path: Path) -> None:
    path = tmp_path / "prefilled.db"
    done = prefill(["--sqlite", str(path)])
    assert done.returncode == 0, done.stderr
    with closing(sqlite3.connect(path)) as db:
        count = dict(db.execute("SELECT 'tickets', count(*) FROM tickets UNION ALL "
                                "SELECT 'events', count(*) FROM audit_events UNION ALL "
                                "SELECT 'timers', count(*) FROM timers UNION ALL "
                                "SELECT 'outbox', count(*) FROM outbox UNION ALL "
                                "SELECT 'numbered', sum(last) FROM ticket_counters").fetchall())
        assert count == {"tickets": TICKETS, "events": 13 * TICKETS, "timers": 6 * TICKETS, "outbox": 4 * TICKETS,
                         "numbered": TICKETS}
        assert db.execute("SELECT DISTINCT status FROM tickets").fetchall() == [("closed",)]
        assert db.execute("SELECT count(*) FROM tickets WHERE customer_id = 'cust-heavy'").fetchone() == (20,)
        indexes = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"ix_audit_events_ticket_kind", "ix_audit_events_kind_at", "ix_tickets_closed_at"} <= indexes
    ok = verify(f"sqlite:///{path}", tmp_path / "data")
    assert ok.returncode == 0 and f"OK: {13 * TICKETS} events" in ok.stdout, ok.stdout + ok.stderr
    wrong = subprocess.run([sys.executable, "-m", "bot.cli", "audit", "verify"],
                           env=cli_env(f"sqlite:///{path}", tmp_path / "data", AUDIT_KEY="another-key-" + "x" * 32),
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert wrong.returncode == 1, wrong.stdout  # keyed: not verifiable without the key

    zone = ZoneInfo("Asia/Shanghai")
    now = datetime.now(UTC)
    period, _ = parse_period(["366天"], now, zone)
    with read_only_sqlite(path).connect() as connection:
        text = report_job(direct(connection), period, now, zone, None, [])
    assert f"报修 {TICKETS} 张" in text and "响应 100.0%" in text, text



def test_a_prefilled_postgres_database_verifies(scratch_postgres: str, tmp_path: Path) -> None:
    done = prefill(["--database-url", scratch_postgres])
    assert done.returncode == 0, done.stderr
    ok = verify(scratch_postgres, tmp_path / "data")
    assert ok.returncode == 0 and f"OK: {13 * TICKETS} events" in ok.stdout, ok.stdout + ok.stderr
    again = prefill(["--database-url", scratch_postgres])  # a database with tables is refused
    assert again.returncode != 0 and "already has tables" in again.stderr, again.stderr
