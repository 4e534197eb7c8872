"""The real app with 微信客服 configured against the fake kf API (tests/fakes/wecom_kf_server.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from sqlmodel import col

from adapters.wecom.kf import KfAdapter
from bot.runtime import Runtime
from bot.web.app import build_app
from core.model import Person
from storage.tables import InboxRow, OutboxRow, TimerRowTable
from tests.conftest import make_settings
from tests.fakes.wecom_kf_server import FakeWeComKf, WeChatCustomer
from tests.fakes.wecom_server import SAMPLE_AES_KEY, CallbackSigner
from tests.test_e2e_wecom import OffsetClock, eventually

TOKEN = "kf-callback-token"
ACCOUNT = "wkSTORE0001"

__all__ = ["ACCOUNT", "KfWorld", "eventually", "start_kf_world"]


@dataclass
class KfWorld:
    client: TestClient
    fake: FakeWeComKf
    runtime: Runtime
    clock: OffsetClock
    signer: CallbackSigner

    @property
    def adapter(self) -> KfAdapter:
        (adapter,) = [a for a in self.runtime.adapters if a.platform == "wecom_kf"]
        assert isinstance(adapter, KfAdapter)
        return adapter

    def customer(self, user: str, open_kfid: str = ACCOUNT) -> WeChatCustomer:
        return WeChatCustomer(self.client, self.fake, self.signer, user, open_kfid)

    async def count(self, table: Any, *where: Any) -> int:
        async with self.runtime.sessions() as session:
            stmt = select(func.count()).select_from(table)
            for clause in where:
                stmt = stmt.where(clause)
            return int((await session.execute(stmt)).scalar_one())

    async def person_of(self, customer: WeChatCustomer) -> Person | None:
        async with self.runtime.uow() as uow:
            return await uow.person_by_identity("wecom_kf", f"{customer.open_kfid}:{customer.user}")

    async def trail(self, number: str) -> list[tuple[str, dict[str, Any]]]:
        async with self.runtime.uow() as uow:
            return [(e.kind, dict(e.payload)) for e in await uow.audit_for_ticket(number)]

    async def synced(self) -> None:
        await self.adapter.sync.idle()

    async def settled(self) -> None:
        """Syncs done, every inbox row processed, every due outbox row delivered."""
        await self.synced()

        async def quiet() -> bool:
            busy_in = await self.count(InboxRow, col(InboxRow.status).in_(["pending", "processing"]))
            busy_out = await self.count(OutboxRow, col(OutboxRow.status).in_(["pending", "sending"]),
                                        col(OutboxRow.next_attempt_at) <= self.clock.now())
            due_timers = await self.count(TimerRowTable, col(TimerRowTable.state) == "pending",
                                          col(TimerRowTable.due_at) <= self.clock.now())
            return not busy_in and not busy_out and not due_timers

        await eventually(quiet, what="inbox and outbox to settle")


async def start_kf_world(database_url: str, tmp_path: Path, fake: FakeWeComKf, *, with_app: bool = False,
                         **settings: Any) -> KfWorld:
    values: dict[str, Any] = {
        "wecom_corp_id": fake.corp_id,
        "wecom_token": TOKEN,
        "wecom_encoding_aes_key": SAMPLE_AES_KEY,
        "wecom_api_base": fake.base_url,
        "wecom_kf_secret": fake.kf_secret,
        "wecom_kf_open_kfid": ",".join(sorted(fake.accounts)),
        "public_base_url": "https://tb.example.com",
        **settings,
    }
    if with_app:
        values.update(wecom_agent_id=str(fake.agent_id), wecom_secret=fake.secret)
    app_settings = make_settings(database_url, tmp_path, **values)
    clock = OffsetClock()
    fake.clock = clock.timestamp
    runtime = Runtime(app_settings, clock=clock)
    client = TestClient(TestServer(build_app(app_settings, runtime=runtime)))
    await client.start_server()
    signer = CallbackSigner(TOKEN, SAMPLE_AES_KEY, fake.corp_id, agent_id=fake.agent_id)
    return KfWorld(client, fake, runtime, clock, signer)


@pytest.fixture
async def kf_fake() -> AsyncIterator[FakeWeComKf]:
    server = FakeWeComKf()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def kf_world(database_url: str, tmp_path: Path, kf_fake: FakeWeComKf) -> AsyncIterator[KfWorld]:
    world = await start_kf_world(database_url, tmp_path, kf_fake)
    try:
        yield world
    finally:
        await world.client.close()
