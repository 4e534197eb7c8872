"""Every refusal by role or ownership is answered politely and audited once (issue 19, items 3 and 21).

The refusal is recorded by one mechanism (the conversation's command runner, in a small
transaction of its own), whether the role check is the command registry's, a chat module's or
the core's, and whether the command is typed or a card is pressed.
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from storage.tables import AuditEventRow
from tests.conftest import runtime_of
from tests.test_lifecycle_support import Person, in_progress, report


async def refusals(client: TestClient, kind: str = "command_refused") -> list[AuditEventRow]:
    async with runtime_of(client).sessions() as session:
        rows = await session.execute(select(AuditEventRow).where(AuditEventRow.kind == kind)
                                     .order_by(AuditEventRow.seq))
        return list(rows.scalars().all())


# (who, what they send, the command word recorded, a phrase of the polite answer)
PRIVILEGED: list[tuple[str, str, str, str]] = [
    ("tech-wang", "模板", "模板", "只有主管和管理员可以使用"),
    ("cust-refused", "模板 设置 完工照片 2", "模板", "只有主管和管理员可以使用"),
    ("sup-li", "模板 设置 完工照片 2", "模板", "没有权限"),
    ("sup-li", "节假日 设置 2027-02-05 休息 春节", "节假日", "没有权限"),
    ("tech-wang", "节假日 设置 2027-02-05 休息", "节假日", "只有主管和管理员可以使用"),
    ("sup-li", "重开未签字工单", "重开未签字工单", "只有管理员可以使用"),
    ("tech-wang", "重开未签字工单", "重开未签字工单", "只有管理员可以使用"),
    ("tech-wang", "SLA 设置 紧急 全厂 工作时间 响应 10", "SLA", "只有主管和管理员可以使用"),
    ("cust-refused", "SLA 回滚 0", "SLA", "只有主管和管理员可以使用"),
    ("sup-li", "SOP 加步骤 机械类 检查底盘螺栓", "SOP", "没有权限"),
    ("tech-wang", "SOP 加步骤 机械类 检查底盘螺栓", "SOP", "没有权限"),
    ("tech-wang", "报表", "报表", "只有主管和管理员可以使用"),
    ("qa-sun", "报表 7天", "报表", "只有主管和管理员可以使用"),
    ("tech-wang", "根因 GD-20261123-0001 夜班无人", "根因", "只有主管和管理员可以使用"),
    ("cust-refused", "规则 添加 机械类 雨刮器", "规则", "只有系统管理员可以使用"),
    ("tech-wang", "分诊", "分诊", "分诊只有主管和管理员可以操作"),
    ("cust-refused", "测试派单 GD-20261123-0001", "测试派单", "「测试派单」只有主管和管理员可以使用"),
]


@pytest.mark.parametrize(("user", "text", "command", "answer"), PRIVILEGED,
                         ids=[f"{u}:{t.split()[0]}" for u, t, _c, _a in PRIVILEGED])
async def test_a_privileged_command_refused_by_role_is_audited_once(
        app_client: TestClient, user: str, text: str, command: str, answer: str) -> None:
    person = Person(app_client, user)
    await person.say(text)
    assert answer in await person.last_text()
    (event,) = await refusals(app_client)
    assert event.actor_id == user
    assert event.payload["command"] == command and event.payload["text"] == text
    assert event.payload["role"] in {"technician", "customer", "supervisor", "quality"}
    assert event.payload["reply"] == await person.last_text()


async def test_a_technician_acting_on_another_technicians_ticket_is_audited_on_that_ticket(
        app_client: TestClient) -> None:
    number = await in_progress(app_client, "cust-owner", "tech-wang", photos=3)
    other = Person(app_client, "tech-zhang")
    for text in (f"完工 {number}", f"方案 {number} 换压缩机", f"等待备件 {number} 压缩机"):
        await other.say(text)
        assert f"工单 {number} 不是派给您的" in await other.last_text()
    await other.say(f"拒单 {number} 太远")
    assert "没有派给您" in await other.last_text()
    events = await refusals(app_client)
    assert [(e.actor_id, e.payload["command"], e.ticket_number) for e in events] == [
        ("tech-zhang", "完工", number), ("tech-zhang", "方案", number), ("tech-zhang", "等待备件", number),
        ("tech-zhang", "拒单", number)]
    # The refusals are on the ticket's own trail, where its history is read.
    trail = (await (await app_client.get(f"/api/tickets/{number}")).json())["audit"]
    assert [e["kind"] for e in trail].count("command_refused") == 4


async def test_a_refused_card_press_is_on_the_tickets_trail(app_client: TestClient) -> None:
    number = await report(app_client, "cust-card", "中控黑屏")
    ticket_before = await (await app_client.get(f"/api/tickets/{number}")).json()
    offered_to = ticket_before["assignee_id"]
    (offer,) = [c for c in await Person(app_client, offered_to).cards("offer") if c["ticket_number"] == number]
    intruder = Person(app_client, "tech-zhang" if offered_to != "tech-zhang" else "tech-wang")
    await intruder.press(offer["id"], "accept")
    assert await intruder.last_text() == "这张卡片不是发给您的，无法操作。"
    (event,) = await refusals(app_client, "card_action_refused")
    assert event.ticket_number == number and event.actor_id == intruder.user
    assert event.payload["card_id"] == offer["id"] and event.payload["action"] == "accept"
    assert event.payload["reason"] == "not_recipient"
    assert await refusals(app_client) == []  # one event per refusal, not two
    trail = (await (await app_client.get(f"/api/tickets/{number}")).json())["audit"]
    assert "card_action_refused" in [e["kind"] for e in trail]

