"""帮助 per role, from the command registry that checks roles; staff get staff answers (issue 19, items 15 and 22)."""

from __future__ import annotations

import importlib
import re

import pytest
from aiohttp.test_utils import TestClient

from bot.chat.conversation import _TEXT_COMMANDS, HELP_TEXT, help_for, may_use
from bot.runtime import COMMAND_MODULES
from core.inbound import InboundKind, InboundMessage
from core.model import Person, Role
from tests.conftest import runtime_of
from tests.test_lifecycle_support import Person as User
from tests.test_lifecycle_support import in_progress, report

LINE = re.compile(r"^· (.+?)：", re.MULTILINE)
# Every command word a role could be shown, for the "is not listed" side.
EVERYTHING = {"进度", "工单", "签到", "开始", "完工", "选择", "等待备件", "备件进度", "备件到位", "方案", "同意方案",
              "不同意方案", "质检通过", "质检不通过", "仍未修好", "SLA", "节假日", "节假日 设置", "设备编号", "SOP",
              "SOP 列表", "SOP 导入", "模板", "模板 设置", "重开未签字工单", "规则", "确认", "取消", "分诊", "技师",
              "上班", "下班", "派单规则", "测试派单", "转派", "接单", "拒单", "根因", "报表", "位置",
              "门店", "人员", "联动", "联动 检查", "地址", "车牌"}
EXPECTED: dict[str, set[str]] = {
    "cust-help": {"进度", "工单", "同意方案", "不同意方案", "仍未修好", "设备编号", "位置", "地址", "车牌"},
    "tech-wang": {"进度", "工单", "签到", "开始", "完工", "选择", "等待备件", "备件进度", "备件到位", "方案", "SOP",
                  "SOP 列表", "上班", "下班", "接单", "拒单", "位置"},
    "wh-zhao": {"进度", "工单", "备件进度", "备件到位", "SOP 列表"},
    "qa-sun": {"进度", "工单", "质检通过", "质检不通过", "SOP 列表"},
    "sup-li": {"进度", "工单", "备件进度", "备件到位", "质检通过", "质检不通过", "SLA", "节假日", "SOP 列表", "模板",
               "分诊", "技师", "派单规则", "测试派单", "转派", "根因", "报表"},
    "admin": {"进度", "工单", "备件进度", "备件到位", "质检通过", "质检不通过", "SLA", "节假日", "节假日 设置",
              "SOP 列表", "SOP 导入", "模板", "模板 设置", "重开未签字工单", "规则", "确认", "取消", "分诊", "技师",
              "派单规则", "测试派单", "转派", "根因", "报表", "门店", "人员", "联动", "联动 检查"},
}


def listed(help_text: str) -> set[str]:
    """The commands a 帮助 answer lists: each usage's alternatives (｜), their words before any argument."""
    found: set[str] = set()
    for usage in LINE.findall(help_text):
        for alternative in usage.split("｜"):
            words = alternative.split(" ")
            if len(words) > 1 and not re.search(r"[\[\]<>]|工单号|工号|键|编号|原因|说明|内容|纬度|分类", words[1]):
                found.add(f"{words[0]} {words[1].split('/')[0]}")  # a sub-command: 节假日 设置
            else:
                found.add(words[0])
    return found


@pytest.mark.parametrize("user", list(EXPECTED))
async def test_help_lists_what_the_role_may_use_and_nothing_else(app_client: TestClient, user: str) -> None:
    person = User(app_client, user)
    await person.say("帮助")
    answer = await person.last_text()
    shown = listed(answer)
    assert EXPECTED[user] <= shown, EXPECTED[user] - shown
    assert not (EVERYTHING - EXPECTED[user]) & shown, (EVERYTHING - EXPECTED[user]) & shown
    assert not re.search(r"[A-Za-z]{3,} [A-Za-z]{3,}", answer), "an English entry"  # "test dispatch"
    if user == "cust-help":
        assert answer.startswith(HELP_TEXT)
    else:  # staff are not told how to report a fault
        assert "直接描述故障" not in answer and "报修" not in answer.split("\n", 1)[0]


