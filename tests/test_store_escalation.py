"""Escalation follows the ticket's store's supervisor chain (core/masterdata/org.py), not a global list:
the demo has two stores with a supervisor each (S01 sup-li, S03 sup-chen)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.clock import FixedClock
from core.masterdata.org import supervisor_chain, supervisors_above
from core.model import Ticket, TicketStatus
from core.service import SYSTEM_ACTOR, Context
from tests.playground_client import PlaygroundUser
from tests.sla_support import (
    advance_to,
    assign_and_accept,
    at,
    cards,
    fixed_clock_app,
    force,
    report,
    runtime,
    ticket,
)
from tests.test_dispatch_service import _set_store

WED_0900 = at(2026, 11, 18, 9, 0)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(WED_0900)


async def _customer_at(client: Any, user: str, store: str) -> None:
    await PlaygroundUser(client, user).say("你好")
    await _set_store(runtime(client), user, store)


async def _chain(rt: Any, ticket_: Ticket | None, person: str | None = None) -> list[str]:
    async with rt.uow() as uow:
        ctx = Context(uow=uow, clock=rt.clock, actor=SYSTEM_ACTOR, service=rt.service)
        return sorted(p.id for p in await supervisor_chain(ctx, ticket_, person))


async def test_a_breach_at_s03_reaches_sup_chen_not_sup_li(database_url: str, tmp_path: Path,
                                                           clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        await _customer_at(client, "cust-hz", "S03")
        number = await report(client, "cust-hz", "机器坏了")  # not classified: 待分诊, nobody assigned
        t = await ticket(rt, number)
        assert t.status is TicketStatus.TRIAGE and t.store_id == "S03"
        triage = [m for m in await PlaygroundUser(client, "sup-chen").texts() if "请分诊" in m]
        assert triage and not [m for m in await PlaygroundUser(client, "sup-li").texts() if number in m]

        await advance_to(rt, clock, at(2026, 11, 18, 12, 45))
        assert len(await cards(client, "sup-chen", "reminder")) == 1
        assert await cards(client, "sup-li", "reminder") == []
        await advance_to(rt, clock, at(2026, 11, 18, 13, 0))
        assert len(await cards(client, "sup-chen", "escalation")) == 1
        assert await cards(client, "sup-li", "escalation") == []
        assert len(await cards(client, "sup-chen", "task")) == 1  # the root-cause task
        assert (await ticket(rt, number)).data["sla"]["response"]["escalated_to"] == ["sup-chen"]
        # Nobody above sup-chen: the second level goes to the director, as before.
        await advance_to(rt, clock, at(2026, 11, 18, 14, 0))
        assert len(await cards(client, "admin", "escalation")) == 1


async def test_a_breach_at_s01_reaches_sup_li_and_the_second_level_goes_up_the_chain(
        database_url: str, tmp_path: Path, clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        admin = PlaygroundUser(client, "admin")
        await admin.say("人员 新增 sup-east 姓名=华东区经理 角色=主管")
        await admin.say("人员 修改 sup-li 上级=sup-east")
        assert "上级：— → sup-east" in await admin.last_text()
        await _customer_at(client, "cust-sh", "S01")
        number = await report(client, "cust-sh", "机器坏了")
        await advance_to(rt, clock, at(2026, 11, 18, 13, 0))
        assert len(await cards(client, "sup-li", "escalation")) == 1
        assert await cards(client, "sup-chen", "escalation") == []
        assert await cards(client, "sup-east", "escalation") == []  # the store's own supervisor first
        await advance_to(rt, clock, at(2026, 11, 18, 14, 0))
        level2 = await cards(client, "sup-east", "escalation")
        assert len(level2) == 1 and level2[0]["title"].startswith("SLA 二级升级") and number in level2[0]["title"]
        assert await cards(client, "admin", "escalation") == []


async def test_the_handlers_direct_supervisor_comes_first(database_url: str, tmp_path: Path,
                                                          clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        await _customer_at(client, "cust-hz2", "S03")
        number = await report(client, "cust-hz2", "机器坏了")
        # tech-wang (S01, supervisor sup-li) took the S03 job: his own supervisor answers for him.
        await assign_and_accept(rt, number, "tech-wang")
        t = await ticket(rt, number)
        assert await _chain(rt, t) == ["sup-li"]
        # Without a direct supervisor: the ticket's store's supervisor, then the handler's store's.
        await force(rt, number, assignee_id="tech-liu")
        async with rt.uow() as uow:
            liu = await uow.get_person("tech-liu")
            assert liu is not None
            liu.supervisor_id = None
            await uow.save_person(liu)
            await uow.commit()
        assert await _chain(rt, await ticket(rt, number)) == ["sup-chen"]
        # No store on the ticket and none at S02 (tech-liu's): the last resort, every supervisor.
        await force(rt, number, store_id=None)
        assert await _chain(rt, await ticket(rt, number)) == ["sup-chen", "sup-li"]
        # A deactivated direct supervisor does not answer: the ticket's store's supervisor does.
        await force(rt, number, store_id="S03", assignee_id="tech-wang")
        async with rt.uow() as uow:
            li = await uow.get_person("sup-li")
            assert li is not None
            li.active = False
            await uow.save_person(li)
            await uow.commit()
        assert await _chain(rt, await ticket(rt, number)) == ["sup-chen"]
        async with rt.uow() as uow:
            ctx = Context(uow=uow, clock=rt.clock, actor=SYSTEM_ACTOR, service=rt.service)
            assert await supervisors_above(ctx, ["tech-zhang", "tech-xu"]) == [await uow.get_person("sup-chen")]


async def test_nobody_to_dispatch_tells_the_stores_supervisor(database_url: str, tmp_path: Path,
                                                              clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        admin = PlaygroundUser(client, "admin")
        for tech in ("tech-wang", "tech-zhang", "tech-liu", "tech-huang", "tech-xu"):
            await admin.say(f"技师 离岗 {tech}")
        await _customer_at(client, "cust-hz3", "S03")
        number = await report(client, "cust-hz3", "中控黑屏")
        picks = [c for c in await cards(client, "sup-chen") if number in c["title"]]
        assert picks and "人工派单" in picks[0]["title"]
        assert not [c for c in await cards(client, "sup-li") if number in c["title"]]


async def test_a_ticket_without_a_store_goes_to_the_chain_wide_supervisors(database_url: str, tmp_path: Path,
                                                                          clock: FixedClock) -> None:
    """A store-less ticket (a chat customer no store knows yet) nobody can take: the supervisors without a
    store of their own (headquarters' desk) get the pick card, not every store's manager; with no such
    supervisor, every supervisor, as before."""
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        admin = PlaygroundUser(client, "admin")
        for tech in ("tech-wang", "tech-zhang", "tech-liu", "tech-huang", "tech-xu"):
            await admin.say(f"技师 离岗 {tech}")
        await admin.say("人员 新增 sup-hq 姓名=总部调度 角色=主管")
        first = await report(client, "cust-walkin", "中控黑屏")
        t = await ticket(rt, first)
        assert t.store_id is None and t.assignee_id is None
        assert [c for c in await cards(client, "sup-hq") if first in c["title"]]
        for store_manager in ("sup-li", "sup-chen"):
            assert not [c for c in await cards(client, store_manager) if first in c["title"]]
        assert await _chain(rt, t) == ["sup-hq"]

        await admin.say("人员 停用 sup-hq")
        await admin.say("确认")
        assert await _chain(rt, await ticket(rt, first)) == ["sup-chen", "sup-li"]
