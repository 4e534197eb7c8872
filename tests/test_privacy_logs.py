"""Personal data in the logs (issue 20, PIPL): the SMS log (`sms_sends`, `sms_codes`) and the stored
webhook bodies lose the customer's phone numbers with `ticketbot customer forget` and after
CUSTOMER_DATA_RETENTION_DAYS. The rows stay (masked), so the log's counts stay true."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import col

from bot.cli.customers import forget
from bot.jobs.privacy import WATERMARK_KIND, RetentionPurge
from bot.runtime import Runtime
from core.clock import FixedClock
from storage.sms_store import SqlSmsStore
from storage.tables import WebhookDeliveryRow
from storage.tables_sms import SmsCodeRow, SmsSendRow
from storage.webhook_store import SqlWebhookStore
from tests.conftest import make_settings
from tests.sms_support import sms_customer, sms_runtime

PHONE = "13800138000"
OTHER = "13900139000"
START = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
async def runtime(database_url: str, tmp_path: Path, clock: FixedClock) -> AsyncIterator[Runtime]:
    async with sms_runtime(make_settings(database_url, tmp_path, load_demo="off"), clock) as rt:
        await SqlWebhookStore(rt.sessions, clock).add_subscription(
            client="mes", url="https://mes.example.com/hook", secret="s" * 64, events=["ticket.created"])
        yield rt


async def _sent(store: SqlSmsStore, phone: str, at: datetime, kind: str = "notice",
                number: str | None = None) -> None:
    slot = await store.reserve(phone, kind, now=at, limit=100, window=HOUR, ticket_number=number,
                               ticket_status="pending_dispatch" if number else None)
    assert slot.id is not None
    await store.confirm(slot.id, provider="aliyun", message_id=f"m-{slot.id}")


async def _log(runtime: Runtime) -> list[tuple[str, str, str | None, str]]:
    async with runtime.sessions() as session:
        rows = (await session.execute(select(SmsSendRow).order_by(col(SmsSendRow.id)))).scalars()
        return [(r.phone, r.kind, r.ticket_number, r.state) for r in rows]


async def _codes(runtime: Runtime) -> set[str]:
    async with runtime.sessions() as session:
        return set((await session.execute(select(col(SmsCodeRow.phone)))).scalars())


async def _bodies(runtime: Runtime) -> dict[str, str]:
    async with runtime.sessions() as session:
        rows = (await session.execute(select(WebhookDeliveryRow))).scalars()
        return {str(r.ticket_number): r.body for r in rows}


async def test_forget_masks_the_customers_phones_in_the_sms_log_and_the_webhook_bodies(
        runtime: Runtime, clock: FixedClock) -> None:
    store = SqlSmsStore(runtime.sessions)
    person, number = await sms_customer(runtime, PHONE, text=f"刹车时底盘有异响，回电 {PHONE}")
    _other, other_number = await sms_customer(runtime, OTHER, text=f"中控黑屏，回电 {OTHER}")
    now = clock.now()
    await _sent(store, PHONE, now, "code")
    await _sent(store, PHONE, now, number=number)
    await _sent(store, "13700137000", now, number=number)  # their ticket, a number they gave before
    await _sent(store, OTHER, now, number=other_number)
    for phone in (PHONE, OTHER):
        await store.put_code(phone, "0" * 64, now=now, expires_at=now + timedelta(minutes=10))
    assert PHONE in (await _bodies(runtime))[number]

    result = await forget(runtime.settings, person.id)
    assert result == {"customer": person.id, "forgotten": True, "tickets": 1}

    assert await _log(runtime) == [
        ("138****8000", "code", None, "sent"), ("138****8000", "notice", number, "sent"),
        ("137****7000", "notice", number, "sent"), (OTHER, "notice", other_number, "sent")]
    assert await _codes(runtime) == {OTHER}
    bodies = await _bodies(runtime)
    document = json.loads(bodies[number])
    assert document["data"]["description"] == "刹车时底盘有异响，回电 138****8000"
    # The facts and the identifiers stay (sms_customer's ids are made of the phone: keys, not text).
    assert document["customer_key"] == person.id and document["type"] == "ticket.created"
    assert OTHER in json.loads(bodies[other_number])["data"]["description"]  # someone else's: untouched


async def test_the_retention_masks_log_rows_older_than_the_retention(runtime: Runtime, clock: FixedClock) -> None:
    store = SqlSmsStore(runtime.sessions)
    _person, old = await sms_customer(runtime, PHONE, text=f"刹车时底盘有异响，回电 {PHONE}")
    await _sent(store, PHONE, clock.now(), number=old)
    await store.put_code(PHONE, "0" * 64, now=clock.now(), expires_at=clock.now() + timedelta(minutes=10))
    clock.advance(timedelta(days=20))
    _other, young = await sms_customer(runtime, OTHER, text=f"中控黑屏，回电 {OTHER}")
    await _sent(store, OTHER, clock.now(), number=young)

    purge = RetentionPurge(runtime.sessions, runtime.service, 30)
    await purge.run(START + timedelta(days=31))  # the first rows are 31 days old, the others 11
    assert await _log(runtime) == [("138****8000", "notice", old, "sent"), (OTHER, "notice", young, "sent")]
    assert await _codes(runtime) == set()  # expired long ago
    bodies = await _bodies(runtime)
    assert json.loads(bodies[old])["data"]["description"] == "刹车时底盘有异响，回电 138****8000"
    assert OTHER in json.loads(bodies[young])["data"]["description"]
    async with runtime.uow() as uow:
        stored = await uow.latest_config(WATERMARK_KIND)
    assert stored is not None and set(stored[1]["logs_done_through"]) == {"sms_sends", "webhook_deliveries", "inbox",
                                                                     "outbox"}

    # A restarted process walks on from the stored ids; the young rows' turn comes with their age.
    again = RetentionPurge(runtime.sessions, runtime.service, 30)
    await again.run(START + timedelta(days=52))
    assert await _log(runtime) == [("138****8000", "notice", old, "sent"), ("139****9000", "notice", young, "sent")]
    assert OTHER not in json.loads((await _bodies(runtime))[young])["data"]["description"]
