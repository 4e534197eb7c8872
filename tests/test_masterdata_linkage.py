"""Change linkage: warranty and contract dates that pass or move tell the asset's store supervisor, the
open tickets' facts follow, and the customer hears when their asset went out of warranty. Rules are
data admins list and switch (`联动 …`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import col

from core.clock import FixedClock
from core.masterdata.linkage import (
    DAILY_KIND,
    OUT_OF_WARRANTY_TEXT,
    on_asset_changed,
    on_contract_changed,
)
from core.masterdata.model import AssetRecord, ContractRecord, CustomerRecord
from core.service import SYSTEM_ACTOR, Context
from storage.tables import AuditEventRow, ConfigVersionRow, TimerRowTable
from tests.playground_client import PlaygroundUser
from tests.sla_support import advance_to, at, fixed_clock_app, runtime, settle, ticket
from tests.test_dispatch_support import NUMBER

WED_0900 = at(2026, 11, 18, 9, 0)
TODAY = date(2026, 11, 18)
PLATE = "沪A12345"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(WED_0900)


def _asset(warranty_end: date | None) -> AssetRecord:
    return AssetRecord(id="A-CAR-1", plate="沪A12345", brand="上汽大众", model="朗逸", store_code="S03",
                       customer_id="cust-link", warranty_end=warranty_end, display_id=PLATE)


async def _in_command(rt: Any, fn: Any) -> None:
    """What an import row or an admin change does: one unit of work on the service's context."""
    async with rt.uow() as uow:
        ctx = Context(uow=uow, clock=rt.clock, actor=SYSTEM_ACTOR, service=rt.service)
        await fn(ctx)
        await uow.commit()


async def _seed(rt: Any, warranty_end: date, contract_to: date | None = None) -> None:
    async def seed(ctx: Context) -> None:
        md = ctx.uow.masterdata()
        await md.upsert_customer(CustomerRecord(id="cust-link", name="客户 林", phones=("13912345678",),
                                                store_code="S03"), at=ctx.now)
        await ctx.uow.link_identity("cust-link", "local", "cust-link")
        asset = _asset(warranty_end)
        await md.upsert_asset(asset)
        await on_asset_changed(ctx, None, asset)  # a new asset: arms the daily check, tells nobody
        if contract_to is not None:
            contract = ContractRecord("HT-001", "cust-link", ("A-CAR-1",), "金牌", date(2025, 1, 1), contract_to)
            await md.upsert_contract(contract)
            await on_contract_changed(ctx, None, contract)
    await _in_command(rt, seed)


async def _report(client: Any) -> str:
    customer = PlaygroundUser(client, "cust-link")
    await customer.say(f"车牌{PLATE} 刹车异响，踩下去有怪声")
    for text in reversed(await customer.texts()):
        if found := NUMBER.search(text):
            return found.group(0)
    raise AssertionError("no ticket")


async def _audit(rt: Any, kind: str) -> list[dict[str, Any]]:
    async with rt.sessions() as session:
        rows = (await session.execute(select(AuditEventRow).where(col(AuditEventRow.kind) == kind)
                                      .order_by(col(AuditEventRow.seq)))).scalars()
        return [{"actor": r.actor_id, "ticket": r.ticket_number, **r.payload} for r in rows]


async def _linkage_cards(client: Any, user: str) -> list[dict[str, Any]]:
    return [c for c in await PlaygroundUser(client, user).cards("info") if "联动规则" in str(c.get("facts"))]