def test_help_is_the_registry_itself() -> None:
    """A command is listed for a role exactly when the runner lets that role run it (lines that
    narrow it further only narrow)."""
    for module in COMMAND_MODULES:  # every chat command, as the app registers them
        importlib.import_module(module)
    assert len(_TEXT_COMMANDS) > 30
    for role in Role:
        person = Person(id=f"p-{role.value}", name="某人", role=role)
        text = help_for(person)
        for command in _TEXT_COMMANDS:
            for line in command.help:
                shown = f"· {line.usage}：" in text
                if not may_use(person, command):
                    assert not shown, (role, line.usage)
                elif line.roles is None:
                    assert shown, (role, line.usage)


async def test_entering_the_chat_greets_staff_as_staff(app_client: TestClient) -> None:
    runtime = runtime_of(app_client)
    for user in ("tech-wang", "cust-enter"):
        message = InboundMessage("local", f"enter-{user}", user, InboundKind.ENTER)
        await runtime.inbox.accept(message)
    await runtime.processor.drain()
    tech_greeting = await User(app_client, "tech-wang").last_text()
    assert "签到" in tech_greeting and "直接描述故障" not in tech_greeting
    assert await User(app_client, "cust-enter").last_text() == HELP_TEXT


@pytest.mark.parametrize("text", ["你好", "今天天气不错", "能开发票吗"])
async def test_small_talk_from_staff_gets_their_commands_not_the_customer_welcome(app_client: TestClient,
                                                                                  text: str) -> None:
    tech = User(app_client, "tech-wang")
    await tech.say(text)
    answer = await tech.last_text()
    assert "完工" in answer and "请直接描述" not in answer and "创建工单" not in answer


async def test_closing_a_ticket_by_text_is_explained_to_staff_and_customers(app_client: TestClient) -> None:
    number = await in_progress(app_client, "cust-close", "tech-wang", photos=3)
    tech, customer = User(app_client, "tech-wang"), User(app_client, "cust-close")
    for text in ("结案", f"结案 {number}"):
        await tech.say(text)
        assert "只能由客户签字结案" in await tech.last_text()
    await User(app_client, "sup-li").say(f"结案 {number}")
    assert "只能由客户签字结案" in await User(app_client, "sup-li").last_text()
    await customer.say("结案")
    assert "签字确认后结案" in await customer.last_text()
    tickets = await (await app_client.get("/api/tickets")).json()
    assert [t["status"] for t in tickets if t["number"] == number] == ["in_progress"]


@pytest.mark.parametrize(("user", "answer"), [
    ("tech-zhang", "您目前没有派给您的工单"),
    ("wh-zhao", "目前没有等待备件的工单"),
    ("qa-sun", "目前没有待质检的工单"),
    ("sup-li", "目前没有工单"),
])
async def test_progress_without_tickets_gives_staff_a_staff_answer(app_client: TestClient, user: str,
                                                                   answer: str) -> None:
    person = User(app_client, user)
    await person.say("进度")
    text = await person.last_text()
    assert answer in text and "描述" not in text and "故障" not in text


async def test_progress_lists_each_role_its_own_work(app_client: TestClient) -> None:
    number = await in_progress(app_client, "cust-parts", "tech-wang")
    other = await report(app_client, "cust-other", "中控黑屏")
    tech = User(app_client, "tech-wang")
    await tech.say(f"等待备件 {number} 压缩机继电器")
    keeper = User(app_client, "wh-zhao")
    await keeper.say("进度")
    listing = await keeper.last_text()
    assert number in listing and other not in listing and "等待备件" in listing
    await tech.say("进度")
    assert number in await tech.last_text() and other not in await tech.last_text()
    boss = User(app_client, "sup-li")
    await boss.say("进度")
    assert number in await boss.last_text() and other in await boss.last_text()
