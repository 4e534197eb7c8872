"""The triage queue (faults the rules cannot place) and the answers to messages that are not faults."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from bot.chat.conversation import CONVERSATIONAL_REPLIES, HELP_TEXT
from core.model import TicketStatus
from tests.conftest import runtime_of
from tests.playground_client import PlaygroundUser
from tests.test_rules_admin_support import audit_events, report

ROUTED = {TicketStatus.PENDING_DISPATCH, TicketStatus.DISPATCHED}  # dispatch may offer the job at once


async def ticket_count(client: TestClient) -> int:
    async with runtime_of(client).uow() as uow:
        return len(await uow.list_tickets(limit=1000))


async def test_supervisor_lists_and_classifies_the_triage_queue(app_client: TestClient) -> None:
    first = await report(app_client, "cust-t1", "门锁坏了")
    second = await report(app_client, "cust-t2", "机器有问题，麻烦来看看")
    routed = await report(app_client, "cust-t3", "底盘有异响")
    assert first.status == second.status == TicketStatus.TRIAGE and routed.status in ROUTED
    supervisor = PlaygroundUser(app_client, "sup-li")
    assert any(first.number in t and "请分诊" in t for t in await supervisor.texts())  # told at intake

    await supervisor.say("分诊")
    queue = await supervisor.last_text()
    assert "待分诊工单 2 张" in queue and queue.index(first.number) < queue.index(second.number)
    assert routed.number not in queue and "可选分类：电控类、机械类" in queue

    await supervisor.say(f"分诊 {first.number.lower()} 機械類")  # lower-case number, traditional characters
    assert f"已将工单 {first.number} 分类为「机械类」" in await supervisor.last_text()
    async with runtime_of(app_client).uow() as uow:
        ticket = await uow.get_ticket(first.number)
        trail = await uow.audit_for_ticket(first.number)
    assert ticket is not None and ticket.status in ROUTED and ticket.category == "机械类"
    # Dispatch follows the move as for a new ticket: offered to a mechanical technician at once.
    assert ticket.status == TicketStatus.DISPATCHED and ticket.assignee_id in {"tech-zhang", "tech-wang"}
    assert ticket.data["classification"]["triaged"]["by"] == "sup-li"
    moved = next(e for e in trail if e.kind == "status_changed" and e.payload["transition"] == "classify")
    assert moved.payload == {"transition": "classify", "from": "triage", "to": "pending_dispatch",
                             "category": "机械类"} and moved.actor_id == "sup-li"
    told = (await PlaygroundUser(app_client, "cust-t1").texts())[1:]  # after the intake answer
    assert "已确认故障分类：机械类" in told[0] and "安排技师" in told[-1]

    await supervisor.say("分诊")
    assert "待分诊工单 1 张" in await supervisor.last_text() and first.number not in await supervisor.last_text()
    admin = PlaygroundUser(app_client, "admin")
    await admin.say(f"分诊 {second.number} 电控类")
    assert "分类为「电控类」" in await admin.last_text()
    await supervisor.say("分诊")
    assert "分诊队列是空的" in await supervisor.last_text()


async def test_triage_bad_input_changes_nothing(app_client: TestClient) -> None:
    waiting = await report(app_client, "cust-t4", "门锁坏了")
    routed = await report(app_client, "cust-t5", "底盘有异响")
    supervisor = PlaygroundUser(app_client, "sup-li")
    for command, answer in [
        (f"分诊 {waiting.number} 空调类", "没有「空调类」这个分类"),
        (f"分诊 {waiting.number}", "看不懂这条分诊命令"),
        (f"分诊 {waiting.number} 机械类 多余", "看不懂这条分诊命令"),
        ("分诊 12345 机械类", "看不懂这条分诊命令"),
        ("分诊 GD-20990101-0001 机械类", "没有找到工单"),
        (f"分诊 {routed.number} 电控类", "不在分诊队列中"),
        (f"分诊 {waiting.number} '; DROP TABLE tickets; --", "看不懂这条分诊命令"),
    ]:
        await supervisor.say(command)
        assert answer in await supervisor.last_text(), command
    async with runtime_of(app_client).uow() as uow:
        assert (t := await uow.get_ticket(waiting.number)) is not None and t.status == TicketStatus.TRIAGE
        assert t.category is None
        assert (r := await uow.get_ticket(routed.number)) is not None and r.category == "机械类"


async def test_triage_is_refused_politely_to_others_and_audited(app_client: TestClient) -> None:
    waiting = await report(app_client, "cust-t6", "门锁坏了")
    for user in ("tech-wang", "cust-t6"):
        person = PlaygroundUser(app_client, user)
        await person.say(f"分诊 {waiting.number} 机械类")
        assert "抱歉，分诊只有主管和管理员可以操作" in await person.last_text()
    refused = await audit_events(app_client, "command_refused")
    assert [(e.actor_id, e.payload["command"]) for e in refused] == [("tech-wang", "分诊"), ("cust-t6", "分诊")]
    async with runtime_of(app_client).uow() as uow:
        assert (t := await uow.get_ticket(waiting.number)) is not None and t.status == TicketStatus.TRIAGE


@pytest.mark.parametrize("text,intent", [
    ("你好", "greeting"),
    ("师傅好，在吗", "greeting"),
    ("谢谢师傅", "thanks"),
    ("换个刹车片多少钱", "price"),
    ("明天下午能预约上门吗", "booking"),
    ("能开发票吗", "invoice"),
    ("今天天气不错", "smalltalk"),
])
async def test_messages_that_are_not_faults_get_answers_not_tickets(app_client: TestClient, text: str,
                                                                    intent: str) -> None:
    assert runtime_of(app_client).rulebook.classify(text).intent == intent
    customer = PlaygroundUser(app_client, "cust-chat")
    await customer.say(text)
    assert await customer.last_text() == CONVERSATIONAL_REPLIES[intent]
    assert await ticket_count(app_client) == 0


async def test_status_question_lists_tickets_instead_of_reporting(app_client: TestClient) -> None:
    number = (await report(app_client, "cust-st", "中控黑屏")).number
    customer = PlaygroundUser(app_client, "cust-st")
    await customer.say("我的工单修到哪一步了")
    assert number in await customer.last_text() and await ticket_count(app_client) == 1
    assert CONVERSATIONAL_REPLIES["smalltalk"] == HELP_TEXT