async def test_rules_are_data_admins_list_and_switch(database_url: str, tmp_path: Path, clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        admin = PlaygroundUser(client, "admin")
        await admin.say("联动 列表")
        listing = await admin.last_text()
        assert "warranty_expiry（过保提醒）：启用" in listing and "contract_expiry（合同到期提醒）：启用" in listing
        assert "下次每日检查：11-19 09:00" in listing
        await admin.say("联动 停用 过保")
        assert "已停用联动规则 warranty_expiry" in await admin.last_text()
        await admin.say("联动 停用 warranty_expiry")
        assert "已经是停用状态" in await admin.last_text()
        await admin.say("联动 启用 天气预报")
        assert "没有联动规则「天气预报」" in await admin.last_text()
        await admin.say("联动 重置")
        assert "看不懂这条联动命令" in await admin.last_text()
        await admin.say("联动")
        assert "warranty_expiry（过保提醒）：停用" in await admin.last_text()
        await admin.say("联动 历史")
        assert "v1" in await admin.last_text() and "停用 warranty_expiry" in await admin.last_text()
        async with rt.sessions() as session:
            stored = (await session.execute(select(ConfigVersionRow).where(
                col(ConfigVersionRow.kind) == "linkage"))).scalars().all()
        assert [r.payload for r in stored] == [{"rules": {"warranty_expiry": False, "contract_expiry": True}}]
        changed = await _audit(rt, "config_changed")
        assert changed[-1]["kind"] == "linkage" and changed[-1]["enabled"] is False


async def test_a_moved_warranty_end_updates_the_open_ticket_and_tells_the_store(database_url: str, tmp_path: Path,
                                                                                clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        await _seed(rt, TODAY + timedelta(days=90))
        number = await _report(client)
        t = await ticket(rt, number)
        assert t.asset_id == "A-CAR-1" and t.store_id == "S03"
        assert t.data["masterdata"]["warranty"] == {"end": "2027-02-16", "in_warranty": True}
        assert await _linkage_cards(client, "sup-chen") == []  # a new asset told nobody

        # An import corrects the warranty end into the past.
        async def correct(ctx: Context) -> None:
            before = await ctx.uow.masterdata().get_asset("A-CAR-1")
            assert before is not None
            after = replace(before, warranty_end=TODAY - timedelta(days=3))
            await ctx.uow.masterdata().upsert_asset(after)
            await on_asset_changed(ctx, before, after)
        await _in_command(rt, correct)
        await settle(rt)

        t = await ticket(rt, number)
        assert t.data["masterdata"]["warranty"] == {"end": "2026-11-15", "in_warranty": False}
        told = [m for m in await PlaygroundUser(client, "cust-link").texts() if OUT_OF_WARRANTY_TEXT in m]
        assert len(told) == 1 and number in told[0]
        cards = await _linkage_cards(client, "sup-chen")
        assert len(cards) == 1 and "保修截止 2027-02-16 → 2026-11-15（已过保）" in cards[0]["body"]
        assert number in cards[0]["body"]
        assert await _linkage_cards(client, "sup-li") == []  # the asset's store's supervisor only
        updated = await _audit(rt, "masterdata_facts_updated")
        assert updated[-1]["ticket"] == number and updated[-1]["after"]["warranty"]["in_warranty"] is False

        # The same date again changes nothing and tells nobody twice.
        async def again(ctx: Context) -> None:
            same = await ctx.uow.masterdata().get_asset("A-CAR-1")
            assert same is not None
            await on_asset_changed(ctx, same, same)
        await _in_command(rt, again)
        await settle(rt)
        assert len(await _linkage_cards(client, "sup-chen")) == 1
        assert len([m for m in await PlaygroundUser(client, "cust-link").texts() if OUT_OF_WARRANTY_TEXT in m]) == 1


async def test_the_daily_timer_finds_warranties_and_contracts_that_passed(database_url: str, tmp_path: Path,
                                                                          clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        await _seed(rt, TODAY, contract_to=TODAY)  # both cover today, end tonight
        number = await _report(client)
        t = await ticket(rt, number)
        assert t.data["masterdata"]["warranty"]["in_warranty"] is True
        assert t.data["masterdata"]["contract"]["valid"] is True
        async with rt.sessions() as session:
            daily = (await session.execute(select(TimerRowTable).where(
                col(TimerRowTable.kind) == DAILY_KIND))).scalar_one()
        assert daily.state == "pending"

        await advance_to(rt, clock, at(2026, 11, 19, 8, 59))
        assert await _linkage_cards(client, "sup-chen") == []
        await advance_to(rt, clock, at(2026, 11, 19, 9, 0))
        t = await ticket(rt, number)
        assert t.data["masterdata"]["warranty"] == {"end": "2026-11-18", "in_warranty": False}
        assert t.data["masterdata"]["contract"]["valid"] is False
        titles = sorted(c["title"] for c in await _linkage_cards(client, "sup-chen"))
        assert titles == ["服务合同已到期（1 项）", "设备已过保（1 项）"]
        assert await _linkage_cards(client, "sup-li") == []
        told = [m for m in await PlaygroundUser(client, "cust-link").texts() if OUT_OF_WARRANTY_TEXT in m]
        assert len(told) == 1

        # The timer re-armed itself; the next day finds nothing new (no second card).
        async with rt.sessions() as session:
            daily = (await session.execute(select(TimerRowTable).where(
                col(TimerRowTable.kind) == DAILY_KIND))).scalar_one()
        assert daily.state == "pending" and daily.payload["covered_to"] == "2026-11-18"
        await advance_to(rt, clock, at(2026, 11, 20, 9, 0))
        assert len(await _linkage_cards(client, "sup-chen")) == 2
        runs = await _audit(rt, "masterdata_linkage_run")
        assert [(r["from"], r["to"], r["found"]) for r in runs] == [("2026-11-18", "2026-11-18", 2)]


async def test_a_switched_off_rule_does_nothing(database_url: str, tmp_path: Path, clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        await _seed(rt, TODAY)
        number = await _report(client)
        admin = PlaygroundUser(client, "admin")
        await admin.say("联动 停用 过保")
        await advance_to(rt, clock, at(2026, 11, 19, 9, 0))
        assert (await ticket(rt, number)).data["masterdata"]["warranty"]["in_warranty"] is True
        assert await _linkage_cards(client, "sup-chen") == []
        assert not [m for m in await PlaygroundUser(client, "cust-link").texts() if OUT_OF_WARRANTY_TEXT in m]
        # Switched back on, 联动 检查 covers only what the timer has not covered yet: nothing.
        await admin.say("联动 启用 过保")
        await admin.say("联动 检查")
        assert "没有设备过保" in await admin.last_text()


async def test_admin_check_runs_now_and_the_timer_does_not_repeat_it(database_url: str, tmp_path: Path,
                                                                     clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        await _seed(rt, TODAY)
        number = await _report(client)
        clock.set(at(2026, 11, 19, 7, 0))  # before the daily run
        admin = PlaygroundUser(client, "admin")
        await admin.say("联动 检查")
        assert "1 项过保/合同到期已处理" in await admin.last_text()
        await settle(rt)
        assert (await ticket(rt, number)).data["masterdata"]["warranty"]["in_warranty"] is False
        await advance_to(rt, clock, at(2026, 11, 19, 9, 0))
        assert len(await _linkage_cards(client, "sup-chen")) == 1


async def test_a_shortened_contract_updates_the_ticket_at_once(database_url: str, tmp_path: Path,
                                                               clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        await _seed(rt, TODAY + timedelta(days=90), contract_to=TODAY + timedelta(days=300))
        number = await _report(client)
        assert (await ticket(rt, number)).data["masterdata"]["contract"]["number"] == "HT-001"

        async def shorten(ctx: Context) -> None:
            before = await ctx.uow.masterdata().get_contract("HT-001")
            assert before is not None
            after = replace(before, valid_to=TODAY - timedelta(days=1))
            await ctx.uow.masterdata().upsert_contract(after)
            await on_contract_changed(ctx, before, after)
        await _in_command(rt, shorten)
        await settle(rt)
        contract = (await ticket(rt, number)).data["masterdata"]["contract"]
        assert contract["valid"] is False and contract["valid_to"] == "2026-11-17"
        cards = await _linkage_cards(client, "sup-chen")
        assert len(cards) == 1 and "有效期 2025-01-01~2027-09-14 → 2025-01-01~2026-11-17（已失效）" in cards[0]["body"]
        # The warranty did not change: the customer hears nothing about charges.
        assert not [m for m in await PlaygroundUser(client, "cust-link").texts() if OUT_OF_WARRANTY_TEXT in m]
