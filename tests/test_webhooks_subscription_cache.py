"""Issue 20 speed: webhook capture costs nothing when nobody subscribed (storage/webhook_store.py
`_WANTED`), and stays correct across processes: a subscription added here is seen at once, one added
by another process within RECHECK_S, a removal never late."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import insert, update

import storage.webhook_store as webhook_store
from storage.database import create_engine
from storage.tables import WebhookSubscriptionRow
from tests.conftest import runtime_of
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.test_lifecycle_support import report
from tests.test_webhooks import hub_client, hub_client_any_db, receiver, store_of, subscribe, until  # noqa: F401
from tests.test_webhooks_cli import ticketbot


def wanted(client: TestClient) -> frozenset[str] | None:
    """What this process believes subscriptions want, for the client's database (None: not read yet)."""
    known = webhook_store._WANTED.get(runtime_of(client).sessions.kw["bind"].sync_engine)
    return known.types if known is not None else None


async def another_process_inserts(url: str, events: list[str]) -> int:
    """A subscription written through a database connection of its own, as `ticketbot webhook add` in
    another process does, and without telling this process's cache."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            return int((await conn.execute(insert(WebhookSubscriptionRow).values(
                client="mes", url="http://127.0.0.1:9/h", secret="s", events=events, active=True,
                created_at=datetime.now(UTC)).returning(WebhookSubscriptionRow.id))).scalar_one())
    finally:
        await engine.dispose()


async def deliveries(client: TestClient, subscription_id: int) -> list[str]:
    """Ticket numbers of the subscription's deliveries (any state)."""
    return [d["ticket_number"] for d in await store_of(client).log(subscription_id, limit=100)]


async def test_nobody_subscribed_reads_no_subscriptions_within_the_bound(
        hub_client: TestClient, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    client = hub_client
    monkeypatch.setattr(webhook_store, "RECHECK_S", 60.0)
    await report(client, "cust-cache-1")
    assert wanted(client) == frozenset()  # read once: nobody wants anything
    sid = await another_process_inserts(sqlite_url, ["ticket.created"])
    stale = await report(client, "cust-cache-2")
    # Believed for RECHECK_S: the subscriptions were not read again (the cost this saves).
    assert await deliveries(client, sid) == [] and wanted(client) == frozenset(), stale
    monkeypatch.setattr(webhook_store, "RECHECK_S", 0.0)  # the bound has passed
    fresh = await report(client, "cust-cache-3")
    assert await deliveries(client, sid) == [fresh]
    assert wanted(client) == frozenset({"ticket.created"})


async def test_a_subscription_added_by_another_process_is_honoured_within_the_bound(
        hub_client_any_db: TestClient, database_url: str, tmp_path: Path,  # noqa: F811
        receiver: WebhookReceiver) -> None:  # noqa: F811
    client = hub_client_any_db
    await report(client, "cust-other-1")  # this process now believes nobody subscribed
    assert wanted(client) == frozenset()
    added = await asyncio.to_thread(ticketbot, "add", "--client", "mes", "--url", receiver.url("mes"), "--events",
                                    "ticket.created", database_url=database_url, cwd=tmp_path,
                                    WEBHOOK_ALLOW_PRIVATE="on")
    committed = time.monotonic()
    assert added.returncode == 0, added.stderr
    subscription = json.loads(added.stdout)
    mes = receiver.endpoint("mes", secret=subscription["secret"])
    # The documented bound: an event emitted RECHECK_S after the subscription's commit is delivered.
    await asyncio.sleep(max(0.0, webhook_store.RECHECK_S - (time.monotonic() - committed)) + 0.05)
    number = await report(client, "cust-other-2")
    await until(lambda: [e["ticket"]["number"] for e in mes.events] == [number])
    assert mes.events[0]["type"] == "ticket.created"


async def test_a_subscription_added_in_this_process_is_seen_at_once(
        hub_client: TestClient, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    client = hub_client
    monkeypatch.setattr(webhook_store, "RECHECK_S", 60.0)
    await report(client, "cust-here-1")
    assert wanted(client) == frozenset()
    _, erp = await subscribe(client, receiver, "erp", events=["ticket.created"])
    assert wanted(client) is None  # forgotten by add_subscription
    number = await report(client, "cust-here-2")
    await until(lambda: [e["ticket"]["number"] for e in erp.events] == [number])


async def test_a_removal_by_another_process_is_never_late(
        hub_client: TestClient, sqlite_url: str, receiver: WebhookReceiver,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    client = hub_client
    monkeypatch.setattr(webhook_store, "RECHECK_S", 60.0)
    subscription, mes = await subscribe(client, receiver, "mes", events=["ticket.created"])
    first = await report(client, "cust-gone-1")
    await until(lambda: len(mes.events) == 1)
    assert wanted(client) == frozenset({"ticket.created"})
    engine = create_engine(sqlite_url)  # another process deactivates it, telling nobody
    try:
        async with engine.begin() as conn:
            await conn.execute(update(WebhookSubscriptionRow).where(WebhookSubscriptionRow.id == subscription.id)
                               .values(active=False))
    finally:
        await engine.dispose()
    await report(client, "cust-gone-2")
    # A wanted event type is read in the command's transaction: the removal counts at once.
    assert await deliveries(client, subscription.id) == [first]


async def test_event_types_nobody_wants_are_skipped_and_wanted_ones_still_delivered(
        hub_client: TestClient, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    client = hub_client
    monkeypatch.setattr(webhook_store, "RECHECK_S", 60.0)
    _, mes = await subscribe(client, receiver, "mes", events=["ticket.assigned"])
    number = await report(client, "cust-kinds-1")
    await until(lambda: len(mes.events) >= 1)
    assert wanted(client) == frozenset({"ticket.assigned"})
    await asyncio.sleep(0.2)
    assert {e["type"] for e in mes.events} == {"ticket.assigned"}
    assert mes.events[0]["ticket"]["number"] == number
