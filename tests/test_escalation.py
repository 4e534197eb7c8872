"""The dual track with a FixedClock and the in-process engine: reminders, escalation cards for the
right people, 确认 / 转派, the root-cause task, the second level and reminder aggregation."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.clock import FixedClock
from core.model import TicketStatus
from tests.playground_client import PlaygroundUser
from tests.sla_support import (
    advance,
    advance_to,
    assign_and_accept,
    at,
    cards,
    fixed_clock_app,
    report,
    runtime,
    ticket,
    timers,
)

WED_0900 = at(2026, 11, 18, 9, 0)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(WED_0900)


async def test_unassigned_ticket_reminds_and_escalates_to_every_supervisor(database_url: str, tmp_path: Path,
                                                                           clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-esc-1", "机器坏了")  # not classified: waits in 待分诊
        assert (await ticket(rt, number)).status is TicketStatus.TRIAGE
        await advance_to(rt, clock, at(2026, 11, 18, 12, 44))
        assert await cards(client, "sup-li", "reminder") == []
        await advance_to(rt, clock, at(2026, 11, 18, 12, 45))
        for supervisor in ("sup-li", "sup-chen"):
            reminders = await cards(client, supervisor, "reminder")
            assert len(reminders) == 1 and reminders[0]["urgent"] is True
            assert number in reminders[0]["title"] and "13:00" in reminders[0]["body"]
        assert await cards(client, "sup-li", "escalation") == []

        await PlaygroundUser(client, "tech-zhang").say("下班")
        await advance_to(rt, clock, at(2026, 11, 18, 13, 0))
        for supervisor in ("sup-li", "sup-chen"):
            escalations = await cards(client, supervisor, "escalation")
            assert len(escalations) == 1
            card = escalations[0]
            assert card["urgent"] and number in card["title"] and "响应超时" in card["title"]
            assert [a["label"] for a in card["actions"]] == ["确认", "转派"]
            options = card["fields"][0]["options"]
            assert {"tech-wang", "tech-zhang"} <= {o["value"] for o in options}
            # Best first (on duty, skilled for the category, least loaded), each with duty and load.
            assert all(("在岗·" in o["label"] or "离岗·" in o["label"]) and "单）" in o["label"] for o in options)
            on_duty = ["在岗" in o["label"] for o in options]
            assert on_duty == sorted(on_duty, reverse=True)
            assert options[-1]["value"] == "tech-zhang" and "离岗" in options[-1]["label"]  # went off duty
        # The quality group is copied; the first supervisor (by id) owns the root-cause task.
        cc = await cards(client, "qa-sun", "reminder")
        assert len(cc) == 1 and number in cc[0]["title"] and cc[0]["urgent"] is False
        tasks = await cards(client, "sup-chen", "task")
        assert len(tasks) == 1 and tasks[0]["title"] == f"超时根因分析：{number}"
        assert tasks[0]["fields"][0]["required"] is True
        assert await cards(client, "sup-li", "task") == []
        t = await ticket(rt, number)
        assert t.data["sla"]["response"]["breached_at"] and t.data["sla"]["response"]["met"] is False

        # 确认 by one supervisor settles both copies and stops the second level.
        sup_li = PlaygroundUser(client, "sup-li")
        card_id = (await cards(client, "sup-li", "escalation"))[0]["id"]
        await sup_li.press(card_id, "ack")
        mine = (await cards(client, "sup-li", "escalation"))[0]
        theirs = (await cards(client, "sup-chen", "escalation"))[0]
        assert mine["state"] == "used" and "已确认" in mine["closed_note"]
        assert theirs["state"] == "used" and "主管 李强" in theirs["closed_note"]
        t = await ticket(rt, number)
        assert t.data["sla"]["response"]["ack_by"] == "sup-li"
        await advance(rt, clock, hours=2)
        assert await cards(client, "admin", "escalation") == []
        detail = await (await client.get(f"/api/tickets/{number}")).json()
        kinds = [e["kind"] for e in detail["audit"]]
        assert "sla_breached" in kinds and "sla_escalation_acknowledged" in kinds


async def test_unacknowledged_breach_goes_to_the_director(database_url: str, tmp_path: Path,
                                                         clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-esc-2", "机器坏了")
        await advance_to(rt, clock, at(2026, 11, 18, 13, 0))
        await advance_to(rt, clock, at(2026, 11, 18, 13, 59))
        assert await cards(client, "admin", "escalation") == []
        await advance_to(rt, clock, at(2026, 11, 18, 14, 0))
        level2 = await cards(client, "admin", "escalation")
        assert len(level2) == 1 and level2[0]["title"].startswith("SLA 二级升级")
        assert (await ticket(rt, number)).data["sla"]["response"]["level2_at"]
        await advance(rt, clock, hours=3)
        assert len(await cards(client, "admin", "escalation")) == 1  # once


async def test_breach_goes_to_the_direct_supervisor_and_reassign_works(database_url: str, tmp_path: Path,
                                                                      clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-esc-3", "中控黑屏")
        await assign_and_accept(rt, number, "tech-wang")
        await advance_to(rt, clock, at(2026, 11, 20, 12, 45))
        reminders = await cards(client, "tech-wang", "reminder")
        assert len(reminders) == 1 and reminders[0]["urgent"] and "解决即将超时" in reminders[0]["title"]
        assert await cards(client, "sup-li", "reminder") == []

        await advance_to(rt, clock, at(2026, 11, 20, 13, 0))
        escalation = await cards(client, "sup-li", "escalation")
        assert len(escalation) == 1 and "解决超时" in escalation[0]["title"]
        assert await cards(client, "sup-chen", "escalation") == []  # tech-wang's supervisor only
        assert any("已超时" in c["title"] for c in await cards(client, "tech-wang", "reminder"))
        assert len(await cards(client, "sup-li", "task")) == 1

        sup_li = PlaygroundUser(client, "sup-li")
        card_id = escalation[0]["id"]
        await sup_li.press(card_id, "reassign")  # nobody selected
        assert "请先在「转派给」中选择" in await sup_li.last_text()
        assert (await cards(client, "sup-li", "escalation"))[0]["state"] == "open"
        await sup_li.press(card_id, "reassign", {"technician": "wh-zhao"})
        assert "不是在岗技师" in await sup_li.last_text()

        await sup_li.press(card_id, "reassign", {"technician": "tech-zhang"})
        t = await ticket(rt, number)
        assert (t.assignee_id, t.status) == ("tech-zhang", TicketStatus.DISPATCHED)
        assert t.data["sla"]["resolution"]["ack_by"] == "sup-li"
        pressed = (await cards(client, "sup-li", "escalation"))[0]
        assert pressed["state"] == "used" and "转派给 技师 张师傅" in pressed["closed_note"]
        assert any(number in text and "转派给您" in text for text in await PlaygroundUser(client, "tech-zhang").texts())
        assert "sla.resolution.level2" not in await timers(rt, number)
        await advance(rt, clock, hours=2)
        assert await cards(client, "admin", "escalation") == []


async def test_reassign_from_a_state_that_forbids_it_changes_nothing(database_url: str, tmp_path: Path,
                                                                    clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-esc-4", "中控黑屏")
        await assign_and_accept(rt, number, "tech-wang")
        await advance_to(rt, clock, at(2026, 11, 20, 13, 0))
        from tests.sla_support import force

        await force(rt, number, status=TicketStatus.PENDING_QC)
        sup_li = PlaygroundUser(client, "sup-li")
        card_id = (await cards(client, "sup-li", "escalation"))[0]["id"]
        await sup_li.press(card_id, "reassign", {"technician": "tech-zhang"})
        assert "不能执行「转派」" in await sup_li.last_text()
        t = await ticket(rt, number)
        assert t.assignee_id == "tech-wang" and t.data["sla"]["resolution"]["ack_by"] is None
        assert (await cards(client, "sup-li", "escalation"))[0]["state"] == "open"


async def test_root_cause_task_is_required_and_nagged_until_filled(database_url: str, tmp_path: Path,
                                                                  clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-esc-5", "中控黑屏")
        await assign_and_accept(rt, number, "tech-wang")
        await advance_to(rt, clock, at(2026, 11, 20, 13, 0))
        sup_li = PlaygroundUser(client, "sup-li")
        task = (await cards(client, "sup-li", "task"))[0]
        await sup_li.press(task["id"], "submit", {"reason": "  "})
        assert "请填写超时根因" in await sup_li.last_text()
        assert (await cards(client, "sup-li", "task"))[0]["state"] == "open"

        before = len(await cards(client, "sup-li", "reminder"))
        await advance_to(rt, clock, at(2026, 11, 20, 17, 0))  # 4 hours later
        nags = [c for c in await cards(client, "sup-li", "reminder") if "待填写" in c["title"]]
        assert len(nags) == 1 and len(await cards(client, "sup-li", "reminder")) == before + 1
        assert "sla.resolution.rootcause" in await timers(rt, number)

        await sup_li.press(task["id"], "submit", {"reason": "夜班无指定接单人"})
        done = (await cards(client, "sup-li", "task"))[0]
        assert done["state"] == "used" and "夜班无指定接单人" in done["closed_note"]
        t = await ticket(rt, number)
        assert t.data["sla"]["resolution"]["root_cause"]["reason"] == "夜班无指定接单人"
        assert "sla.resolution.rootcause" not in await timers(rt, number)
        assert any("根因已归档" in c["title"] for c in await cards(client, "qa-sun", "reminder"))
        await advance(rt, clock, hours=8)
        assert len([c for c in await cards(client, "sup-li", "reminder") if "待填写" in c["title"]]) == 1


async def test_reminders_to_one_person_are_aggregated(database_url: str, tmp_path: Path, clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        numbers = [await report(client, f"cust-agg-{n}", "中控黑屏") for n in range(4)]
        for number in numbers:
            await assign_and_accept(rt, number, "tech-wang")
        await advance_to(rt, clock, at(2026, 11, 20, 12, 45))  # four resolution reminders fall due at once
        reminders = await cards(client, "tech-wang", "reminder")
        assert len(reminders) == 1 and reminders[0]["urgent"]
        await advance(rt, clock, seconds=60)  # the window closes: one digest with the other three
        reminders = await cards(client, "tech-wang", "reminder")
        assert len(reminders) == 2
        digest = reminders[1]
        assert digest["title"] == "SLA 提醒汇总（3 条）" and digest["urgent"]
        assert sum(n in digest["body"] for n in numbers) == 3
        await advance(rt, clock, seconds=60)  # nothing new: the window just closes
        assert len(await cards(client, "tech-wang", "reminder")) == 2


async def test_pressing_a_settled_escalation_card_again(database_url: str, tmp_path: Path, clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        await report(client, "cust-esc-6", "机器坏了")
        await advance_to(rt, clock, at(2026, 11, 18, 13, 0))
        sup_li, sup_chen = PlaygroundUser(client, "sup-li"), PlaygroundUser(client, "sup-chen")
        await sup_li.press((await cards(client, "sup-li", "escalation"))[0]["id"], "ack")
        await sup_chen.press((await cards(client, "sup-chen", "escalation"))[0]["id"], "ack")
        assert "已经处理过了" in await sup_chen.last_text()
        await sup_chen.press((await cards(client, "sup-li", "escalation"))[0]["id"], "ack")
        assert "不是发给您的" in await sup_chen.last_text()


async def test_root_cause_can_be_filed_by_chat_command(database_url: str, tmp_path: Path, clock: FixedClock) -> None:
    """WeCom cards cannot take typed text: `根因 <号> <原因>` submits the same task."""
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-esc-7", "中控黑屏")
        await assign_and_accept(rt, number, "tech-wang")
        await advance_to(rt, clock, at(2026, 11, 20, 13, 0))
        sup_li, tech = PlaygroundUser(client, "sup-li"), PlaygroundUser(client, "tech-wang")
        task = (await cards(client, "sup-li", "task"))[0]
        assert f"根因 {number}" in task["body"]

        await sup_li.say(f"根因 {number}")
        assert "用法" in await sup_li.last_text()
        await tech.say(f"根因 {number} 随便写写")
        assert "权限" in await tech.last_text() or "管理" in await tech.last_text()
        await sup_li.say(f"根因 {number} 夜班无指定接单人")
        assert (await cards(client, "sup-li", "task"))[0]["state"] == "used"
        assert (await ticket(rt, number)).data["sla"]["resolution"]["root_cause"]["reason"] == "夜班无指定接单人"
        await sup_li.say(f"根因 {number} 再交一次")
        assert "没有待填写" in await sup_li.last_text()
