"""The audit trail is hash-chained: editing or deleting a row is detected by `ticketbot audit verify`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from aiohttp.test_utils import TestClient
from sqlalchemy import delete, update

from storage.audit_verify import verify_audit
from storage.tables import AuditEventRow
from tests.conftest import runtime_of
from tests.playground_client import PlaygroundUser


async def make_history(client: TestClient) -> None:
    user = PlaygroundUser(client, "cust-audit")
    await user.say("底盘有异响")
    await user.say("中控黑屏")


async def test_untouched_chain_verifies(app_client: TestClient) -> None:
    await make_history(app_client)
    count, problems = await verify_audit(runtime_of(app_client).sessions)
    assert count >= 2 and problems == []


async def test_edited_row_is_detected(app_client: TestClient) -> None:
    await make_history(app_client)
    sessions = runtime_of(app_client).sessions
    async with sessions() as session, session.begin():
        await session.execute(update(AuditEventRow).where(AuditEventRow.seq == 1).values(
            payload={"description": "改过了"}))
    _, problems = await verify_audit(sessions)
    assert any(p.seq == 1 and "修改" in p.reason for p in problems)


async def test_deleted_row_is_detected(app_client: TestClient) -> None:
    await make_history(app_client)
    sessions = runtime_of(app_client).sessions
    async with sessions() as session, session.begin():
        await session.execute(delete(AuditEventRow).where(AuditEventRow.seq == 1))
    _, problems = await verify_audit(sessions)
    assert problems


async def test_deleted_last_row_is_detected(app_client: TestClient) -> None:
    await make_history(app_client)
    sessions = runtime_of(app_client).sessions
    async with sessions() as session:
        last = max((await session.execute(AuditEventRow.__table__.select())).all(), key=lambda r: r.seq).seq
    async with sessions() as session, session.begin():
        await session.execute(delete(AuditEventRow).where(AuditEventRow.seq == last))
    _, problems = await verify_audit(sessions)
    assert problems


def test_cli_audit_verify_exit_codes(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}", "DATA_DIR": str(tmp_path)}
    run = [sys.executable, "-m", "bot.cli"]
    assert subprocess.run([*run, "db", "upgrade"], env=env, capture_output=True).returncode == 0
    ok = subprocess.run([*run, "audit", "verify"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and "OK" in ok.stdout
    import sqlite3

    db = sqlite3.connect(tmp_path / "a.db")
    db.execute("INSERT INTO audit_events (seq, ticket_number, actor_id, at, kind, payload, prev_hash, hash) "
               "VALUES (1, NULL, 'x', '2026-01-01 00:00:00', 'forged', '{}', 'bad', 'bad')")
    db.commit()
    db.close()
    bad = subprocess.run([*run, "audit", "verify"], env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "BROKEN" in bad.stdout
