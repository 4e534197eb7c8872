"""Administering the technician directory and the dispatch rules in chat, and the dry run."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from storage.tables import AuditEventRow
from tests.playground_client import PlaygroundUser
from tests.test_dispatch_service import _set_store
from tests.test_dispatch_support import (
    clocked,
    dispatch_versions,
    events,
    offer_timer,
    report,
    snapshot,
    the_offer,
    ticket,
)


async def _audit(rt, kind: str) -> list[dict]:  # type: ignore[no-untyped-def]
    async with rt.sessions() as session:
        rows = (await session.execute(select(AuditEventRow).where(AuditEventRow.kind == kind)
                                      .order_by(AuditEventRow.seq))).scalars()
        return [{"actor": r.actor_id, **r.payload} for r in rows]


async def _entry(rt, person_id: str):  # type: ignore[no-untyped-def]
    async with rt.uow() as uow:
        (found,) = await uow.dispatch_store().entries([person_id], identities=True)
    return found


async def test_add_update_deactivate_and_reactivate_a_technician(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        admin = PlaygroundUser(client, "admin")
        await admin.say("技师 添加 tech-new 技师 周师傅 资质=OBD认证 技能=电控类、机械类 门店=S01 主管=sup-li "
                        "电话=13800000000 企业微信=wx-new 上限=3")
        assert "看不懂" in await admin.last_text()  # 姓名 is one word: 「技师 周师傅」 has a space
        await admin.say("技师 添加 tech-new 周师傅 资质=OBD认证 技能=电控类、机械类 门店=S01 主管=sup-li "
                        "电话=13800000000 企业微信=wx-new 上限=3")
        assert "已添加技师 周师傅（tech-new）" in await admin.last_text()
        entry = await _entry(rt, "tech-new")
        assert (entry.name, entry.store_id, entry.supervisor_id, entry.max_load, entry.phone) == (
            "周师傅", "S01", "sup-li", 3, "13800000000")
        assert entry.certifications == {"OBD认证"} and entry.skills == {"电控类", "机械类"} and entry.on_duty
        assert entry.identities == {"local": "tech-new", "wecom": "wx-new"}
        assert (await _audit(rt, "technician_added"))[-1]["person_id"] == "tech-new"

        # The index of the running service sees the new technician at once: a customer at S01 gets him
        # while tech-wang (also S01, better rated) is off duty.
        await admin.say("技师 离岗 tech-wang")
        await PlaygroundUser(client, "cust-s01").say("你好")
        await _set_store(rt, "cust-s01", "S01")
        number, _ = await report(client, "cust-s01", "中控黑屏")
        tech, _card = await the_offer(client, number)
        assert tech == "tech-new"
        assert (await events(rt, number, "offer_sent"))[0]["candidate"]["distance_km"] == 0.0

        # Updates apply to the next decision; the dry run explains the exclusion.
        await admin.say("技师 修改 tech-new 资质=无 电话=无 上限=4")
        assert "已更新技师 周师傅" in await admin.last_text()
        entry = await _entry(rt, "tech-new")
        assert entry.certifications == frozenset() and entry.phone is None and entry.max_load == 4
        await admin.say(f"测试派单 {number}")
        assert "周师傅（tech-new）：电控类需要资质：OBD认证，此人没有" in await admin.last_text()

        # (Shown while the offer is still his: 技师 停用 below sends it back to dispatch.)
        await admin.say("技师 查看 tech-new")
        shown = await admin.last_text()
        assert "周师傅" in shown and "门店：S01" in shown and "企业微信 wx-new" in shown and "在办：1" in shown
        await admin.say("技师")
        listing = await admin.last_text()
        assert "tech-new 周师傅｜在岗｜在办 1/4" in listing and "tech-wang 技师 王师傅｜离岗" in listing

        await admin.say("技师 停用 tech-new")
        assert "已停用" in await admin.last_text()
        assert number in await admin.last_text()  # his open offer went back to dispatch (issue 20)
        assert not (await _entry(rt, "tech-new")).active
        assert (await ticket(rt, number)).assignee_id != "tech-new"
        await admin.say(f"测试派单 {number}")
        assert "tech-new" not in await admin.last_text()  # deactivated: not a candidate at all
        await admin.say("技师 启用 tech-new")
        assert (await _entry(rt, "tech-new")).active
        kinds = [e["kind"] for e in await _kinds(rt) if e["person_id"] == "tech-new"]
        assert kinds == ["technician_added", "technician_updated", "technician_jobs_released",
                         "technician_deactivated", "technician_activated"]


async def _kinds(rt) -> list[dict]:  # type: ignore[no-untyped-def]
    async with rt.sessions() as session:
        rows = (await session.execute(select(AuditEventRow).where(AuditEventRow.kind.like("technician%"))
                                      .order_by(AuditEventRow.seq))).scalars()
        return [{"kind": r.kind, "person_id": r.payload.get("person_id")} for r in rows]


async def test_duty_by_the_technician_and_by_a_supervisor(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        liu = PlaygroundUser(client, "tech-liu")
        await liu.say("下班")
        assert "已设为离岗" in await liu.last_text()
        await liu.say("离岗")
        assert "已经是离岗状态" in await liu.last_text()
        number, _ = await report(client, "cust-duty", "中控黑屏")
        assert (await ticket(rt, number)).assignee_id == "tech-wang"  # tech-liu would have won the tie
        await liu.say("上班")
        assert "已设为在岗" in await liu.last_text()
        boss = PlaygroundUser(client, "sup-li")
        await boss.say("技师 离岗 tech-xu")
        assert "已将技师 技师 徐师傅（tech-xu）设为离岗" in await boss.last_text()
        assert "主管 李强 已将您设为离岗" in await PlaygroundUser(client, "tech-xu").last_text()
        assert not (await _entry(rt, "tech-xu")).on_duty and (await _entry(rt, "tech-liu")).on_duty
        changes = await _audit(rt, "technician_duty_changed")
        assert [(c["actor"], c["person_id"], c["on_duty"]) for c in changes] == [
            ("tech-liu", "tech-liu", False), ("tech-liu", "tech-liu", True), ("sup-li", "tech-xu", False)]
        await boss.say(f"测试派单 {number}")
        assert "徐师傅（tech-xu）：不在岗" in await boss.last_text()


async def test_dispatch_rules_are_versioned_audited_and_used(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, clock):
        admin = PlaygroundUser(client, "admin")
        await admin.say("派单规则")
        shown = await admin.last_text()
        assert "资质匹配 40%，距离 30%，当前负载 20%，评分 10%" in shown and "电控类 必须持有：OBD认证" in shown
        assert "15 分钟" in shown and "出厂默认" in shown
        await admin.say("派单规则 权重 资质=0.5 距离=0.2 负载=0.2 评分=0.1")
        assert "已更新为 v1" in await admin.last_text()
        await PlaygroundUser(client, "sup-chen").say("派单规则 超时 20分钟")
        assert "已更新为 v2" in await PlaygroundUser(client, "sup-chen").last_text()
        assert await dispatch_versions(rt) == 2
        changes = await _audit(rt, "config_changed")
        assert [(c["actor"], c["version"], c["kind"]) for c in changes] == [("admin", 1, "dispatch"),
                                                                             ("sup-chen", 2, "dispatch")]
        assert changes[0]["weights"]["to"] == {"qualification": 0.5, "distance": 0.2, "load": 0.2, "rating": 0.1}
        assert changes[1]["offer_timeout_s"] == {"from": 900.0, "to": 1200.0}

        number, _ = await report(client, "cust-rules", "中控黑屏")
        sent = (await events(rt, number, "offer_sent"))[0]
        assert sent["policy_version"] == 2 and sent["weights"]["qualification"] == 0.5
        assert sent["candidate"]["components"][0]["weight"] == 0.5
        assert (await offer_timer(rt, number)).due_at == clock.now() + timedelta(minutes=20)  # type: ignore[union-attr]

        await admin.say("派单规则 历史")
        history = await admin.last_text()
        assert history.index("v2") < history.index("v1") and "接单时限 20 分钟" in history
        await admin.say("派单规则 回滚 0")
        assert "已更新为 v3" in await admin.last_text()
        await admin.say("派单规则")
        assert "资质匹配 40%" in await admin.last_text() and "版本 v3" in await admin.last_text()
        await admin.say("派单规则 回滚 v1")
        assert "资质匹配 50%" in await admin.last_text()


async def test_dry_run_ranks_and_explains_without_changing_anything(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        number, _ = await report(client, "cust-dry", "中控黑屏")
        before = await snapshot(rt, number)
        timer_before = await offer_timer(rt, number)
        admin = PlaygroundUser(client, "admin")
        for command in (f"test dispatch {number}", f"测试派单 {number.lower()}", f"派单试算 {number}"):
            await admin.say(command)
            text = await admin.last_text()
            assert text.startswith(f"派单试算：{number}（电控类，已派单）")
            assert "1. 技师 王师傅（tech-wang）0.692" in text and "2. 技师 徐师傅（tech-xu）0.692" in text
            assert "3. 技师 刘师傅（tech-liu）0.662" in text  # the offer of this very ticket is his load now
            assert "张师傅（tech-zhang）：电控类需要资质：OBD认证，此人没有；此人不接电控类工单" in text
            assert "黄师傅（tech-huang）：电控类需要资质：OBD认证，此人没有" in text
            assert "试算不会改变工单和派单" in text
        assert await snapshot(rt, number) == before
        timer_after = await offer_timer(rt, number)
        assert timer_before is not None and timer_after is not None
        assert (timer_after.generation, timer_after.state) == (timer_before.generation, timer_before.state)
