"""Stores and people of every role administered in chat (`门店 …`, `人员 …`): preview, 试运行, 确认 for
risky changes, history and rollback, refusals; a deactivated technician's jobs go back to dispatch."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import col

from bot.chat.org import parse_org_command
from core.errors import InvalidInput
from core.masterdata.admin import ListPeople, OrgChange, OrgHistory
from core.masterdata.model import TeamRecord
from core.model import Role, TicketStatus
from storage.tables import AuditEventRow
from tests.playground_client import PlaygroundUser
from tests.sla_support import force
from tests.test_dispatch_service import _set_store
from tests.test_dispatch_support import clocked, person, report, the_offer, ticket


async def _audit(rt: Any, kind: str) -> list[dict[str, Any]]:
    async with rt.sessions() as session:
        rows = (await session.execute(select(AuditEventRow).where(col(AuditEventRow.kind) == kind)
                                      .order_by(col(AuditEventRow.seq)))).scalars()
        return [{"actor": r.actor_id, **r.payload} for r in rows]


async def _store(rt: Any, code: str) -> Any:
    async with rt.uow() as uow:
        return await uow.masterdata().get_store(code)


def test_parsing() -> None:
    assert parse_org_command("person", ["列表", "主管"]) == ListPeople(Role.SUPERVISOR)
    assert parse_org_command("person", ["列表", "专家"]) == ListPeople(Role.EXPERT)
    change = parse_org_command("store", ["修改", "S01", "地址=上海市", "浦东新区", "张江路", "1号",
                                         "营业时间=9:00-18:00", "试运行"])
    assert change == OrgChange("store", "S01", "update", (("address", "上海市 浦东新区 张江路 1号"),
                                                          ("opening_hours", "9:00-18:00")), dry_run=True)
    assert parse_org_command("person", ["回滚", "v12"]) == OrgChange("person", "", "rollback", version=12)
    assert parse_org_command("person", ["历史", "sup-li"]) == OrgHistory("person", "sup-li")
    for bad in (["修改", "S01"], ["修改", "S01", "店长=张三"], ["修改", "S01", "张三"], ["停用"], ["停用", "a", "b"],
                ["回滚", "abc"], ["删除", "S01"], ["列表", "试运行"]):
        with pytest.raises(InvalidInput):
            parse_org_command("store", bad)
    with pytest.raises(InvalidInput, match="未知的角色"):
        parse_org_command("person", ["列表", "厨师"])


async def test_store_add_preview_update_history_deactivate_and_rollback(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        admin = PlaygroundUser(client, "admin")
        new_store = ("门店 新增 S04 名称=苏州园区店 地址=苏州市 工业园区 星湖街 1 号 坐标=31.30,120.70 "
                     "营业时间=9:00-18:00")
        await admin.say(new_store + " 试运行")
        answer = await admin.last_text()
        assert "试运行" in answer and "名称：苏州园区店" in answer and "地址：苏州市 工业园区 星湖街 1 号" in answer
        assert await _store(rt, "S04") is None

        await admin.say(new_store)
        answer = await admin.last_text()
        assert "已执行：门店 S04：新增" in answer and "门店 回滚" in answer
        store = await _store(rt, "S04")
        assert (store.name, store.address, store.lat, store.lng, store.opening_hours, store.active) == (
            "苏州园区店", "苏州市 工业园区 星湖街 1 号", 31.30, 120.70, "9:00-18:00", True)

        for bad, why in (("门店 新增 S04 名称=重复 坐标=31,120", "已存在"),
                         ("门店 新增 S05 名称=无坐标店", "需要坐标"),
                         ("门店 新增 S05 名称=北极店 坐标=95,120", "超出范围"),
                         ("门店 新增 S05 名称=某店 坐标=北纬31度", "纬度,经度"),
                         ("门店 修改 S99 名称=不存在", "没有门店「S99」"),
                         ("门店 修改 S04 电话=12", "电话号码不正确"),
                         ("门店 新增 S/5 名称=坏编码 坐标=31,120", "门店编码")):
            await admin.say(bad)
            assert why in await admin.last_text(), bad

        await admin.say("门店 修改 S04 营业时间=8:00-20:00 电话=0512-66668888")
        answer = await admin.last_text()
        assert "营业时间：9:00-18:00 → 8:00-20:00" in answer
        assert (await _store(rt, "S04")).phone == "051266668888"
        await admin.say("门店 修改 S04 营业时间=8:00-20:00")
        assert "没有变化" in await admin.last_text()

        await admin.say("门店 查看 S04")
        assert "营业时间：8:00-20:00" in await admin.last_text()
        await admin.say("门店 列表")
        assert "S04 苏州园区店｜启用" in await admin.last_text()

        # Deactivating waits for 确认; 取消 leaves it as it was.
        await admin.say("门店 停用 S01")
        answer = await admin.last_text()
        assert "高风险修改" in answer and "在职人员" in answer and "确认" in answer
        assert (await _store(rt, "S01")).active
        await admin.say("取消")
        assert "已取消" in await admin.last_text()
        assert (await _store(rt, "S01")).active
        await admin.say("门店 停用 S04")
        await admin.say("确认")
        answer = await admin.last_text()
        assert "已确认并执行：门店 S04：停用" in answer
        assert not (await _store(rt, "S04")).active
        version = int(answer.split("记录 v")[1].split("）")[0])

        await admin.say("门店 历史 S04")
        history = await admin.last_text()
        assert f"v{version}" in history and "停用" in history and "新增" in history
        await admin.say(f"门店 回滚 {version}")
        assert "已执行：门店 S04：回滚" in await admin.last_text()
        assert (await _store(rt, "S04")).active
        await admin.say("门店 回滚 9999")
        assert "没有门店修改记录" in await admin.last_text()
        changed = await _audit(rt, "org_changed")
        assert [c["action"] for c in changed] == ["add", "update", "deactivate", "rollback"]
        assert changed[2]["before"]["active"] is True and changed[2]["after"]["active"] is False


async def test_people_of_every_role_are_manageable(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, clock):
        admin = PlaygroundUser(client, "admin")
        # The example: 技师 修改 cannot touch a supervisor, 人员 修改 can.
        await admin.say("技师 修改 sup-li 电话=13812345678")
        assert "没有工号为「sup-li」的技师" in await admin.last_text() and "人员" in await admin.last_text()
        await admin.say("人员 修改 sup-li 手机=138 1234 5678")
        answer = await admin.last_text()
        assert "手机：— → 138****5678" in answer
        assert (await person(rt, "sup-li")).phone == "13812345678"

        await admin.say("人员 新增 exp-ma 姓名=马工 角色=专家 门店=S01 上级=sup-li")
        assert "已执行：人员 exp-ma：新增" in await admin.last_text()
        expert = await person(rt, "exp-ma")
        assert (expert.role, expert.store_id, expert.supervisor_id) == (Role.EXPERT, "S01", "sup-li")
        await admin.say("人员 新增 fd-wu 姓名=吴前台 角色=前台 门店=S03")
        assert (await person(rt, "fd-wu")).role is Role.FRONT_DESK
        await admin.say("人员 列表 专家")
        assert "exp-ma 马工｜专家" in await admin.last_text()
        await admin.say("人员 查看 exp-ma")
        assert "上级：主管 李强（sup-li）" in await admin.last_text()

        # A new technician is a real technician for dispatch (technicians row, local identity).
        await admin.say("人员 新增 tech-new 姓名=周师傅 角色=技师 门店=S03 上级=sup-chen 企业微信=wx-zhou")
        async with rt.uow() as uow:
            (entry,) = await uow.dispatch_store().entries(["tech-new"], identities=True)
        assert (entry.store_id, entry.supervisor_id, entry.active) == ("S03", "sup-chen", True)
        assert entry.identities == {"local": "tech-new", "wecom": "wx-zhou"}

        for bad, why in (("人员 新增 x1 姓名=某人", "需要角色"),
                         ("人员 新增 x1 姓名=某人 角色=厨师", "未知的角色"),
                         ("人员 新增 x1 姓名=某人 角色=技师 门店=S99", "门店「S99」不存在"),
                         ("人员 新增 x1 姓名=某人 角色=技师 上级=tech-wang", "不是主管"),
                         ("人员 新增 x1 姓名=某人 角色=技师 手机=123", "电话号码不正确"),
                         ("人员 新增 x1 姓名=某人 角色=技师 企业微信=wx-zhou", "已属于 tech-new"),
                         ("人员 新增 sup-li 姓名=重复 角色=主管", "已存在"),
                         ("人员 修改 nobody 姓名=谁", "没有人员「nobody」"),
                         ("人员 修改 sup-li 上级=sup-li", "不能是自己"),
                         ("人员 修改 sup-li 班组=T9", "班组「T9」不存在"),
                         ("人员 修改 sup-li 角色=客户", "未知的角色")):
            await admin.say(bad)
            assert why in await admin.last_text(), bad
        # Teams: one of the person's store, or none.
        async with rt.uow() as uow:
            await uow.masterdata().upsert_team(TeamRecord("T-S01-EL", "电工班", store_code="S01"))
            await uow.commit()
        await admin.say("人员 修改 exp-ma 班组=T-S01-EL")
        assert "班组：— → T-S01-EL" in await admin.last_text()
        async with rt.uow() as uow:
            assert await uow.masterdata().person_team("exp-ma") == "T-S01-EL"
        await admin.say("人员 修改 exp-ma 门店=S03")
        assert "属于门店 S01" in await admin.last_text()
        await admin.say("人员 修改 exp-ma 门店=S03 班组=无")
        assert "班组：T-S01-EL → —" in await admin.last_text()
        # A loop in the chain is refused: sup-chen above sup-li above sup-chen.
        await admin.say("人员 修改 sup-li 上级=sup-chen")
        await admin.say("人员 修改 sup-chen 上级=sup-li")
        assert "循环" in await admin.last_text()

        # A role change waits for 确认 and is applied to the person as they are then.
        await admin.say("人员 修改 wh-zhao 角色=质检")
        assert "高风险修改" in await admin.last_text()
        assert (await person(rt, "wh-zhao")).role is Role.WAREHOUSE
        await admin.say("确认")
        assert (await person(rt, "wh-zhao")).role is Role.QUALITY
        await admin.say("确认")
        assert "没有待确认" in await admin.last_text()

        await admin.say("人员 修改 cust-demo 姓名=改名")
        assert "是客户" in await admin.last_text()

        # The only admin cannot be deactivated; nobody deactivates themselves (a refusal, audited).
        await admin.say("人员 停用 admin")
        assert "唯一的管理员" in await admin.last_text()
        await admin.say("人员 新增 admin2 姓名=第二管理员 角色=管理员")
        await admin.say("人员 停用 admin")
        assert "不能停用自己" in await admin.last_text()
        assert (await person(rt, "admin")).active
        assert (await _audit(rt, "command_refused"))[-1]["actor"] == "admin"
        # admin2 may: it waits for 确认, and a 确认 after 15 minutes finds nothing pending.
        admin2 = PlaygroundUser(client, "admin2")
        await admin2.say("人员 停用 admin")
        assert "高风险修改" in await admin2.last_text()
        clock.advance(timedelta(minutes=16))
        await admin2.say("确认")
        assert "没有待确认" in await admin2.last_text()
        assert (await person(rt, "admin")).active
        # A pending change someone else made meanwhile: 确认 finds nothing left to do.
        await admin2.say("人员 停用 wh-zhao")
        await admin.say("人员 停用 wh-zhao")
        await admin.say("确认")
        assert not (await person(rt, "wh-zhao")).active
        await admin2.say("确认")
        assert "已经是这样了" in await admin2.last_text()


async def test_only_admins_and_refusals_are_audited(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        for who in ("sup-li", "tech-wang"):
            user = PlaygroundUser(client, who)
            for text in ("人员 停用 tech-xu", "门店 列表", "联动 列表"):
                await user.say(text)
                assert "只有系统管理员" in await user.last_text()
        refused = await _audit(rt, "command_refused")
        assert {(r["actor"], r["command"]) for r in refused} >= {("sup-li", "人员"), ("tech-wang", "门店"),
                                                                ("sup-li", "联动")}
        assert (await person(rt, "tech-xu")).active


async def test_deactivating_a_technician_sends_open_jobs_back_to_dispatch(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        admin = PlaygroundUser(client, "admin")
        await PlaygroundUser(client, "cust-s01").say("你好")
        await _set_store(rt, "cust-s01", "S01")
        offered, _ = await report(client, "cust-s01", "中控黑屏")
        first, _card = await the_offer(client, offered)
        accepted, _ = await report(client, "cust-s01", "刹车异响，踩下去有怪声")
        holder, card = await the_offer(client, accepted)
        await PlaygroundUser(client, holder).press(card["id"], "accept")
        assert (await ticket(rt, accepted)).status is TicketStatus.ACCEPTED

        # 试运行 shows the jobs and changes nothing.
        await admin.say(f"人员 停用 {holder} 试运行")
        preview = await admin.last_text()
        assert "试运行" in preview and accepted in preview and "退回派单" in preview
        assert (await person(rt, holder)).active

        await admin.say(f"人员 停用 {holder}")
        assert "高风险修改" in await admin.last_text()
        await admin.say("确认")
        assert "已确认并执行" in await admin.last_text()
        gone = await person(rt, holder)
        assert not gone.active
        after = await ticket(rt, accepted)
        assert after.assignee_id != holder
        assert after.status in {TicketStatus.DISPATCHED, TicketStatus.PENDING_DISPATCH}
        released = await _audit(rt, "technician_jobs_released")
        assert released[-1]["person_id"] == holder and accepted in released[-1]["tickets"]
        async with rt.uow() as uow:
            (entry,) = await uow.dispatch_store().entries([holder])
        assert not entry.active
        # Rolling the deactivation back brings the technician back (no 确认 needed to re-activate).
        await admin.say(f"人员 历史 {holder}")
        version = int((await admin.last_text()).split("\nv")[1].split(" ")[0])
        await admin.say(f"人员 回滚 {version}")
        assert "已执行" in await admin.last_text()
        assert (await person(rt, holder)).active
        assert first  # the other ticket's offer is untouched by someone else's deactivation


async def test_a_released_offer_with_nobody_left_goes_to_the_stores_supervisor(database_url: str,
                                                                              tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        admin = PlaygroundUser(client, "admin")
        await PlaygroundUser(client, "cust-s03").say("你好")
        await _set_store(rt, "cust-s03", "S03")
        offered, _ = await report(client, "cust-s03", "中控黑屏")
        holder, card = await the_offer(client, offered)
        waiting, _ = await report(client, "cust-s03", "刹车异响，踩下去有怪声")
        await force(rt, waiting, status=TicketStatus.WAITING_PARTS, assignee_id=holder)
        for tech in ("tech-wang", "tech-zhang", "tech-liu", "tech-huang", "tech-xu"):
            if tech != holder:
                await admin.say(f"技师 离岗 {tech}")
        await admin.say(f"人员 停用 {holder}")
        preview = await admin.last_text()
        assert f"1 张未结工单（{offered}）将退回派单" in preview and f"1 张等待中的工单（{waiting}" in preview
        await admin.say("确认")
        assert "已确认并执行" in await admin.last_text()

        t = await ticket(rt, offered)
        assert (t.status, t.assignee_id) == (TicketStatus.PENDING_DISPATCH, None)
        closed = [c for c in await PlaygroundUser(client, holder).cards("offer") if c["id"] == card["id"]]
        assert closed[0]["state"] == "used" and "已停用" in closed[0]["closed_note"]
        picks = [c for c in await PlaygroundUser(client, "sup-chen").cards() if offered in c["title"]]
        assert picks and "人工派单" in picks[0]["title"]
        assert holder not in str(picks[0].get("fields"))  # not offered back to who just left
        # The job waiting for parts stays; the store's supervisor is told to 转派 it.
        assert (await ticket(rt, waiting)).assignee_id == holder
        told = [m for m in await PlaygroundUser(client, "sup-chen").texts() if waiting in m and "已停用" in m]
        assert told and f"转派 {waiting}" in told[0]
        assert not [m for m in await PlaygroundUser(client, "sup-li").texts() if waiting in m]
