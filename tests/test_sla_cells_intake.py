"""Issue 19 item 28: every one of the 27 SLA cells is reachable.

Intake sets priority and impact from what the customer says (a consultation is 咨询; 整个部门 /
整条线 / 全厂停产 set the impact), staff re-prioritise with `优先级 号 …` and `影响 号 …` (the SLA
deadlines and timers are re-planned and the change is audited), and `取消工单 号 原因` cancels.
Everything runs through the real app (playground, real SQLite and PostgreSQL, FixedClock).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.runtime import Runtime
from core.clock import FixedClock
from core.intake.urgency import detect_urgency, intake_priority
from core.model import TicketStatus
from core.sla.matrix import Impact, Priority, SlaMatrix, TimeBand, deadline_for
from core.sla.stored_config import load_calendar
from tests.playground_client import PlaygroundUser
from tests.sla_support import (
    advance_to,
    assign_and_accept,
    at,
    fixed_clock_app,
    report,
    runtime,
    ticket,
    timers,
)

S = TicketStatus
WED_0900 = at(2026, 11, 18, 9, 0)  # a Wednesday: working time
BANDS = {
    TimeBand.WORKING: WED_0900,
    TimeBand.OFF_HOURS: at(2026, 11, 18, 20, 30),  # a working day, after hours
    TimeBand.HOLIDAY: at(2026, 11, 21, 10, 0),  # a Saturday
}


# --- what the text says -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "symptom", "priority", "impact"),
    [
        ("中控黑屏", True, "常规", None),
        ("整个部门的电脑都黑屏了", True, "常规", "部门"),
        ("全厂停产了，空压机坏了", False, "常规", "全厂"),
        ("整条线停了，电机不转", False, "常规", "全厂"),
        ("紧急！中控黑屏", True, "紧急", None),
        ("咨询：设备有问题怎么设置", False, "咨询", None),
        ("咨询一下，整个部门的打印机怎么设置双面", False, "咨询", "部门"),
        ("请教一下设备异响是否正常", True, "常规", None),  # a symptom: a fault, asked politely
        ("咨询一下，全厂停产了怎么办", False, "常规", "全厂"),  # production stopped is never a consultation
        ("不影响整个部门，只是我的电脑黑屏", True, "常规", None),  # negated
    ],
)
def test_intake_reads_priority_and_impact_from_the_text(text: str, symptom: bool, priority: str,
                                                         impact: str | None) -> None:
    said = detect_urgency(text)
    assert intake_priority(said, symptom=symptom) == priority
    assert said.impact == impact


async def api_ticket(client: TestClient, number: str) -> dict[str, Any]:
    resp = await client.get(f"/api/tickets/{number}")
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return body


@pytest.mark.parametrize(
    ("text", "priority", "impact"),
    [
        ("整个部门的电脑都黑屏了", "常规", "部门"),
        ("全厂停产了，空压机坏了", "常规", "全厂"),
        ("咨询：设备有问题怎么设置", "咨询", "单用户"),
    ],
)
async def test_a_report_gets_the_priority_and_impact_the_customer_states(database_url: str, tmp_path: Path,
                                                                          text: str, priority: str,
                                                                          impact: str) -> None:
    clock = FixedClock(WED_0900)
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        number = await report(client, "cust-intake", text)
        body = await api_ticket(client, number)
        assert (body["priority"], body["impact"]) == (priority, impact)
        assert body["data"]["sla"]["cell"] == f"{priority}×{impact}×工作时间"
        created = next(e for e in body["audit"] if e["kind"] == "ticket_created")
        assert (created["payload"]["priority"], created["payload"]["impact"]) == (priority, impact)


# --- all 27 cells, end to end ----------------------------------------------------------------

# What a customer can say for a cell; the rest are reached by staff with 优先级 / 影响.
SAID = {
    ("常规", "单用户"): "中控黑屏",
    ("常规", "部门"): "整个部门的电脑都黑屏了",
    ("常规", "全厂"): "整条线停了，电机不转",
    ("紧急", "单用户"): "紧急！中控黑屏，设备编号 A-1024",
    ("紧急", "部门"): "紧急！整个部门的电脑都黑屏了，设备编号 PC-7",
    ("紧急", "全厂"): "紧急！产线停机了，中控黑屏",
    ("咨询", "单用户"): "咨询：设备有问题怎么设置",
    ("咨询", "部门"): "咨询一下，整个部门的设备有问题怎么设置",
}


async def expected_deadlines(rt: Runtime, priority: str, impact: str, reported: datetime) -> tuple[datetime, datetime]:
    async with rt.uow() as uow:
        calendar = await load_calendar(uow, rt.service.config.timezone, rt.service.config.sla)
    d = deadline_for(priority, impact, reported, calendar, SlaMatrix.default())
    return d.response_due, d.resolution_due


async def test_every_one_of_the_27_cells_is_reached_with_its_deadlines(database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(WED_0900)
    reached: set[str] = set()
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        sup = PlaygroundUser(client, "sup-li")
        n = 0
        for band, moment in BANDS.items():
            clock.set(moment)
            for priority in Priority:
                for impact in Impact:
                    n += 1
                    said = SAID.get((priority.value, impact.value))
                    number = await report(client, f"cust-cell-{n}", said or "中控黑屏")
                    if said is None:  # staff set what the customer did not say
                        await sup.say(f"优先级 {number} {priority.value}")
                        await sup.say(f"影响 {number} {impact.value}")
                    t = await ticket(rt, number)
                    label = f"{priority.value}×{impact.value}×{band.value}"
                    assert (t.priority, t.impact, t.data["sla"]["cell"]) == (priority.value, impact.value, label)
                    response_due, resolution_due = await expected_deadlines(rt, priority.value, impact.value,
                                                                            t.created_at)
                    assert (t.response_due, t.resolution_due) == (response_due, resolution_due), label
                    armed = await timers(rt, number)
                    assert armed["sla.response.breach"] == response_due, label
                    assert armed["sla.resolution.breach"] == resolution_due, label
                    reached.add(label)
    assert len(reached) == 27


# --- staff re-prioritise -----------------------------------------------------------------------


async def test_staff_change_priority_and_impact_and_the_sla_is_replanned(database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(WED_0900)
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-rp-1", "中控黑屏")
        assert (await ticket(rt, number)).response_due == at(2026, 11, 18, 13, 0)  # 常规×单用户: 4 business hours
        clock.advance(timedelta(minutes=10))
        sup = PlaygroundUser(client, "sup-li")
        await sup.say(f"优先级 {number} 紧急")
        answer = await sup.last_text()
        assert number in answer and "紧急" in answer and "10:00" in answer  # 紧急×单用户: 60 min on the wall clock
        t = await ticket(rt, number)
        # The clock keeps its start (the report); only the targets change.
        assert (t.priority, t.data["sla"]["cell"]) == ("紧急", "紧急×单用户×工作时间")
        assert (t.response_due, t.resolution_due) == (at(2026, 11, 18, 10, 0), at(2026, 11, 18, 17, 0))
        assert await timers(rt, number) == {
            "sla.response.reminder": at(2026, 11, 18, 9, 45),
            "sla.response.breach": at(2026, 11, 18, 10, 0),
            "sla.resolution.reminder": at(2026, 11, 18, 16, 45),
            "sla.resolution.breach": at(2026, 11, 18, 17, 0),
        }

        await sup.say(f"影响 {number} 全厂")
        t = await ticket(rt, number)
        assert (t.impact, t.data["sla"]["cell"]) == ("全厂", "紧急×全厂×工作时间")
        assert t.response_due == at(2026, 11, 18, 9, 15)  # 15 minutes from the report
        pending = await timers(rt, number)
        assert "sla.response.reminder" not in pending  # 09:00 has passed
        assert pending["sla.response.breach"] == at(2026, 11, 18, 9, 15)

        body = await api_ticket(client, number)
        changes = [e for e in body["audit"] if e["kind"] == "priority_changed"]
        assert [(e["actor_id"], e["payload"]["field"], e["payload"]["from"], e["payload"]["to"]) for e in changes] == [
            ("sup-li", "priority", "常规", "紧急"), ("sup-li", "impact", "单用户", "全厂")]
        assert changes[-1]["payload"]["cell"] == "紧急×全厂×工作时间"
        assert datetime.fromisoformat(changes[-1]["payload"]["response_due"]) == at(2026, 11, 18, 9, 15)

        # The re-planned breach fires at its new moment.
        await advance_to(rt, clock, at(2026, 11, 18, 9, 16))
        t = await ticket(rt, number)
        assert t.data["sla"]["response"]["breached_at"] is not None

        # Lowering it again relaxes the open resolution track; the response breach stays on record.
        await sup.say(f"优先级 {number} 咨询")
        t = await ticket(rt, number)
        assert t.data["sla"]["cell"] == "咨询×全厂×工作时间"
        assert t.data["sla"]["response"]["breached_at"] is not None
        assert t.resolution_due == at(2026, 11, 20, 13, 0)  # 1440 business minutes: Wed 9 h + Thu 10 h + Fri 5 h


async def test_reprioritising_a_met_track_leaves_it_met(database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(WED_0900)
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-rp-2", "中控黑屏")
        clock.advance(timedelta(minutes=30))
        await assign_and_accept(rt, number, "tech-wang")  # response met at 09:30
        await PlaygroundUser(client, "admin").say(f"优先级 {number} 紧急")
        t = await ticket(rt, number)
        assert t.data["sla"]["response"]["met"] is True
        assert t.resolution_due == at(2026, 11, 18, 17, 0)
        assert "sla.response.breach" not in await timers(rt, number)


@pytest.mark.parametrize(
    ("user", "text", "reply"),
    [
        ("tech-wang", "优先级 {n} 紧急", "抱歉"),
        ("cust-rp-3", "影响 {n} 全厂", "抱歉"),
        ("sup-li", "优先级 {n} 超级紧急", "无法识别的优先级"),
        ("sup-li", "影响 {n} 全世界", "无法识别的影响范围"),
        ("sup-li", "优先级 {n}", "用法"),
        ("sup-li", "优先级 GD-20200101-0001 紧急", "没有找到工单"),
        ("sup-li", "优先级 {n} 常规", "已经是"),
    ],
)
async def test_bad_or_refused_reprioritisation_changes_nothing(database_url: str, tmp_path: Path, user: str,
                                                                text: str, reply: str) -> None:
    clock = FixedClock(WED_0900)
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-rp-3", "中控黑屏")
        before = await ticket(rt, number)
        person = PlaygroundUser(client, user)
        await person.say(text.format(n=number))
        assert reply in await person.last_text()
        after = await ticket(rt, number)
        assert (after.priority, after.impact, after.response_due) == (before.priority, before.impact,
                                                                      before.response_due)


# --- cancel ----------------------------------------------------------------------------------


async def test_the_customer_cancels_before_acceptance_and_every_sla_timer_stops(database_url: str,
                                                                                 tmp_path: Path) -> None:
    clock = FixedClock(WED_0900)
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-cx-1", "中控黑屏")
        offered = await ticket(rt, number)
        assert offered.status is S.DISPATCHED and offered.assignee_id
        customer = PlaygroundUser(client, "cust-cx-1")
        await customer.say(f"取消工单 {number}")
        assert "原因" in await customer.last_text()
        assert (await ticket(rt, number)).status is S.DISPATCHED

        await customer.say(f"取消工单 {number} 已经自己修好了")
        assert "已取消" in await customer.last_text()
        t = await ticket(rt, number)
        assert t.status is S.CANCELLED
        assert await timers(rt, number) == {}  # no SLA timer left pending
        # The technician's offer card is closed and they are told.
        tech = PlaygroundUser(client, offered.assignee_id or "")
        offers = [c for c in await tech.cards("offer") if c["ticket_number"] == number]
        assert offers and all(c["state"] != "open" for c in offers)
        assert any(number in text and "取消" in text for text in await tech.texts())
        body = await api_ticket(client, number)
        moved = [e for e in body["audit"] if e["kind"] == "status_changed" and e["payload"]["to"] == "cancelled"]
        assert len(moved) == 1 and moved[0]["actor_id"] == "cust-cx-1"
        assert moved[0]["payload"]["reason"] == "已经自己修好了"
        # Nothing fires later.
        await advance_to(rt, clock, at(2026, 11, 25, 9, 0))
        assert "sla_breached" not in [e["kind"] for e in (await api_ticket(client, number))["audit"]]


async def test_after_acceptance_only_staff_may_cancel(database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(WED_0900)
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-cx-2", "中控黑屏")
        await assign_and_accept(rt, number, "tech-wang")
        customer = PlaygroundUser(client, "cust-cx-2")
        await customer.say(f"取消工单 {number} 不想修了")
        assert "技师已接单" in await customer.last_text()
        tech = PlaygroundUser(client, "tech-wang")
        await tech.say(f"取消工单 {number} 客户不在")
        assert "主管" in await tech.last_text()
        stranger = PlaygroundUser(client, "cust-cx-other")
        await stranger.say(f"取消工单 {number} 捣乱")
        assert "没有找到工单" in await stranger.last_text()
        assert (await ticket(rt, number)).status is S.ACCEPTED

        sup = PlaygroundUser(client, "sup-li")
        await sup.say(f"取消工单 {number} 客户要求取消")
        assert "已取消" in await sup.last_text()
        assert (await ticket(rt, number)).status is S.CANCELLED
        assert any(number in text and "取消" in text for text in await customer.texts())
        assert any(number in text and "取消" in text for text in await tech.texts())
        await sup.say(f"取消工单 {number} 再取消一次")
        assert "已取消" in await sup.last_text() and "不能" in await sup.last_text()


async def test_a_cancelled_ticket_leaves_the_sla_compliance_figures(database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(WED_0900)
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        breached = await report(client, "cust-cx-3", "中控黑屏")
        kept = await report(client, "cust-cx-4", "中控黑屏")
        await advance_to(rt, clock, at(2026, 11, 18, 13, 5))  # both response deadlines (13:00) passed
        assert (await ticket(rt, breached)).data["sla"]["response"]["breached_at"]
        sup = PlaygroundUser(client, "sup-li")
        await sup.say(f"取消工单 {breached} 重复报修")
        await sup.say("报表 今天")
        text = await sup.last_text()
        line = next(line for line in text.splitlines() if line.strip().startswith("常规："))
        assert re.search(r"响应 0\.0%（达成 0/超时 1）", line), line  # only the ticket still open counts
        assert kept in text and f"{breached} 响应超时" not in text


async def test_a_question_without_fault_words_becomes_a_consultation_with_the_consult_command(
        database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(WED_0900)
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        customer = PlaygroundUser(client, "cust-consult")
        await customer.say("咨询 打印机怎么连无线网络")
        number = re.search(r"GD-\d{8}-\d{4}", "".join(await customer.texts()))
        assert number, await customer.texts()
        body = await api_ticket(client, number.group(0))
        assert (body["priority"], body["impact"]) == ("咨询", "单用户")
        assert body["data"]["sla"]["cell"] == "咨询×单用户×工作时间"
        await customer.say("咨询")
        assert "请写明要咨询的问题" in await customer.last_text()
