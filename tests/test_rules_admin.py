"""Admin rule commands end to end through the playground: versioned, audited, live at once, 确认 for risky ones."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aiohttp.test_utils import TestClient

from bot.rules.admin import PENDING_TTL
from core.clock import FixedClock
from core.model import TicketStatus
from nlp.rule_commands import RULE_HELP
from nlp.rules import PRECEDENCE_RULE_ZH
from tests.conftest import runtime_of
from tests.playground_client import PlaygroundUser
from tests.test_lifecycle_support import clock_client  # noqa: F401
from tests.test_rules_admin_support import add_admin, audit_events, classify, report, rule_payload, rule_versions


async def test_added_keyword_routes_the_next_report_without_restart(app_client: TestClient) -> None:
    before = await report(app_client, "cust-r1", "雨刮器坏了")
    assert before.status == TicketStatus.TRIAGE and before.category is None

    admin = PlaygroundUser(app_client, "admin")
    await admin.say("规则 添加 机械类 雨刮器 咯吱咯吱")
    reply = await admin.last_text()
    assert "已向「机械类」添加 2 个关键词：雨刮器、咯吱咯吱" in reply and "0 → 1" in reply and "已生效" in reply

    versions = await rule_versions(app_client)
    assert [(v["version"], v["actor_id"]) for v in versions] == [(1, "admin")]
    assert "雨刮器" in versions[0]["note"]
    payload = await rule_payload(app_client, 1)
    assert payload["version"] == 1
    assert "雨刮器" in next(c for c in payload["categories"] if c["name"] == "机械类")["keywords"]
    changed = await audit_events(app_client, "rules_changed")
    assert len(changed) == 1 and changed[0].actor_id == "admin"
    assert changed[0].payload["diff"]["keywords_added"] == {"机械类": ["雨刮器", "咯吱咯吱"]}
    assert changed[0].payload["version"] == 1 and changed[0].payload["previous_version"] == 0

    assert runtime_of(app_client).rulebook.version == 1  # installed in this process at once
    after = await report(app_client, "cust-r2", "雨刮器坏了")
    assert after.status in {TicketStatus.PENDING_DISPATCH, TicketStatus.DISPATCHED} and after.category == "机械类"


async def test_list_help_and_test_are_read_only(app_client: TestClient) -> None:
    admin = PlaygroundUser(app_client, "admin")
    await admin.say("规则")
    listing = await admin.last_text()
    assert "当前规则 v0（出厂默认）" in listing and "【电控类】优先级 1" in listing and "【机械类】优先级 2" in listing
    assert "异响" in listing and PRECEDENCE_RULE_ZH in listing
    await admin.say("规则 帮助")
    assert await admin.last_text() == RULE_HELP
    await admin.say("/规则 列表")
    assert "当前规则 v0" in await admin.last_text()

    await admin.say("规则 测试 没有异响，就是黑屏")
    dry = await admin.last_text()
    assert "不会修改规则" in dry and "分类：电控类" in dry and "被否定的关键词：异响" in dry
    assert "待确认" not in dry
    await admin.say("规则 测试 你好，多少钱")
    assert "分类：无" in await admin.last_text()
    assert await rule_versions(app_client) == []


async def test_history_and_rollback_store_new_versions(app_client: TestClient) -> None:
    admin = PlaygroundUser(app_client, "admin")
    await admin.say("规则 添加 机械类 雨刮器")
    await admin.say("规则 添加 机械类 门锁")
    await admin.say("规则 历史")
    history = await admin.last_text()
    assert history.index("v2（当前）") < history.index("v1 ") < history.index("v0 出厂默认规则")
    assert "系统管理员 周敏" in history and "门锁" in history

    await admin.say("规则 回滚 1")
    assert "已回滚到 v1 的规则，保存为新版本 v3" in await admin.last_text()
    assert "删除关键词：门锁" in await admin.last_text()
    assert [v["version"] for v in await rule_versions(app_client)] == [1, 2, 3]
    v1, v3 = await rule_payload(app_client, 1), await rule_payload(app_client, 3)
    assert v3 == {**v1, "version": 3}  # a copy; v1 and v2 are untouched
    assert "门锁" in str(await rule_payload(app_client, 2))
    assert classify(app_client, "门锁坏了").category is None
    assert classify(app_client, "雨刮器坏了").category == "机械类"
    rolled = (await audit_events(app_client, "rules_changed"))[-1]
    assert rolled.payload["rollback_to"] == 1 and rolled.payload["version"] == 3

    await admin.say("规则 回滚 v0")  # the shipped defaults; removes one keyword: no confirmation needed
    assert "保存为新版本 v4" in await admin.last_text()
    assert classify(app_client, "雨刮器坏了").category is None
    await admin.say("规则 回滚 4")
    assert "无需回滚" in await admin.last_text()
    assert len(await rule_versions(app_client)) == 4


async def test_deleting_a_category_waits_for_confirmation(app_client: TestClient) -> None:
    admin = PlaygroundUser(app_client, "admin")
    await admin.say("规则 删除分类 电控类")
    ask = await admin.last_text()
    assert "高风险" in ask and "删除分类「电控类」" in ask and "回复「确认」" in ask and "「取消」" in ask
    assert await rule_versions(app_client) == []
    assert classify(app_client, "中控黑屏").category == "电控类"
    pending = await audit_events(app_client, "rules_change_pending")
    assert len(pending) == 1 and pending[0].payload["change"] == {"type": "delete_category", "name": "电控类"}

    await admin.say("规则 测试 中控黑屏")
    dry = await admin.last_text()
    current, proposed = dry.split("待确认的修改")
    assert "当前规则 v0" in current and "分类：电控类" in current
    assert "生效后" in proposed and "分类：电控类" not in proposed

    await admin.say("确认")
    assert "已确认。已删除分类「电控类」" in await admin.last_text() and "0 → 1" in await admin.last_text()
    assert [v["version"] for v in await rule_versions(app_client)] == [1]
    assert [c["name"] for c in (await rule_payload(app_client, 1))["categories"]] == ["机械类"]
    assert classify(app_client, "中控黑屏").category != "电控类"
    changed = await audit_events(app_client, "rules_changed")
    assert changed[-1].payload["confirmed"] is True
    assert changed[-1].payload["diff"]["removed_categories"] == ["电控类"]

    await admin.say("确认")  # nothing pending any more
    assert "没有待确认的操作" in await admin.last_text()
    assert len(await rule_versions(app_client)) == 1


async def test_cancel_drops_a_risky_removal(app_client: TestClient) -> None:
    admin = PlaygroundUser(app_client, "admin")
    await admin.say("规则 删除 机械类 异响 抖动 漏油")
    assert "高风险" in await admin.last_text() and "删除 3 个关键词" in await admin.last_text()
    await admin.say("取消")
    assert "已取消待确认的修改" in await admin.last_text()
    await admin.say("确认")
    assert "没有待确认的操作" in await admin.last_text()
    assert await rule_versions(app_client) == []
    assert classify(app_client, "底盘有异响").category == "机械类"
    assert len(await audit_events(app_client, "rules_change_cancelled")) == 1

    await admin.say("规则 删除 机械类 异响 抖动")  # two keywords: below the bar, applied at once
    assert "已从「机械类」删除 2 个关键词" in await admin.last_text()
    assert [v["version"] for v in await rule_versions(app_client)] == [1]


async def test_risky_rollback_needs_confirmation_too(app_client: TestClient) -> None:
    admin = PlaygroundUser(app_client, "admin")
    await admin.say("规则 新增分类 电梯类 电梯故障")
    await admin.say("规则 添加 电梯类 困人 平层不准")
    assert classify(app_client, "电梯平层不准").category == "电梯类"
    await admin.say("规则 回滚 0")  # would delete 电梯类
    assert "高风险" in await admin.last_text() and "删除分类「电梯类」" in await admin.last_text()
    assert len(await rule_versions(app_client)) == 2
    await admin.say("确认")
    assert "已确认。回滚到 v0" in await admin.last_text()
    assert classify(app_client, "电梯平层不准").category != "电梯类"
    assert [c["name"] for c in (await rule_payload(app_client, 3))["categories"]] == ["电控类", "机械类"]


async def test_pending_changes_belong_to_one_admin(app_client: TestClient) -> None:
    admin = PlaygroundUser(app_client, "admin")
    other = await add_admin(app_client, "admin-2", "管理员 吴芳")
    await admin.say("规则 删除分类 机械类")
    await other.say("确认")
    assert "没有待确认的操作" in await other.last_text()
    assert await rule_versions(app_client) == []

    # The other admin renames the category meanwhile: the pending deletion can no longer apply.
    await other.say("规则 重命名 机械类 机械故障")
    assert "重命名为「机械故障」" in await other.last_text()
    await admin.say("确认")
    assert "已无法执行" in await admin.last_text() and "没有名为「机械类」的分类" in await admin.last_text()
    assert [v["version"] for v in await rule_versions(app_client)] == [1]
    assert classify(app_client, "底盘有异响").category == "机械故障"


async def test_a_new_risky_change_replaces_the_pending_one(app_client: TestClient) -> None:
    admin = PlaygroundUser(app_client, "admin")
    await admin.say("规则 删除分类 机械类")
    await admin.say("规则 删除分类 电控类")
    assert "之前待确认的「删除分类「机械类」及其全部关键词」已被这次替换" in await admin.last_text()
    await admin.say("确认")
    names = [c["name"] for c in (await rule_payload(app_client, 1))["categories"]]
    assert names == ["机械类"]


async def test_pending_change_expires(clock_client: tuple[TestClient, FixedClock]) -> None:  # noqa: F811
    client, clock = clock_client
    admin = PlaygroundUser(client, "admin")
    await admin.say("规则 删除分类 电控类")
    clock.advance(PENDING_TTL + timedelta(seconds=1))
    await admin.say("确认")
    assert "没有待确认的操作" in await admin.last_text()
    assert await rule_versions(client) == []


async def test_rules_confirmation_and_template_confirmation_do_not_collide(app_client: TestClient) -> None:
    admin = PlaygroundUser(app_client, "admin")
    # Only a template draft is pending: 确认 goes to the template feature.
    await admin.say("模板 设置 完工照片 0")
    assert "高风险" in await admin.last_text()
    await admin.say("确认")
    assert "流程模板已更新为 v1" in await admin.last_text()
    assert await rule_versions(app_client) == []

    # Only a rules change is pending: 确认 applies it and leaves the template alone.
    await admin.say("规则 删除分类 电控类")
    await admin.say("确认")
    assert "已确认" in await admin.last_text() and [v["version"] for v in await rule_versions(app_client)] == [1]
    async with runtime_of(app_client).uow() as uow:
        assert [r["version"] for r in await uow.config_history("workflow")] == [1]

    # 放弃 (the template's word) also drops a pending rules change.
    await admin.say("规则 删除 机械类 异响 抖动 漏油")
    assert "高风险" in await admin.last_text()
    await admin.say("放弃")
    assert "已取消待确认的修改" in await admin.last_text()


async def test_non_admins_are_refused_politely_and_audited(app_client: TestClient) -> None:
    for user in ("tech-wang", "cust-x", "sup-li"):
        person = PlaygroundUser(app_client, user)
        await person.say("规则 添加 机械类 雨刮器")
        assert "抱歉，规则管理命令只有系统管理员可以使用" in await person.last_text()
        await person.say("规则")
        assert "抱歉" in await person.last_text()
    assert await rule_versions(app_client) == []
    refused = await audit_events(app_client, "command_refused")
    assert [(e.actor_id, e.payload["command"]) for e in refused] == [
        ("tech-wang", "规则"), ("tech-wang", "规则"), ("cust-x", "规则"), ("cust-x", "规则"),
        ("sup-li", "规则"), ("sup-li", "规则")]
    assert refused[0].payload["text"] == "规则 添加 机械类 雨刮器" and refused[0].payload["role"] == "technician"
    assert refused[2].payload["role"] == "customer"

    # 确认 / 取消 from someone with nothing pending: a clear answer, nothing happens.
    customer = PlaygroundUser(app_client, "cust-x")
    await customer.say("确认")
    assert "没有待确认的操作" in await customer.last_text()


async def test_two_admins_changing_at_once_both_land(app_client: TestClient) -> None:
    first = PlaygroundUser(app_client, "admin")
    second = await add_admin(app_client, "admin-3", "管理员 郑洁")
    await asyncio.gather(first.say("规则 添加 机械类 雨刮器"), second.say("规则 添加 电控类 仪表盘不亮"))
    replies = [await first.last_text(), await second.last_text()]
    assert all("已生效" in r for r in replies), replies  # the one that lost the race was retried on the new rules
    assert [v["version"] for v in await rule_versions(app_client)] == [1, 2]
    keywords = {c["name"]: c["keywords"] for c in (await rule_payload(app_client, 2))["categories"]}
    assert "雨刮器" in keywords["机械类"] and "仪表盘不亮" in keywords["电控类"]
    assert runtime_of(app_client).rulebook.version == 2
