"""Helpers for the audit-chain tests (issue 19, item 2): the real `ticketbot` CLI as a subprocess, a
history written by the real app, and an attacker with write access to the database but not the key.

No tests here: the test modules are test_audit_tamper.py, test_audit_anchor.py and
test_audit_key.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import text

from storage.database import Sessions
from tests.playground_client import PlaygroundUser

ROOT = Path(__file__).resolve().parents[1]
GENESIS = "0" * 64


def cli_env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a `ticketbot` process on this database and data folder (no AUDIT_KEY
    unless given: the key then comes from DATA_DIR/audit.key)."""
    env = {k: v for k, v in os.environ.items() if k not in {"AUDIT_KEY", "DATABASE_URL", "DATA_DIR"}}
    env.update(DATABASE_URL=database_url, DATA_DIR=str(data_dir), PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


async def ticketbot(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real command line in its own process (cwd: the data folder's parent, so no stray .env)."""
    cwd = Path(env["DATA_DIR"]).parent
    cwd.mkdir(parents=True, exist_ok=True)
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "bot.cli", *args], env=env, cwd=cwd, capture_output=True,
        text=True, timeout=180)


async def make_history(client: TestClient) -> list[str]:
    """Two customers report faults: two tickets, each with its creation event and what follows it."""
    numbers = []
    for user, text_ in (("cust-chain-1", "底盘有异响"), ("cust-chain-2", "中控黑屏")):
        await PlaygroundUser(client, user).say(text_)
        numbers.append(await last_ticket_number(client))
    return numbers


async def last_ticket_number(client: TestClient) -> str:
    from tests.conftest import runtime_of

    async with runtime_of(client).sessions() as session:
        return str((await session.execute(text("SELECT number FROM tickets ORDER BY id DESC LIMIT 1"))).scalar_one())


@dataclass
class Row:
    seq: int
    kind: str
    actor_id: str
    at: datetime
    ticket_number: str | None
    payload: Any
    prev_hash: str
    hash: str


async def rows(sessions: Sessions) -> list[Row]:
    """Rows as the ORM reads them (datetimes with their zone, JSON parsed): what a hash covers."""
    from sqlalchemy import select

    from storage.tables import AuditEventRow

    async with sessions() as session:
        result = await session.execute(select(AuditEventRow).order_by(AuditEventRow.seq))  # type: ignore[arg-type]
        return [Row(r.seq, r.kind, r.actor_id, r.at, r.ticket_number, r.payload, r.prev_hash, r.hash)
                for r in result.scalars()]


async def execute(sessions: Sessions, sql: str, **params: Any) -> None:
    async with sessions() as session, session.begin():
        await session.execute(text(sql), params)


async def head_row(sessions: Sessions) -> dict[str, Any] | None:
    async with sessions() as session:
        row = (await session.execute(text("SELECT * FROM audit_head WHERE id = 1"))).mappings().first()
        return dict(row) if row is not None else None


# --- the attacker: knows the (public) algorithm, has write access, has not got the key ---

def material(prev: str, row: Row) -> bytes:
    """What an event's hash covers, as the source code says (canonical JSON)."""
    return json.dumps({"prev": prev, "seq": row.seq, "kind": row.kind, "actor": row.actor_id,
                       "at": row.at.isoformat(), "ticket": row.ticket_number, "payload": row.payload},
                      ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


def plain_sha256(prev: str, row: Row) -> str:
    return hashlib.sha256(material(prev, row)).hexdigest()


def hmac_with(key: bytes) -> Callable[[str, Row], str]:
    return lambda prev, row: hmac.new(key, material(prev, row), hashlib.sha256).hexdigest()


async def rehash(sessions: Sessions, start: int, digest: Callable[[str, Row], str]) -> None:
    """Recompute prev_hash and hash from row `start` to the end, and move the head there."""
    chain = await rows(sessions)
    prev = GENESIS
    for row in chain:
        if row.seq >= start:
            row.prev_hash, row.hash = prev, digest(prev, row)
            await execute(sessions, "UPDATE audit_events SET prev_hash = :p, hash = :h WHERE seq = :s",
                          p=row.prev_hash, h=row.hash, s=row.seq)
        prev = row.hash
    await execute(sessions, "UPDATE audit_head SET seq = :s, hash = :h WHERE id = 1", s=chain[-1].seq, h=prev)
