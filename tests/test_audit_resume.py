"""`ticketbot audit verify` at a million tickets (issue 24): the chain is read in bounded batches, a run
can resume from a checkpoint (`--resume FILE`), and the faster encoding used to check most events
never decides a mismatch on its own. Real app, real CLI, both engines."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
from aiohttp.test_utils import TestClient

from core.audit.chain import Checkpoint
from core.service import SYSTEM_ACTOR
from storage.audit_keys import audit_key_for
from storage.audit_verify import check_audit
from tests.audit_support import cli_env, execute, make_history, rows, ticketbot
from tests.conftest import runtime_of
from tests.test_audit_anchor import append_events


async def test_batches_and_checkpoints_give_the_same_verdict(app_client: TestClient) -> None:
    await make_history(app_client)
    await append_events(app_client, 10)
    sessions = runtime_of(app_client).sessions
    total = len(await rows(sessions))
    whole = await check_audit(sessions)
    saved: list[Checkpoint] = []
    batched = await check_audit(sessions, batch=3, on_checkpoint=saved.append, checkpoint_every=4)
    assert whole.ok and batched.ok and whole.count == batched.count == total
    assert batched.last is not None and whole.last is not None and batched.last.hash == whole.last.hash
    assert len(saved) >= 3 and saved[-1].seq == total  # along the way, and at the end of a clean run
    assert [c.seq for c in saved] == sorted(c.seq for c in saved)

    middle = saved[0]
    resumed = await check_audit(sessions, resume=middle, batch=3)
    assert resumed.ok and resumed.count == total

    # An edit in a later batch is found, and a checkpoint is never written past a problem.
    await execute(sessions, "UPDATE audit_events SET actor_id = 'someone-else' WHERE seq = :s", s=total - 1)
    saved.clear()
    broken = await check_audit(sessions, batch=3, on_checkpoint=saved.append, checkpoint_every=1)
    assert not broken.ok and [p.seq for p in broken.problems] == [total - 1]
    assert saved and all(c.seq < total - 1 for c in saved)
    again = await check_audit(sessions, resume=saved[-1], batch=3)
    assert [p.seq for p in again.problems] == [total - 1]


async def test_an_event_the_fast_encoding_writes_differently_still_verifies(app_client: TestClient) -> None:
    """Floats such as 1e16 and some characters are written differently by orjson and by the chain's
    canonical JSON: the faster check misses, and the exact one must then pass the event."""
    payload = {"big": 1e16, "small": 1.5e-7, "line": "a\u2028b", "tab": "\t"}
    assert orjson.dumps(payload, option=orjson.OPT_SORT_KEYS).decode() != json.dumps(
        payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    rt = runtime_of(app_client)
    async with rt.uow() as uow:
        await uow.append_audit(kind="test_event", actor_id=SYSTEM_ACTOR.id, at=rt.clock.now(), payload=payload,
                               ticket_number=None)
        await uow.commit()
    report = await check_audit(rt.sessions, batch=2)
    assert report.ok, report.problems
    await execute(rt.sessions, "UPDATE audit_events SET payload = :p WHERE kind = 'test_event'",
                  p=json.dumps({**payload, "big": 2e16}))
    assert [p.reason for p in (await check_audit(rt.sessions)).problems if "内容哈希" in p.reason]


async def test_resume_from_a_checkpoint_file(app_client: TestClient, database_url: str, tmp_path: Path) -> None:
    await make_history(app_client)
    env = cli_env(database_url, tmp_path / "data")
    checkpoint = tmp_path / "audit.checkpoint"
    first = await ticketbot(env, "audit", "verify", "--resume", str(checkpoint))
    assert first.returncode == 0 and "OK" in first.stdout, first.stdout + first.stderr
    sessions = runtime_of(app_client).sessions
    chain = await rows(sessions)
    saved = json.loads(checkpoint.read_text(encoding="utf-8"))
    assert saved["seq"] == chain[-1].seq and saved["hash"] == chain[-1].hash and saved["mac"]

    await append_events(app_client, 3)  # the next run checks only these, and moves the checkpoint on
    second = await ticketbot(env, "audit", "verify", "--resume", str(checkpoint))
    assert second.returncode == 0 and f"{len(chain) + 3} events" in second.stdout, second.stdout + second.stderr
    assert json.loads(checkpoint.read_text(encoding="utf-8"))["seq"] == chain[-1].seq + 3

    # A tampered event after the checkpoint is found by a resumed run.
    await append_events(app_client, 2)
    await execute(sessions, "UPDATE audit_events SET actor_id = 'x' WHERE seq = :s", s=chain[-1].seq + 4)
    broken = await ticketbot(env, "audit", "verify", "--resume", str(checkpoint))
    assert broken.returncode == 1 and f"#{chain[-1].seq + 4}" in broken.stdout, broken.stdout + broken.stderr
    assert json.loads(checkpoint.read_text(encoding="utf-8"))["seq"] == chain[-1].seq + 3  # not moved past it


async def test_a_rewritten_checkpointed_event_is_found(app_client: TestClient, database_url: str,
                                                       tmp_path: Path) -> None:
    await make_history(app_client)
    env = cli_env(database_url, tmp_path / "data")
    checkpoint = tmp_path / "audit.checkpoint"
    assert (await ticketbot(env, "audit", "verify", "--resume", str(checkpoint))).returncode == 0
    seq = json.loads(checkpoint.read_text(encoding="utf-8"))["seq"]
    await execute(runtime_of(app_client).sessions, "UPDATE audit_events SET hash = :h WHERE seq = :s",
                  h="f" * 64, s=seq)
    done = await ticketbot(env, "audit", "verify", "--resume", str(checkpoint))
    assert done.returncode == 1 and "检查点" in done.stdout and f"#{seq}" in done.stdout, done.stdout + done.stderr


async def test_a_forged_or_unreadable_checkpoint_is_refused(app_client: TestClient, database_url: str,
                                                            tmp_path: Path) -> None:
    """A checkpoint that skips the tampered part would hide it: without the key nobody can write one."""
    await make_history(app_client)
    env = cli_env(database_url, tmp_path / "data")
    checkpoint = tmp_path / "audit.checkpoint"
    assert (await ticketbot(env, "audit", "verify", "--resume", str(checkpoint))).returncode == 0
    chain = await rows(runtime_of(app_client).sessions)
    forged = json.loads(checkpoint.read_text(encoding="utf-8"))
    forged.update(seq=chain[-2].seq, hash=chain[-2].hash)  # the MAC is the old one
    checkpoint.write_text(json.dumps(forged), encoding="utf-8")
    done = await ticketbot(env, "audit", "verify", "--resume", str(checkpoint))
    assert done.returncode == 2 and "MAC" in done.stderr and str(checkpoint) in done.stderr, done.stdout + done.stderr
    checkpoint.write_text("{not json", encoding="utf-8")
    done = await ticketbot(env, "audit", "verify", "--resume", str(checkpoint))
    assert done.returncode == 2 and str(checkpoint) in done.stderr, done.stdout + done.stderr
    # A checkpoint written under the key is accepted (the key the CLI and the app share).
    key = audit_key_for(runtime_of(app_client).engine)
    good = Checkpoint(chain[-2].seq, chain[-2].hash, len(chain) - 1, 0, None, chain[-2].at)
    checkpoint.write_text(good.to_json(key), encoding="utf-8")
    done = await ticketbot(env, "audit", "verify", "--resume", str(checkpoint))
    assert done.returncode == 0 and f"{len(chain)} events" in done.stdout, done.stdout + done.stderr


def test_the_stored_time_text_gives_the_hashed_time() -> None:
    """The fast check reads `at` from SQLite's text as `at.isoformat()` of the stored value would be
    (storage/types.py): a zero fraction is left out, anything else goes to the exact path."""
    from datetime import UTC, datetime

    from storage.audit_verify import _sqlite_at

    for stored in ("2026-11-22 03:04:05.000600", "2026-11-22 03:04:05.000000", "2026-11-22 23:59:59.999999"):
        expected = datetime.fromisoformat(stored).replace(tzinfo=UTC).isoformat()
        assert _sqlite_at((1, "k", "a", stored, None, "{}", "", ""))[0] == expected
    assert _sqlite_at((1, "k", "a", "2026-11-22T03:04:05", None, "{}", "", ""))[0] is None


async def test_a_check_does_not_hold_the_write_lock(sqlite_url: str, tmp_path: Path) -> None:
    """A check of a long chain takes a minute: the service must keep writing meanwhile (its
    transactions begin with BEGIN IMMEDIATE, which a checking transaction holding the lock would stop)."""
    import sqlite3

    from aiohttp.test_utils import TestServer

    from bot.web.app import build_app
    from tests.conftest import make_settings

    async with TestClient(TestServer(build_app(make_settings(sqlite_url, tmp_path)))) as client:
        await make_history(client)
        await append_events(client, 6)
        sessions = runtime_of(client).sessions
        path = sqlite_url.removeprefix("sqlite:///")
        written: list[int] = []

        def write_meanwhile(_checkpoint: Checkpoint) -> None:
            other = sqlite3.connect(path, isolation_level=None, timeout=0)  # no waiting for a lock
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("UPDATE audit_head SET id = id WHERE id = 1")
                other.execute("COMMIT")
                written.append(1)
            finally:
                other.close()

        report = await check_audit(sessions, batch=2, checkpoint_every=2, on_checkpoint=write_meanwhile)
        assert report.ok and len(written) >= 3
