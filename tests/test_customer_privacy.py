"""Personal data (PIPL): `ticketbot customer forget ID` and the retention purge of closed tickets
(core/masterdata/privacy.py, bot/cli/customers.py, bot/jobs/privacy.py). The audit trail is never
rewritten, so `ticketbot audit verify` still passes after a forget."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.jobs.privacy import WATERMARK_KIND, RetentionPurge
from bot.web.app import build_app
from core.masterdata.model import FORGOTTEN_NAME
from core.masterdata.prefill import PENDING_KIND, pending_key
from tests.audit_support import cli_env, ticketbot
from tests.conftest import make_settings, runtime_of
from tests.playground_client import PlaygroundUser
from tests.test_intake_prefill import locate, seed, ticket_of


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ticketbot.db'}"


@pytest.fixture
async def client(db_url: str, tmp_path: Path) -> Any:
    async with TestClient(TestServer(build_app(make_settings(db_url, tmp_path)))) as c:
        yield c


async def test_forget_erases_the_customer_and_keeps_the_chain_verifiable(client: TestClient, db_url: str,
                                                                        tmp_path: Path) -> None:
    await seed(client)
    customer = PlaygroundUser(client, "C001")
    await customer.say("空调 KFR35GW-N8HR3 不制冷，回电 13812345678")
    ticket = await ticket_of(client, customer)
    assert await locate(client, "C001", 31.3, 121.3) == 200
    env = cli_env(db_url, tmp_path / "data")

    done = await ticketbot(env, "customer", "forget", "C001")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout) == {"customer": "C001", "forgotten": True, "tickets": 1}

    rt = runtime_of(client)
    async with rt.uow() as uow:
        record = await uow.masterdata().get_customer("C001")
        person = await uow.get_person("C001")
        scrubbed = await uow.get_ticket(ticket.number)
        pending = await uow.get_timer(PENDING_KIND, pending_key("C001"))
        events = await uow.audit_for_ticket(ticket.number)
    assert record is not None and record.name == FORGOTTEN_NAME and record.phones == () and record.addresses == ()
    assert person is not None and person.phone is None
    assert scrubbed is not None and scrubbed.site_lat is None and scrubbed.site_lng is None
    facts = scrubbed.data["masterdata"]
    assert facts["customer"] == {"id": "C001", "matched_by": "identity"} and facts["address"] is None
    assert "13812345678" not in scrubbed.description and "138****5678" in scrubbed.description
    assert scrubbed.data["privacy"]["reason"] == "forget"
    assert scrubbed.asset_id == "AC-001" and scrubbed.category  # the work itself stays
    assert pending is not None and pending.state == "cancelled" and "location" not in pending.payload
    assert events[-1].kind == "contact_data_purged"
    body = await (await client.get(f"/api/tickets/{ticket.number}")).json()
    assert body["customer"] == {"id": "C001", "name": FORGOTTEN_NAME, "phone": None}
    assert body["location"] is None

    verified = await ticketbot(env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_forget_a_chat_only_customer(client: TestClient, db_url: str, tmp_path: Path) -> None:
    """A customer with no master record (known only from the chat) can be forgotten too."""
    customer = PlaygroundUser(client, "cust-chat-only")
    await customer.say("底盘有异响")
    done = await ticketbot(cli_env(db_url, tmp_path / "data"), "customer", "forget", "cust-chat-only")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["tickets"] == 1
    async with runtime_of(client).uow() as uow:
        assert await uow.person_by_identity("local", "cust-chat-only") is None  # identities deleted


async def test_forget_an_unknown_or_staff_id_exits_1(client: TestClient, db_url: str, tmp_path: Path) -> None:
    env = cli_env(db_url, tmp_path / "data")
    for ref in ("nobody", "tech-wang"):
        done = await ticketbot(env, "customer", "forget", ref)
        assert done.returncode == 1, done.stdout + done.stderr
        body = json.loads(done.stdout)
        assert body["forgotten"] is False and f"没有编号为「{ref}」的客户" in body["error"]
    async with runtime_of(client).uow() as uow:
        tech = await uow.get_person("tech-wang")
    assert tech is not None and tech.name.endswith("王师傅")  # untouched


async def test_the_retention_purge_scrubs_only_tickets_closed_long_enough(client: TestClient) -> None:
    await seed(client)
    customer = PlaygroundUser(client, "C001")
    await customer.say("空调 KFR35GW-N8HR3 不制冷")
    cancelled = await ticket_of(client, customer)
    await customer.say(f"取消工单 {cancelled.number} 已经好了")
    await customer.say("新问题 中控黑屏")
    still_open = await ticket_of(client, customer)
    rt = runtime_of(client)
    now = rt.clock.now()

    assert await RetentionPurge(rt.sessions, rt.service, 0).maybe_run(now + timedelta(days=5000)) == 0  # 0: forever
    purge = RetentionPurge(rt.sessions, rt.service, 30)
    assert await purge.run(now + timedelta(days=29)) == 0  # not yet
    assert await purge.maybe_run(now + timedelta(days=31)) == 1
    assert await purge.maybe_run(now + timedelta(days=31, minutes=5)) == 0  # at most once an hour
    assert await RetentionPurge(rt.sessions, rt.service, 30).run(now + timedelta(days=32)) == 0  # done once
    # A restarted process starts where the last pass ended, not at the oldest ticket ever ended.
    async with rt.uow() as uow:
        stored = await uow.latest_config(WATERMARK_KIND)
    assert stored is not None and stored[1]["done_until"] == (now + timedelta(days=2)).isoformat()
    async with rt.uow() as uow:
        gone = await uow.get_ticket(cancelled.number)
        kept = await uow.get_ticket(still_open.number)
        events = await uow.audit_for_ticket(cancelled.number)
    assert gone is not None and gone.data["privacy"]["reason"] == "retention"
    assert gone.site_lat is None and "name" not in gone.data["masterdata"]["customer"]
    assert kept is not None and "privacy" not in kept.data and kept.site_lat is not None
    assert kept.data["masterdata"]["customer"]["name"] == "王女士"
    assert [e.payload for e in events if e.kind == "contact_data_purged"] == [
        {"reason": "retention", "retention_days": 30}]
