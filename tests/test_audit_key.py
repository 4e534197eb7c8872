"""The audit key (`AUDIT_KEY`, or DATA_DIR/audit.key generated on first start): one key for every
process, never logged; and a chain written before keys existed is sealed, not trusted blindly."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import insert

from bot.runtime import Runtime
from bot.settings import Settings
from bot.web.app import build_app
from core.service import SYSTEM_ACTOR
from storage.database import Sessions, create_engine, session_factory
from storage.migrate import upgrade
from storage.tables import AuditEventRow
from tests.audit_support import (
    GENESIS,
    Row,
    cli_env,
    execute,
    make_history,
    material,
    plain_sha256,
    rehash,
    rows,
    ticketbot,
)
from tests.conftest import create_postgres_database, drop_postgres_database, make_settings, runtime_of

# --- a fresh, empty database (SQLite, then PostgreSQL), for migrations from an old schema ---

@pytest.fixture(params=["sqlite", "postgres"])
async def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    url = await create_postgres_database("ticketbot_i19")
    try:
        yield url
    finally:
        await drop_postgres_database(url)


KEY = "k3y-" + "0123456789abcdef" * 3  # 52 characters


async def test_the_key_is_generated_once_into_the_data_folder_and_never_logged(
        database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(database_url, tmp_path)
    key_file = settings.data_dir / "audit.key"
    assert not key_file.exists()
    async with TestClient(TestServer(build_app(settings))) as client:
        await make_history(client)
    key = key_file.read_text(encoding="utf-8").strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key) >= 32
    # A restart uses the same key: what the first run wrote still verifies after the second wrote more.
    async with TestClient(TestServer(build_app(settings))) as client:
        await make_history(client)
    assert key_file.read_text(encoding="utf-8").strip() == key
    done = await ticketbot(cli_env(database_url, settings.data_dir), "-v", "audit", "verify")
    assert done.returncode == 0 and "OK" in done.stdout, done.stdout + done.stderr
    assert key not in caplog.text and key not in done.stdout + done.stderr
    assert KEY not in repr(Settings(_env_file=None, audit_key=KEY))  # type: ignore[call-arg]


async def test_an_explicit_audit_key_is_used_and_a_different_one_fails(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, audit_key=KEY)
    async with TestClient(TestServer(build_app(settings))) as client:
        await make_history(client)
    assert not (settings.data_dir / "audit.key").exists()
    same = await ticketbot(cli_env(database_url, settings.data_dir, AUDIT_KEY=KEY), "audit", "verify")
    assert same.returncode == 0, same.stdout + same.stderr
    other = await ticketbot(cli_env(database_url, settings.data_dir, AUDIT_KEY=KEY[::-1]), "audit", "verify")
    assert other.returncode == 1 and "BROKEN" in other.stdout and "AUDIT_KEY" in other.stdout, other.stdout
    # Without AUDIT_KEY the CLI would use (and create) DATA_DIR/audit.key: another key, so it fails too.
    generated = await ticketbot(cli_env(database_url, settings.data_dir), "audit", "verify")
    assert generated.returncode == 1, generated.stdout


async def test_a_short_audit_key_is_refused(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'a.db'}", tmp_path, audit_key="tiny-key-x")
    with pytest.raises(ValueError, match="AUDIT_KEY") as refused:
        Runtime(settings)
    assert "tiny-key-x" not in str(refused.value)
    done = await ticketbot(cli_env(f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "data", AUDIT_KEY="tiny-key-x"),
                           "audit", "verify")
    assert done.returncode == 2 and "AUDIT_KEY" in done.stderr and "tiny-key-x" not in done.stderr, done.stderr


async def test_serve_worker_and_cli_write_one_chain(database_url: str, tmp_path: Path, redis_url: str) -> None:
    """Each process kind appends with the key from the same settings: the web runtime (a report), the
    arq worker (a fired timer), the CLI (`import technicians`); the chain verifies as one."""
    from tests.sla_support import ScheduleProbe, probe_hits
    from tests.test_arq_worker import run_burst

    settings = make_settings(database_url, tmp_path, redis_url=redis_url)
    async with TestClient(TestServer(build_app(settings, runtime=Runtime(settings)))) as client:
        rt = runtime_of(client)
        await make_history(client)
        await rt.service.handle(ScheduleProbe("P-key", rt.clock.now() + timedelta(milliseconds=100)), SYSTEM_ACTOR)
        await asyncio.sleep(0.2)
        await run_burst(rt.settings)
        assert await probe_hits(rt) == ["P-key"]  # written by the worker
    roster = tmp_path / "roster.csv"
    roster.write_text("工号,姓名,门店\nT-KEY,钥师傅,S01\n", encoding="utf-8")
    env = cli_env(database_url, settings.data_dir)
    imported = await ticketbot(env, "import", "technicians", str(roster))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    engine = create_engine(database_url)
    try:
        kinds = {r.kind for r in await rows(session_factory(engine))}
    finally:
        await engine.dispose()
    assert {"ticket_created", "probe_fired", "technicians_imported"} <= kinds
    done = await ticketbot(env, "audit", "verify")
    assert done.returncode == 0 and "OK" in done.stdout, done.stdout + done.stderr


# --- a chain written before keys existed ---

def legacy_rows(count: int) -> list[Row]:
    """Events as the version before keyed chains wrote them: plain SHA-256 links."""
    at = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    chain, prev = [], GENESIS
    for seq in range(1, count + 1):
        row = Row(seq, "legacy_event", "system", at + timedelta(minutes=seq), None, {"n": seq, "文字": "旧"}, prev, "")
        row.hash = hashlib.sha256(material(prev, row)).hexdigest()
        chain.append(row)
        prev = row.hash
    return chain


async def write_legacy(sessions: Sessions, chain: list[Row]) -> None:
    """The rows and the head row (without any key-dependent column: schema 0001)."""
    async with sessions() as session, session.begin():
        await session.execute(insert(AuditEventRow.__table__), [  # type: ignore[attr-defined]
            {"seq": r.seq, "ticket_number": None, "actor_id": r.actor_id, "at": r.at, "kind": r.kind,
             "payload": r.payload, "prev_hash": r.prev_hash, "hash": r.hash} for r in chain])
    await execute(sessions, "INSERT INTO audit_head (id, seq, hash) VALUES (1, :s, :h)", s=chain[-1].seq,
                  h=chain[-1].hash)


async def test_a_chain_from_before_keys_is_sealed_at_the_first_start(empty_database_url: str,
                                                                     tmp_path: Path) -> None:
    url = empty_database_url
    await asyncio.to_thread(upgrade, url, "0001")  # the schema of the version before keys
    engine = create_engine(url)
    sessions = session_factory(engine)
    try:
        chain = legacy_rows(5)
        await write_legacy(sessions, chain)
        stored = await rows(sessions)
        assert [plain_sha256(r.prev_hash, r) for r in stored] == [r.hash for r in stored]  # as the old code made

        settings = make_settings(url, tmp_path)
        env = cli_env(url, settings.data_dir)
        async with TestClient(TestServer(build_app(settings))) as client:  # migrates, then seals
            sealed = await ticketbot(env, "audit", "verify")
            assert sealed.returncode == 0 and "OK" in sealed.stdout, sealed.stdout + sealed.stderr
            await make_history(client)
        done = await ticketbot(env, "audit", "verify")
        assert done.returncode == 0 and "OK" in done.stdout, done.stdout + done.stderr
        after = await rows(sessions)
        assert [(r.seq, r.hash) for r in after[:5]] == [(r.seq, r.hash) for r in chain]  # old rows kept as they were
        assert after[5].seq == 6 and after[5].prev_hash == chain[-1].hash

        # The sealed old rows can no longer be rewritten: re-hashing them breaks the seal.
        await execute(sessions, "UPDATE audit_events SET actor_id = 'someone-else' WHERE seq = 2")
        await rehash(sessions, 2, plain_sha256)
        tampered = await ticketbot(env, "audit", "verify")
        assert tampered.returncode == 1 and "BROKEN" in tampered.stdout, tampered.stdout
    finally:
        await engine.dispose()


async def test_an_unsealed_chain_from_before_keys_does_not_verify(empty_database_url: str, tmp_path: Path) -> None:
    """Migrated but never started: nothing vouches for plain SHA-256 links, so verify says so."""
    url = empty_database_url
    await asyncio.to_thread(upgrade, url, "0001")
    engine = create_engine(url)
    sessions = session_factory(engine)
    try:
        chain = legacy_rows(3)
        await write_legacy(sessions, chain)
    finally:
        await engine.dispose()
    env = cli_env(url, tmp_path / "data")
    assert (await ticketbot(env, "db", "upgrade")).returncode == 0
    done = await ticketbot(env, "audit", "verify")
    assert done.returncode == 1 and "AUDIT_KEY" in done.stdout, done.stdout + done.stderr


def test_a_mac_is_hmac_sha256_under_the_key_and_the_key_travels_to_a_worker_process() -> None:
    """AuditKey sets the key up once and copies it per message (core/audit/chain.py): the MACs are
    RFC 2104's, message after message, and a pickled key (a process pool job) gives the same."""
    import hmac
    import pickle

    from core.audit.chain import AuditKey

    secret = b"k" * 40
    key = AuditKey(secret)
    for text in ("", "底盘有异响", '{"seq":1}', "x" * 5000):
        assert key.mac(text) == hmac.digest(secret, text.encode(), "sha256").hex()
        assert key.mac_bytes(text.encode()) == key.mac(text)
    travelled = pickle.loads(pickle.dumps(key))
    assert travelled == key and travelled.mac("底盘有异响") == key.mac("底盘有异响")
    assert repr(travelled) == "AuditKey(***)"
    assert AuditKey(b"j" * 40).mac("a") != key.mac("a")
