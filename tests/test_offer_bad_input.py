"""Bad input around offers and dispatch administration: a clear Chinese reply and nothing changed."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from core.commands import Transition
from storage.tables import AuditEventRow, PersonRow
from tests.playground_client import PlaygroundUser
from tests.test_dispatch_support import (
    advance,
    clocked,
    dispatch_versions,
    person,
    report,
    snapshot,
    the_offer,
    ticket,
)


async def _refusals(rt) -> list[dict]:  # type: ignore[no-untyped-def]
    async with rt.sessions() as session:
        rows = (await session.execute(select(AuditEventRow).where(AuditEventRow.kind == "command_refused"))).scalars()
        return [{"actor": r.actor_id, **r.payload} for r in rows]


async def _directory(rt) -> list[tuple]:  # type: ignore[no-untyped-def]
    async with rt.uow() as uow:
        entries = await uow.dispatch_store().entries(identities=True)
    return sorted((e.person_id, e.name, e.active, e.on_duty, e.store_id, e.max_load, sorted(e.identities.items()))
                  for e in entries)


async def test_double_accept_changes_nothing_the_second_time(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        number, _ = await report(client, "cust-1", "中控黑屏")
        tech, card = await the_offer(client, number)
        user = PlaygroundUser(client, tech)
        await user.press(card["id"], "accept")
        before = await snapshot(rt, number)
        await user.press(card["id"], "accept")
        assert await user.last_text() == "这张卡片已经处理过了。"
        await user.say(f"接单 {number}")
        assert "您已经接单了" in await user.last_text()
        assert await snapshot(rt, number) == before


async def test_accept_by_someone_not_offered_the_job(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        number, _ = await report(client, "cust-2", "中控黑屏")
        tech, card = await the_offer(client, number)
        assert tech == "tech-liu"
        before = await snapshot(rt, number)
        wang = PlaygroundUser(client, "tech-wang")
        await wang.press(card["id"], "accept")  # the card belongs to tech-liu
        assert await wang.last_text() == "这张卡片不是发给您的，无法操作。"
        await wang.say(f"接单 {number}")
        assert "没有派给您" in await wang.last_text()
        await wang.say(f"拒单 {number} 不想去")
        assert "没有派给您" in await wang.last_text()
        customer = PlaygroundUser(client, "cust-2")
        await customer.say(f"接单 {number}")
        assert "只有被派单的技师" in await customer.last_text()
        assert await snapshot(rt, number) == before
        (still_open,) = [c for c in await PlaygroundUser(client, "tech-liu").cards("offer")]
        assert still_open["state"] == "open"


async def test_accept_after_expiry(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, clock):
        number, _ = await report(client, "cust-3", "中控黑屏")
        tech, card = await the_offer(client, number)
        await advance(rt, clock, minutes=15)
        before = await snapshot(rt, number)
        assert before[2] == "tech-wang"  # moved on
        liu = PlaygroundUser(client, tech)
        await liu.press(card["id"], "accept")
        assert await liu.last_text() == "这张卡片已经处理过了。"
        await liu.say(f"接单 {number}")
        assert "派单已失效" in await liu.last_text()
        await liu.say("接单")
        assert await liu.last_text() == "您当前没有待接的派单。"
        assert await snapshot(rt, number) == before


async def test_accept_of_a_cancelled_ticket(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        number, _ = await report(client, "cust-4", "中控黑屏")
        tech, card = await the_offer(client, number)
        await rt.service.handle(Transition(number, "cancel"), await person(rt, "cust-4"))
        before = await snapshot(rt, number)
        assert before[0] == "cancelled"
        liu = PlaygroundUser(client, tech)
        await liu.press(card["id"], "accept")
        assert await liu.last_text() == "这张卡片已经处理过了。"
        await liu.say(f"接单 {number}")
        assert await liu.last_text() == f"工单 {number} 已取消，无需接单。"
        await liu.say(f"拒单 {number} 太远")
        assert await liu.last_text() == f"工单 {number} 已取消，无需接单。"
        assert await snapshot(rt, number) == before


async def test_decline_without_a_reason(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        number, _ = await report(client, "cust-5", "中控黑屏")
        tech, card = await the_offer(client, number)
        before = await snapshot(rt, number)
        liu = PlaygroundUser(client, tech)
        await liu.press(card["id"], "decline")
        assert "拒单需要原因" in await liu.last_text()
        await liu.press(card["id"], "decline", {"reason": "   "})
        assert "拒单需要原因" in await liu.last_text()
        await liu.say(f"拒单 {number}")
        assert "拒单需要写明原因" in await liu.last_text()
        await liu.press(card["id"], "shrug")
        assert "没有「shrug」这个操作" in await liu.last_text()
        assert await snapshot(rt, number) == before
        assert (await the_offer(client, number))[1]["state"] == "open"


async def test_unknown_technician_ids_in_admin_commands(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        number, _ = await report(client, "cust-6", "中控黑屏")
        before_ticket, before_directory = await snapshot(rt, number), await _directory(rt)
        admin = PlaygroundUser(client, "admin")
        for command in ("技师 停用 tech-nobody", "技师 启用 tech-nobody", "技师 修改 tech-nobody 门店=S01",
                        "技师 在岗 tech-nobody", "技师 离岗 tech-nobody", "技师 查看 tech-nobody",
                        f"转派 {number} tech-nobody", f"转派 {number} sup-li"):
            await admin.say(command)
            reply = await admin.last_text()
            assert "没有工号为" in reply and "的技师" in reply, (command, reply)
        assert await snapshot(rt, number) == before_ticket
        assert await _directory(rt) == before_directory


async def test_bad_directory_changes_change_nothing(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        await PlaygroundUser(client, "cust-7").say("你好")
        before = await _directory(rt)
        admin = PlaygroundUser(client, "admin")
        cases = {
            "技师 添加 tech-new 新人 门店=S99": "门店「S99」不存在",
            "技师 添加 tech-new 新人 位置=121.47,31.23": "纬度超出范围",
            "技师 添加 tech-new 新人 主管=tech-wang": "主管「tech-wang」不存在或不是主管",
            "技师 添加 tech-new 新人 上限=0": "最大负载必须在 1~50 之间",
            "技师 添加 tech-wang 王": "已存在",
            "技师 添加 admin 管理": "已被管理员",
            "技师 添加 cust-7 客户": "已被客户",
            "技师 添加 tech-new": "需要工号和姓名",
            "技师 添加 tech-new 新人 颜值=高": "未知的字段",
            "技师 添加 tech-new 新人 在岗=也许": "在岗只能填",
            "技师 修改 tech-wang": "请写明要修改的字段",
            "技师 修改 tech-wang 门店=S99": "门店「S99」不存在",
            "技师 停用": "看不懂这条技师命令",
            "技师 在岗 tech-wang": "已经是在岗状态",
        }
        for command, expected in cases.items():
            await admin.say(command)
            assert expected in await admin.last_text(), (command, await admin.last_text())
        # A platform id that already belongs to someone else.
        await admin.say("技师 修改 tech-wang 企业微信=wx-wang")
        await admin.say("技师 添加 tech-new 新人 企业微信=wx-wang")
        assert "已属于 tech-wang" in await admin.last_text()
        after = await _directory(rt)
        assert [e for e in after if e[0] != "tech-wang"] == [e for e in before if e[0] != "tech-wang"]
        async with rt.sessions() as session:
            assert await session.get(PersonRow, "tech-new") is None


async def test_bad_dispatch_rule_changes_change_nothing(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        admin = PlaygroundUser(client, "admin")
        cases = {
            "派单规则 权重 资质=0.5": "四项权重之和必须为 1（当前 1.1000）",
            "派单规则 权重 资质=0.5 距离=-0.1 负载=0.5 评分=0.1": "不能为负数",
            "派单规则 权重 颜值=0.1": "看不懂「颜值=0.1」",
            "派单规则 权重 资质=高": "权重必须是数字",
            "派单规则 权重": "请写明权重",
            "派单规则 超时 5秒": "接单时限必须在",
            "派单规则 超时 两天": "无法识别的时长",
            "派单规则 回滚 9": "没有派单规则版本 v9",
            "派单规则 回滚 最新": "请给出版本号",
            "派单规则 权重 资质=0.4 距离=0.3 负载=0.2 评分=0.1": "派单规则没有变化",
            "派单规则 随便": "看不懂这条派单规则命令",
            "测试派单": "请写明工单号",
            "测试派单 GD-20990101-0001": "没有找到工单",
        }
        for command, expected in cases.items():
            await admin.say(command)
            assert expected in await admin.last_text(), (command, await admin.last_text())
        assert await dispatch_versions(rt) == 0


async def test_non_staff_are_refused_and_the_refusal_is_audited(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        number, _ = await report(client, "cust-8", "中控黑屏")
        before_ticket, before_directory = await snapshot(rt, number), await _directory(rt)
        wang = PlaygroundUser(client, "tech-wang")
        customer = PlaygroundUser(client, "cust-8")
        attempts = [(wang, "派单规则 权重 资质=0.7 距离=0.1 负载=0.1 评分=0.1", "派单规则"),
                    (wang, "技师 停用 tech-liu", "技师"), (customer, f"测试派单 {number}", "测试派单"),
                    (customer, f"转派 {number} tech-xu", "转派"), (customer, "技师 在岗 tech-xu", "技师")]
        for user, text, command in attempts:
            await user.say(text)
            assert f"「{command}」只有主管和管理员可以使用" in await user.last_text()
        refused = await _refusals(rt)
        assert [(r["actor"], r["command"]) for r in refused] == [
            ("tech-wang", "派单规则"), ("tech-wang", "技师"), ("cust-8", "测试派单"), ("cust-8", "转派"),
            ("cust-8", "技师")]
        await customer.say("上班")
        assert "只有技师可以" in await customer.last_text()
        assert await snapshot(rt, number) == before_ticket
        assert await _directory(rt) == before_directory
        assert await dispatch_versions(rt) == 0
        assert (await ticket(rt, number)).assignee_id == "tech-liu"
