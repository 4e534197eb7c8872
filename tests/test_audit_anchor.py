"""`ticketbot audit anchor` prints the chain's head (seq, hash, time) for an operator to keep elsewhere;
`ticketbot audit verify --anchor FILE` fails when the chain no longer reaches it — which catches what
the database alone cannot tell: a rollback to an earlier state, a wipe of everything."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from aiohttp.test_utils import TestClient

from core.service import SYSTEM_ACTOR
from tests.audit_support import cli_env, execute, head_row, make_history, rows, ticketbot
from tests.conftest import runtime_of


async def append_events(client: TestClient, count: int) -> None:
    """More events, written by the service's own unit of work (none of them creates a ticket)."""
    rt = runtime_of(client)
    async with rt.uow() as uow:
        for n in range(count):
            await uow.append_audit(kind="test_event", actor_id=SYSTEM_ACTOR.id, at=rt.clock.now(),
                                   payload={"n": n}, ticket_number=None)
        await uow.commit()


async def take_anchor(env: dict[str, str], path: Path) -> dict[str, object]:
    done = await ticketbot(env, "audit", "anchor")
    assert done.returncode == 0, done.stdout + done.stderr
    anchor = json.loads(done.stdout)
    path.write_text(done.stdout, encoding="utf-8")
    return anchor


async def test_anchor_round_trip(app_client: TestClient, database_url: str, tmp_path: Path) -> None:
    await make_history(app_client)
    env = cli_env(database_url, tmp_path / "data")
    sessions = runtime_of(app_client).sessions
    chain = await rows(sessions)
    anchor_file = tmp_path / "anchor.json"
    anchor = await take_anchor(env, anchor_file)
    assert set(anchor) == {"seq", "hash", "time"}
    assert anchor["seq"] == chain[-1].seq and anchor["hash"] == chain[-1].hash
    assert datetime.fromisoformat(str(anchor["time"])) == chain[-1].at

    ok = await ticketbot(env, "audit", "verify", "--anchor", str(anchor_file))
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stdout + ok.stderr
    await append_events(app_client, 3)  # the chain grows past the anchor and still reaches it
    ok = await ticketbot(env, "audit", "verify", "--anchor", str(anchor_file))
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stdout + ok.stderr


async def test_a_rollback_to_an_earlier_head_fails_the_anchor(app_client: TestClient, database_url: str,
                                                              tmp_path: Path) -> None:
    """The strongest truncation: the attacker kept a copy of an earlier head row (a backup) and puts
    it back after deleting what came later. The database is then self-consistent; the anchor is not."""
    await make_history(app_client)
    sessions = runtime_of(app_client).sessions
    earlier = await head_row(sessions)
    assert earlier is not None
    await append_events(app_client, 4)
    env = cli_env(database_url, tmp_path / "data")
    anchor = await take_anchor(env, tmp_path / "anchor.json")
    assert anchor["seq"] == earlier["seq"] + 4

    await execute(sessions, "DELETE FROM audit_events WHERE seq > :s", s=earlier["seq"])
    await execute(sessions, "DELETE FROM audit_head")
    columns = ", ".join(earlier)
    await execute(sessions, f"INSERT INTO audit_head ({columns}) VALUES ({', '.join(':' + c for c in earlier)})",
                  **earlier)
    failed = await ticketbot(env, "audit", "verify", "--anchor", str(tmp_path / "anchor.json"))
    assert failed.returncode == 1 and "BROKEN" in failed.stdout, failed.stdout + failed.stderr
    assert f"#{anchor['seq']}" in failed.stdout  # says which anchored event the chain no longer reaches


async def test_a_rewritten_anchored_event_fails_the_anchor(app_client: TestClient, database_url: str,
                                                           tmp_path: Path) -> None:
    await make_history(app_client)
    env = cli_env(database_url, tmp_path / "data")
    anchor = await take_anchor(env, tmp_path / "anchor.json")
    # Not a valid chain any more either, but the anchor's own reason must be among the reasons.
    await execute(runtime_of(app_client).sessions, "UPDATE audit_events SET hash = :h WHERE seq = :s",
                  h="f" * 64, s=anchor["seq"])
    failed = await ticketbot(env, "audit", "verify", "--anchor", str(tmp_path / "anchor.json"))
    assert failed.returncode == 1 and "锚点" in failed.stdout, failed.stdout + failed.stderr


async def test_a_wipe_of_everything_fails_the_anchor(app_client: TestClient, database_url: str,
                                                     tmp_path: Path) -> None:
    """Audit rows, head and tickets all gone: the database looks new, only the anchor knows better."""
    await make_history(app_client)
    env = cli_env(database_url, tmp_path / "data")
    anchor = await take_anchor(env, tmp_path / "anchor.json")
    sessions = runtime_of(app_client).sessions
    for table in ("audit_events", "audit_head", "timers", "cards", "outbox", "photos", "tickets"):
        await execute(sessions, f"DELETE FROM {table}")
    failed = await ticketbot(env, "audit", "verify", "--anchor", str(tmp_path / "anchor.json"))
    assert failed.returncode == 1 and "BROKEN" in failed.stdout and f"#{anchor['seq']}" in failed.stdout, \
        failed.stdout + failed.stderr


async def test_no_anchor_is_issued_for_a_broken_chain(app_client: TestClient, database_url: str,
                                                      tmp_path: Path) -> None:
    await make_history(app_client)
    await execute(runtime_of(app_client).sessions, "UPDATE audit_events SET actor_id = 'x' WHERE seq = 1")
    done = await ticketbot(cli_env(database_url, tmp_path / "data"), "audit", "anchor")
    assert done.returncode == 1 and done.stdout == "" and "#1" in done.stderr, done.stdout + done.stderr


async def test_an_unreadable_anchor_file_is_a_usage_error(app_client: TestClient, database_url: str,
                                                          tmp_path: Path) -> None:
    await make_history(app_client)
    env = cli_env(database_url, tmp_path / "data")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    for path in (tmp_path / "bad.json", tmp_path / "missing.json"):
        done = await ticketbot(env, "audit", "verify", "--anchor", str(path))
        assert done.returncode == 2 and str(path) in done.stderr, done.stdout + done.stderr
