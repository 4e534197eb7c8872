"""The SQLite write-ahead log is checkpointed by a background thread, not inside commits on the loop."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text

from bot.web.app import build_app
from storage.sqlite.wal_checkpoint import INLINE_CHECKPOINT_PAGES, WalCheckpointer
from tests.conftest import make_settings, runtime_of


def _wal_frames(path: Path) -> int:
    """Frames in the log: the WAL header is 32 bytes, each frame 24 + 4096 (the default page size)."""
    wal = Path(f"{path}-wal")
    return max(0, (wal.stat().st_size - 32) // (24 + 4096)) if wal.exists() else 0


async def test_a_passive_checkpoint_copies_the_log_and_writers_then_reuse_it(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # only our checkpointer copies the log back
    writer.execute("CREATE TABLE t (x BLOB)")
    checkpointer = WalCheckpointer(path)
    try:
        for _ in range(50):
            writer.execute("INSERT INTO t VALUES (randomblob(3000))")
        busy, frames, copied = await checkpointer.checkpoint()
        assert (busy, copied) == (0, frames) and frames >= 50
        size_after_first_round = _wal_frames(path)
        for _ in range(3):  # each round restarts the log from its beginning instead of appending
            for _ in range(50):
                writer.execute("INSERT INTO t VALUES (randomblob(3000))")
            assert (await checkpointer.checkpoint())[0] == 0
        assert _wal_frames(path) <= size_after_first_round + 5
        # Everything reached the database file: a reader that ignores the log would see it all.
        assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == 200
    finally:
        checkpointer.close()
        writer.close()


async def test_the_service_checkpoints_in_the_background(tmp_path: Path) -> None:
    database = tmp_path / "svc.db"
    app = build_app(make_settings(f"sqlite:///{database}", tmp_path))
    async with TestClient(TestServer(app)) as client:
        runtime = runtime_of(client)
        assert runtime.checkpointer is not None
        async with runtime.engine.connect() as conn:  # commits do not checkpoint at SQLite's 1000 pages
            assert (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar_one() == INLINE_CHECKPOINT_PAGES
        before = runtime.checkpointer.checkpoints
        for i in range(30):  # a few MB of log: below MIN_LOG_BYTES the thread does not bother
            resp = await client.post("/playground/api/messages", json={"user": f"wal-{i}", "text": "底盘有异响"})
            assert resp.status == 200
        for _ in range(40):  # the loop looks four times a second
            await asyncio.sleep(0.1)
            if runtime.checkpointer.checkpoints > before:
                break
        assert runtime.checkpointer.checkpoints > before
        # The background thread keeps up: after its checkpoint nothing is left to copy.
        busy, frames, copied = await runtime.checkpointer.checkpoint()
        assert busy == 0 and copied == frames


async def test_closing_while_a_checkpoint_runs_waits_for_it(tmp_path: Path) -> None:
    """Runtime.stop() cancels the loop, whose thread may still be checkpointing, then closes."""
    path = tmp_path / "c.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (x BLOB)")
    try:
        for _ in range(3):
            writer.execute("BEGIN")
            for _ in range(2000):  # ~8 MB of log: the checkpoint takes a while to copy it
                writer.execute("INSERT INTO t VALUES (randomblob(4000))")
            writer.execute("COMMIT")
            checkpointer = WalCheckpointer(path)
            running = asyncio.ensure_future(checkpointer.checkpoint())
            await asyncio.sleep(0.001)  # let the thread start copying
            running.cancel()  # what stop() does to the loop's task; the thread goes on
            checkpointer.close()  # waits for the thread (used to crash the interpreter here)
            assert await checkpointer.checkpoint() == (0, 0, 0)  # after close(): nothing, no new connection
    finally:
        writer.close()


def _frames_in_use(path: Path) -> int:
    """mxFrame of the WAL index header (the -shm file): frames in use now, whatever the file's size."""
    import struct

    with open(f"{path}-shm", "rb") as shm:
        return int(struct.unpack("<I", shm.read(48)[16:20])[0])


async def test_under_steady_writes_the_log_is_rewound(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A checkpoint beside a steady writer never leaves every frame copied when a transaction
    begins, so SQLite never starts the log over; the pass made with our writes paused does."""
    import storage.sqlite.wal_checkpoint as wal_checkpoint
    from storage.database import create_engine, session_factory

    monkeypatch.setattr(wal_checkpoint, "REWIND_FRAMES", 300)
    monkeypatch.setattr(wal_checkpoint, "MIN_LOG_BYTES", 0)
    path = tmp_path / "steady.db"
    engine = create_engine(f"sqlite:///{path}", inline_checkpoint_pages=0)  # no inline safety net here
    sessions = session_factory(engine)
    async with sessions.transaction() as conn:
        await conn.execute(text("CREATE TABLE t (x BLOB)"))
    checkpointer = WalCheckpointer(path, every_s=0.02, pause=lambda: engine.connect())
    loop = asyncio.get_running_loop()
    task = loop.create_task(checkpointer.run_forever())
    most = 0
    try:
        deadline = loop.time() + 2.0
        while loop.time() < deadline:  # back-to-back transactions, as under load
            async with sessions.transaction() as conn:
                await conn.execute(text("INSERT INTO t VALUES (randomblob(2000))"))
            most = max(most, _frames_in_use(path))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        checkpointer.close()
        await engine.dispose()
    assert checkpointer.rewinds >= 2
    assert most < 3_000, f"the log grew to {most} frames"
