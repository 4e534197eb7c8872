"""`ticketbot audit verify` detects every tampering an attacker with write access to the database but
without the audit key can do: edit, delete, reorder, truncate (delete the last events and move the
head back), wipe, and re-hash (plain SHA-256, or an HMAC with a wrong key). Real app, real CLI."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient
from sqlalchemy import insert, select

from storage.tables import TicketRow
from tests.audit_support import (
    cli_env,
    execute,
    head_row,
    hmac_with,
    make_history,
    plain_sha256,
    rehash,
    rows,
    ticketbot,
)
from tests.conftest import runtime_of


async def verify(client: TestClient, database_url: str, tmp_path: Path) -> tuple[int, str]:
    done = await ticketbot(cli_env(database_url, tmp_path / "data"), "audit", "verify")
    return done.returncode, done.stdout + done.stderr


async def test_the_untouched_chain_verifies(app_client: TestClient, database_url: str, tmp_path: Path) -> None:
    await make_history(app_client)
    code, out = await verify(app_client, database_url, tmp_path)
    assert code == 0 and "OK" in out, out


async def test_an_edited_row_is_detected(app_client: TestClient, database_url: str, tmp_path: Path) -> None:
    await make_history(app_client)
    sessions = runtime_of(app_client).sessions
    await execute(sessions, "UPDATE audit_events SET actor_id = 'someone-else' WHERE seq = 2")
    code, out = await verify(app_client, database_url, tmp_path)
    assert code == 1 and "BROKEN" in out and "#2" in out, out


async def test_a_deleted_row_is_detected(app_client: TestClient, database_url: str, tmp_path: Path) -> None:
    await make_history(app_client)
    await execute(runtime_of(app_client).sessions, "DELETE FROM audit_events WHERE seq = 2")
    code, out = await verify(app_client, database_url, tmp_path)
    assert code == 1 and "BROKEN" in out, out


async def test_reordered_rows_are_detected(app_client: TestClient, database_url: str, tmp_path: Path) -> None:
    await make_history(app_client)
    sessions = runtime_of(app_client).sessions
    # Events 2 and 3 swap places, each keeping its own links and hash.
    await execute(sessions, "UPDATE audit_events SET seq = -2 WHERE seq = 2")
    await execute(sessions, "UPDATE audit_events SET seq = 2 WHERE seq = 3")
    await execute(sessions, "UPDATE audit_events SET seq = 3 WHERE seq = -2")
    code, out = await verify(app_client, database_url, tmp_path)
    assert code == 1 and "BROKEN" in out, out


async def test_truncation_with_the_head_moved_back_is_detected(app_client: TestClient, database_url: str,
                                                                tmp_path: Path) -> None:
    await make_history(app_client)
    sessions = runtime_of(app_client).sessions
    chain = await rows(sessions)
    keep = chain[-4]  # the last three events go
    await execute(sessions, "DELETE FROM audit_events WHERE seq > :s", s=keep.seq)
    await execute(sessions, "UPDATE audit_head SET seq = :s, hash = :h WHERE id = 1", s=keep.seq, h=keep.hash)
    code, out = await verify(app_client, database_url, tmp_path)
    assert code == 1 and "BROKEN" in out, out


async def test_a_wipe_is_detected(app_client: TestClient, database_url: str, tmp_path: Path) -> None:
    numbers = await make_history(app_client)
    sessions = runtime_of(app_client).sessions
    await execute(sessions, "DELETE FROM audit_events")
    code, out = await verify(app_client, database_url, tmp_path)  # the head row still says otherwise
    assert code == 1 and "BROKEN" in out, out
    await execute(sessions, "DELETE FROM audit_head")
    code, out = await verify(app_client, database_url, tmp_path)  # the tickets have no creation event
    assert code == 1 and "BROKEN" in out and all(number in out for number in numbers), out


async def test_a_ticket_without_its_creation_event_is_detected(app_client: TestClient, database_url: str,
                                                                tmp_path: Path) -> None:
    """A ticket row inserted behind the service's back has no `ticket_created` event."""
    await make_history(app_client)
    sessions = runtime_of(app_client).sessions
    async with sessions() as session, session.begin():
        # A copy of a real ticket under a new number, whatever columns the table has.
        original = (await session.execute(select(TicketRow).order_by(TicketRow.id))).scalars().first()  # type: ignore[arg-type]
        assert original is not None
        values = {c.name: getattr(original, c.name) for c in TicketRow.__table__.columns if c.name != "id"}
        await session.execute(insert(TicketRow).values(**{**values, "number": "FORGED-1"}))
    code, out = await verify(app_client, database_url, tmp_path)
    assert code == 1 and "FORGED-1" in out, out


async def test_an_edit_re_hashed_with_plain_sha256_is_detected(app_client: TestClient, database_url: str,
                                                               tmp_path: Path) -> None:
    await make_history(app_client)
    sessions = runtime_of(app_client).sessions
    await execute(sessions, "UPDATE audit_events SET actor_id = 'someone-else' WHERE seq = 2")
    await rehash(sessions, 2, plain_sha256)
    code, out = await verify(app_client, database_url, tmp_path)
    assert code == 1 and "BROKEN" in out, out


async def test_a_whole_chain_re_hashed_without_the_key_is_detected(app_client: TestClient, database_url: str,
                                                                   tmp_path: Path) -> None:
    """Everything recomputed with plain SHA-256 and the head's key-dependent part removed: it looks
    like a chain from before keys, which proves nothing and must not pass."""
    await make_history(app_client)
    sessions = runtime_of(app_client).sessions
    await execute(sessions, "UPDATE audit_events SET actor_id = 'someone-else' WHERE seq = 1")
    await rehash(sessions, 1, plain_sha256)
    head = await head_row(sessions)
    assert head is not None
    for column in set(head) - {"id", "seq", "hash"}:
        await execute(sessions, f"UPDATE audit_head SET {column} = NULL WHERE id = 1")
    code, out = await verify(app_client, database_url, tmp_path)
    assert code == 1 and "BROKEN" in out, out


async def test_an_edit_re_hashed_with_a_wrong_key_is_detected(app_client: TestClient, database_url: str,
                                                              tmp_path: Path) -> None:
    await make_history(app_client)
    sessions = runtime_of(app_client).sessions
    await execute(sessions, "UPDATE audit_events SET actor_id = 'someone-else' WHERE seq = 2")
    await rehash(sessions, 2, hmac_with(b"not-the-key-" * 4))
    code, out = await verify(app_client, database_url, tmp_path)
    assert code == 1 and "BROKEN" in out, out


async def test_a_dropped_audit_table_cannot_be_checked(tmp_path: Path) -> None:
    """Exit 2 with the reason, not a traceback (SQLite only: the PostgreSQL test database is shared)."""
    import sqlite3

    env = cli_env(f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "data")
    assert (await ticketbot(env, "db", "upgrade")).returncode == 0
    db = sqlite3.connect(tmp_path / "a.db")
    db.execute("DROP TABLE audit_events")
    db.commit()
    db.close()
    done = await ticketbot(env, "audit", "verify")
    assert done.returncode == 2 and "cannot read the audit trail" in done.stderr, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
