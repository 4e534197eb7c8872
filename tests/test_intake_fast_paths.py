"""Issue 20 speed: the per-ticket work master data added, cut where the answer is known without
asking (core/masterdata/prefill.py, core/intake/details.py, core/hub/api.py, bot/metrics.py).

Each shortcut must give exactly the answer of the long way: a first message (the person stored by
the running command) has no customer record and nothing waiting; a text of Chinese words only holds
no phone and no identifier; the global id is a version-4 UUID; a cached metric child is the series."""

from __future__ import annotations

import re
import sqlite3
import unicodedata
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event

from bot.metrics import INBOX, REGISTRY, count_handling, count_inbox
from core.hub.api import new_global_id
from core.masterdata.identifiers import find_identifiers
from core.masterdata.org import supervisor_chain
from core.masterdata.prefill import _WORDS_ONLY, phone_in
from core.model import Person, Role, Ticket, TicketStatus
from core.service import SYSTEM_ACTOR, Context
from tests.conftest import runtime_of
from tests.playground_client import PlaygroundUser
from tests.test_intake_prefill import HOME, locate, seed, sqlite_client, ticket_of


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    async with await sqlite_client(tmp_path) as c:
        yield c

class Statements:
    """Every SQL statement the runtime's SQLite connection runs (sqlite3's own trace callback)."""

    def __init__(self, client: TestClient) -> None:
        self.sql: list[str] = []
        engine = runtime_of(client).sessions.kw["bind"].sync_engine

        @event.listens_for(engine, "checkout")
        def _traced(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
            raw: sqlite3.Connection = dbapi_connection._connection._connection
            raw.set_trace_callback(self.sql.append)

    def reading(self, table: str) -> list[str]:
        return [s for s in self.sql if s.lstrip().upper().startswith("SELECT") and f"FROM {table}" in s]


async def test_a_first_message_asks_for_no_customer_record_and_nothing_waiting(client: TestClient) -> None:
    await PlaygroundUser(client, "cust-warm").say("你好")  # the connection is traced from its next checkout
    traced = Statements(client)
    newcomer = PlaygroundUser(client, "cust-first-fast")
    await newcomer.say("底盘有异响，开起来咣当咣当的")
    ticket = await ticket_of(client, newcomer)
    assert traced.reading("customers") == [] and not [s for s in traced.sql if "intake.pending" in s]
    assert ticket.data["masterdata"]["customer"] == {"id": "cust-first-fast", "name": ticket.data["masterdata"][
        "customer"]["name"], "phone": None, "matched_by": None}
    # Their second report is no first message: both are read again.
    traced.sql.clear()
    await newcomer.say("新问题 中控黑屏")
    assert traced.reading("customers") and [s for s in traced.sql if "intake.pending" in s]


async def test_a_first_message_with_a_phone_is_still_recognised_by_it(client: TestClient) -> None:
    await seed(client, link_identity=False)
    stranger = PlaygroundUser(client, "cust-first-phone")
    await stranger.say("空调不制冷，电话13812345678")  # digits: not words only
    ticket = await ticket_of(client, stranger)
    facts = ticket.data["masterdata"]
    assert facts["customer"]["id"] == "C001" and facts["customer"]["matched_by"] == "phone"
    assert ticket.store_id == "S09" and (ticket.site_lat, ticket.site_lng) == HOME


async def test_a_known_customer_writing_words_only_is_still_recognised(client: TestClient) -> None:
    await seed(client)  # C001's playground identity is linked: not a new person
    customer = PlaygroundUser(client, "C001")
    await customer.say("空调不制冷")
    ticket = await ticket_of(client, customer)
    assert ticket.data["masterdata"]["customer"]["matched_by"] == "identity" and ticket.store_id == "S09"


async def test_a_location_before_the_first_report_is_still_used(client: TestClient) -> None:
    # The location message is the newcomer's first command (it stores them); the report comes next.
    assert await locate(client, "cust-first-loc", 31.1705, 121.3971) == 200
    customer = PlaygroundUser(client, "cust-first-loc")
    await customer.say("底盘有异响")
    ticket = await ticket_of(client, customer)
    assert (ticket.site_lat, ticket.site_lng) == (31.1705, 121.3971)


def _words_only_characters() -> Iterator[str]:
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        if _WORDS_ONLY.fullmatch(chr(cp)):
            yield chr(cp)


def test_words_only_text_can_hold_no_phone_and_no_identifier() -> None:
    """The shortcut is exact: no character of the set becomes an ASCII letter or digit under NFKC (what
    every identifier search starts with) or is a digit to the phone pattern."""
    chars = list(_words_only_characters())
    assert "底" in chars and "，" in chars and "\u3000" in chars and " " in chars
    for ch in chars:
        folded = unicodedata.normalize("NFKC", ch).upper()
        assert not re.search(r"[A-Z0-9]", folded) and not re.search(r"\d", ch + folded), hex(ord(ch))
    text = "".join(chars)
    assert find_identifiers(text) == [] and phone_in(text) is None
    for text in ("底盘有异响，开起来咣当咣当的", "中控黑屏。", "空调　不制冷！"):
        assert _WORDS_ONLY.fullmatch(text) and find_identifiers(text) == [] and phone_in(text) is None
    # Letters and digits in any width, plates and phones are not words only.
    for text in ("空调ＫＦＲ－３５ＧＷ／Ｎ８ＨＲ３不制冷", "沪A12345 异响", "电话１３８１２３４５６７８", "①号机",
                 "ｋｆｒ"):
        assert _WORDS_ONLY.fullmatch(text) is None, text


def test_the_global_id_is_a_random_version_4_uuid() -> None:
    made = {new_global_id() for _ in range(2000)}
    assert len(made) == 2000
    for value in list(made)[:200]:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == value


async def test_a_new_ticket_carries_one_global_id(client: TestClient) -> None:
    customer = PlaygroundUser(client, "cust-gid")
    await customer.say("底盘有异响")
    ticket = await ticket_of(client, customer)
    assert uuid.UUID(ticket.data["global_id"]).version == 4
    async with runtime_of(client).uow() as uow:
        created = [e for e in await uow.audit_for_ticket(ticket.number) if e.kind == "ticket_created"]
    assert created


def _inbox_count(platform: str, outcome: str) -> float:
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for sample in family.samples:
            if sample.name == "ticketbot_inbox_events_total" and sample.labels == {
                    "platform": platform, "outcome": outcome}:
                return sample.value
    return 0.0


async def test_inbox_counts_land_in_the_exported_series() -> None:
    class Message:
        platform = "bench-cache"

    async def accepted(message: Any, **_: Any) -> int | None:
        return 7

    async def redelivered(message: Any, **_: Any) -> int | None:
        return None

    async def handled(row_id: int, message: Any) -> bool:
        return row_id > 0

    before = {o: _inbox_count("bench-cache", o) for o in ("accepted", "processed", "failed")}
    for _ in range(3):
        await count_inbox(accepted)(Message())
    await count_inbox(redelivered)(Message())
    await count_handling(handled)(1, Message())
    await count_handling(handled)(0, Message())
    assert _inbox_count("bench-cache", "accepted") == before["accepted"] + 3
    assert _inbox_count("bench-cache", "processed") == before["processed"] + 1
    assert _inbox_count("bench-cache", "failed") == before["failed"] + 1
    # The kept child is the registry's series, not a copy.
    assert INBOX.labels("bench-cache", "accepted")._value.get() == _inbox_count("bench-cache", "accepted")


async def test_the_supervisor_chain_reads_only_its_candidates(client: TestClient) -> None:
    """One read of the candidate supervisors (the stores in question and headquarters), not of every
    supervisor — everyone in the same read only when none of them exists (the chain's last resort)."""
    rt = runtime_of(client)
    traced = Statements(client)
    now = rt.clock.now()
    lent = Person(id="tech-lent", name="借调技师", role=Role.TECHNICIAN, store_id="S03")  # no direct supervisor
    on_ticket = Ticket(number="GD-20261206-9999", customer_id="cust-x", description="异响",
                       status=TicketStatus.TRIAGE, created_at=now, updated_at=now, store_id="S02")
    async with rt.uow() as uow:
        ctx = Context(uow=uow, clock=rt.clock, actor=SYSTEM_ACTOR, service=rt.service)

        async def chain(ticket: Ticket | None, person: Person | None = None, *, fallback: bool = True,
                        reads: int = 1) -> list[str]:
            traced.sql.clear()
            found = sorted(p.id for p in await supervisor_chain(ctx, ticket, person, fallback=fallback))
            assert len([s for s in traced.sql if "FROM people" in s]) == reads, traced.sql
            return found

        assert await chain(on_ticket, lent) == ["sup-chen"]  # S02 has none: the lent handler's store S03
        on_ticket.store_id = "S03"
        assert await chain(on_ticket) == ["sup-chen"]
        on_ticket.store_id = "S09"  # a store nobody supervises, no headquarters: everyone, as before master data
        assert await chain(on_ticket) == ["sup-chen", "sup-li"]
        assert await chain(on_ticket, fallback=False) == []
        on_ticket.store_id = None
        assert await chain(on_ticket, fallback=False, reads=0) == []  # nothing to read
        assert await chain(None) == ["sup-chen", "sup-li"]
        hq = Person(id="sup-hq", name="总部调度", role=Role.SUPERVISOR)  # no store: headquarters
        await uow.add_person(hq)
        assert await chain(None) == ["sup-hq"]
        on_ticket.store_id = "S03"
        assert await chain(on_ticket) == ["sup-chen"]  # the store's own supervisor before headquarters'
        on_ticket.store_id = "S09"
        assert await chain(on_ticket) == ["sup-hq"]
        assert await chain(on_ticket, fallback=False) == []


async def test_a_first_message_reads_no_earlier_tickets_of_its_sender(client: TestClient) -> None:
    """The repeat check's read of the sender's recent tickets: a person stored by this very command has
    none. Their next report reads them, and a repeat of the first is recognised as one."""
    await PlaygroundUser(client, "cust-warm").say("你好")  # the connection is traced from its next checkout
    traced = Statements(client)
    newcomer = PlaygroundUser(client, "cust-first-recent")
    await newcomer.say("底盘有异响，开起来咣当咣当的")
    assert [s for s in traced.reading("tickets") if "WHERE tickets.customer_id" in s] == []
    first = await ticket_of(client, newcomer)
    traced.sql.clear()
    answer = await newcomer.say("底盘还是有异响")
    assert [s for s in traced.reading("tickets") if "WHERE tickets.customer_id" in s]
    assert first.number in " ".join(m["text"] for m in answer["messages"])
    assert (await ticket_of(client, newcomer)).number == first.number  # a follow-up, no second ticket
