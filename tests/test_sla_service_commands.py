"""Chat commands for the SLA matrix and the holiday overrides: versioned, audited, rolled back,
refused with a clear answer for bad input and the wrong people."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from core.clock import FixedClock
from core.sla.calendar_watch import DAILY_CHECK_KIND
from storage.tables import AuditEventRow, ConfigVersionRow, TimerRowTable
from tests.playground_client import PlaygroundUser
from tests.sla_support import advance_to, at, fixed_clock_app, report, runtime, ticket
from tests.statements import statements_sent

WED_0900 = at(2026, 11, 18, 9, 0)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(WED_0900)


async def config_rows(client: object, kind: str) -> list[ConfigVersionRow]:
    async with runtime(client).sessions() as session:  # type: ignore[arg-type]
        return list((await session.execute(select(ConfigVersionRow).where(ConfigVersionRow.kind == kind))).scalars())


async def audit_kinds(client: object, kind: str) -> list[dict]:  # type: ignore[type-arg]
    async with runtime(client).sessions() as session:  # type: ignore[arg-type]
        rows = (await session.execute(select(AuditEventRow).where(AuditEventRow.kind == kind))).scalars()
        return [r.payload for r in rows]


async def test_supervisor_views_changes_and_rolls_back_a_cell(database_url: str, tmp_path: Path,
                                                              clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        sup = PlaygroundUser(client, "sup-li")
        await sup.say("SLA")
        view = await sup.last_text()
        assert "SLA 矩阵（版本 0，出厂默认）" in view
        assert "紧急×全厂：工作时间 15分钟/2小时（自然时间计）" in view
        assert sum(line.startswith(("紧急×", "常规×", "咨询×")) for line in view.splitlines()) == 9
        assert "2027年的国务院放假调休安排尚未收录" in view  # coming_year_warning, shown from November

        await sup.say("SLA 设置 紧急 全厂 工作时间 响应 10 解决 1.5小时")
        assert "已更新 SLA 紧急×全厂×工作时间" in await sup.last_text() and "版本 1" in await sup.last_text()
        await sup.say("SLA 查看 紧急 全厂 工作时间")
        assert "响应 10分钟，解决 1小时30分钟" in await sup.last_text()
        number = await report(client, "cust-cmd-1", "产线停机，紧急，中控黑屏")
        t = await ticket(rt, number)
        assert t.response_due == at(2026, 11, 18, 9, 10)
        assert t.data["sla"]["matrix_version"] == 1

        await sup.say("SLA 设置 常规 部门 节假日 计时 自然时间")
        assert "版本 2" in await sup.last_text()
        await sup.say("SLA 历史")
        history = await sup.last_text()
        assert "版本 2" in history and "版本 1" in history and "sup-li" in history
        await sup.say("SLA 回滚 0")
        assert "回滚到版本 0" in await sup.last_text()
        number = await report(client, "cust-cmd-2", "产线停机，紧急，中控黑屏")
        assert (await ticket(rt, number)).response_due == at(2026, 11, 18, 9, 15)
        versions = sorted(r.version for r in await config_rows(client, "sla"))
        assert versions == [1, 2, 3]
        changes = await audit_kinds(client, "config_changed")
        assert [c["version"] for c in changes if c["kind"] == "sla"] == [1, 2, 3]
        assert changes[0]["before"]["response_minutes"] == 15 and changes[0]["after"]["response_minutes"] == 10
        # The earlier ticket keeps the cell it was reported under.
        assert (await ticket(rt, number)).data["sla"]["matrix_version"] == 3

        await sup.say("SLA 解释 紧急 全厂 2026-11-20 17:50")
        explained = await sup.last_text()
        assert "紧急 × 全厂 × 工作时间" in explained and "截止 2026-11-20 18:05" in explained


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SLA 设置 紧急 全厂", "SLA 设置需要"),
        ("SLA 设置 紧急 全厂 工作时间 快点", "SLA 设置需要"),
        ("SLA 设置 紧急 全厂 工作时间 响应 10 马上", "看不懂「马上」"),
        ("SLA 设置 特急 全厂 工作时间 响应 10", "无法识别的优先级「特急」"),
        ("SLA 设置 紧急 全世界 工作时间 响应 10", "无法识别的影响范围「全世界」"),
        ("SLA 设置 紧急 全厂 午夜 响应 10", "无法识别的时段「午夜」"),
        ("SLA 设置 紧急 全厂 工作时间 响应 -5", "必须是正的分钟数"),
        ("SLA 设置 紧急 全厂 工作时间 响应 0", "必须是正的分钟数"),
        ("SLA 设置 紧急 全厂 工作时间 响应 abc", "无法识别的响应时限「abc」"),
        ("SLA 设置 紧急 全厂 工作时间 响应 600 解决 120", "不能长于解决时限"),
        ("SLA 设置 紧急 全厂 工作时间 计时 月亮时间", "无法识别的计时方式"),
        ("SLA 设置 紧急 全厂 工作时间 响应 99999999", "太长"),
        ("SLA 回滚 99", "没有 SLA 版本 99"),
        ("SLA 回滚 x", "请给出一个版本号"),
        ("SLA 查看 紧急", "请写明优先级、影响范围和时段"),
        ("SLA 胡说", "看不懂这条 SLA 命令"),
        ("SLA 解释 紧急 全厂 明天下午", "无法识别的时间"),
        ("节假日 设置 2027-13-01 休息", "无法识别的日期"),
        ("节假日 设置 2027-02-05 摸鱼", "请写明日期和「休息」或「上班」"),
        ("节假日 设置 2040-02-05 休息", "超出可设置范围"),
        ("节假日 删除 2027-02-06", "没有设置过覆盖"),
        ("节假日 确认 明年", "请写明年份"),
    ],
)
async def test_bad_sla_commands_get_a_clear_answer_and_change_nothing(
        database_url: str, tmp_path: Path, clock: FixedClock, text: str, expected: str) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        admin = PlaygroundUser(client, "admin")
        await admin.say(text)
        assert expected in await admin.last_text()
        assert await config_rows(client, "sla") == [] and await config_rows(client, "calendar") == []
        assert await audit_kinds(client, "config_changed") == []


@pytest.mark.parametrize(
    ("user", "text", "expected"),
    [
        ("tech-wang", "SLA 设置 紧急 全厂 工作时间 响应 10", "只有主管和管理员可以使用"),
        ("cust-demo", "SLA", "只有主管和管理员可以使用"),
        ("tech-wang", "节假日", "只有主管和管理员可以使用"),
        ("sup-li", "节假日 设置 2027-02-05 休息", "没有权限"),
        ("qa-sun", "报表", "只有主管和管理员可以使用"),
    ],
)
async def test_sla_commands_are_for_staff(database_url: str, tmp_path: Path, clock: FixedClock, user: str, text: str,
                                          expected: str) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        person = PlaygroundUser(client, user)
        await person.say(text)
        assert expected in await person.last_text()
        assert await config_rows(client, "sla") == [] and await config_rows(client, "calendar") == []


async def test_admin_enters_the_state_council_notice(database_url: str, tmp_path: Path, clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        admin = PlaygroundUser(client, "admin")
        await admin.say("节假日 设置 2026-11-19 休息 工厂停产检修")
        assert "已设置 2026-11-19 为休息日（版本 1）" in await admin.last_text()
        number = await report(client, "cust-cal-1", "中控黑屏")
        # Thursday is now a day off: 9 h Wednesday, 10 h Friday, 5 h Monday.
        assert (await ticket(rt, number)).resolution_due == at(2026, 11, 23, 13, 0)
        await admin.say("节假日 设置 2027-02-06 上班 调休")
        await admin.say("节假日")
        listing = await admin.last_text()
        assert "2026-11-19 休息 工厂停产检修" in listing and "2027-02-06 上班 调休" in listing
        assert "2027 年放假调休安排：未收录" in listing
        await admin.say("节假日 删除 2026-11-19")
        assert "已删除 2026-11-19" in await admin.last_text()
        await admin.say("节假日 确认 2027")
        assert "已确认 2027 年放假调休安排（含 1 条覆盖" in await admin.last_text()
        await admin.say("SLA")
        assert "尚未收录" not in await admin.last_text()
        await admin.say("节假日 确认 2027")
        assert "已经确认过了" in await admin.last_text()
        assert [r.version for r in await config_rows(client, "calendar")] == [1, 2, 3, 4]


async def test_admins_are_warned_once_a_day_about_an_unknown_schedule(database_url: str, tmp_path: Path,
                                                                      clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        await report(client, "cust-cal-2", "中控黑屏")  # SLA activity arms the daily check
        admin = PlaygroundUser(client, "admin")

        def warnings(texts: list[str]) -> int:
            return sum("【节假日安排提醒】" in t for t in texts)

        await advance_to(rt, clock, at(2026, 11, 19, 8, 59))
        assert warnings(await admin.texts()) == 0
        await advance_to(rt, clock, at(2026, 11, 19, 9, 0))
        assert warnings(await admin.texts()) == 1
        await advance_to(rt, clock, at(2026, 11, 19, 20, 0))
        assert warnings(await admin.texts()) == 1
        await admin.say("节假日 确认 2027")
        await advance_to(rt, clock, at(2026, 11, 20, 9, 0))
        assert warnings(await admin.texts()) == 1  # known now: no more warnings


async def test_the_daily_check_is_read_once_while_it_is_known_to_be_pending(database_url: str, tmp_path: Path,
                                                                            clock: FixedClock) -> None:
    """Every new ticket makes sure the daily check is armed; once armed (committed) or seen pending,
    reports until its due time read no timer row for it. After it fired (and re-armed itself) the
    next report looks again."""
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)

        async def timer_reads(user: str) -> int:
            async with statements_sent(rt.engine) as sent:
                await report(client, user, "中控黑屏")
            # get_timer's read (the in-process timer loop's own polling may run meanwhile)
            return sum(" ".join(s.split()).startswith("SELECT timers.id, timers.kind, timers.ticket_key")
                       for s in sent)

        assert await timer_reads("cust-dc-1") == 1  # not armed yet: read, then armed
        assert await timer_reads("cust-dc-2") == 0
        await advance_to(rt, clock, at(2026, 11, 19, 9, 30))  # fired at 09:00 and re-armed for tomorrow
        assert await timer_reads("cust-dc-3") == 1
        assert await timer_reads("cust-dc-4") == 0
        async with rt.sessions() as session:
            armed = (await session.execute(select(TimerRowTable).where(
                TimerRowTable.kind == DAILY_CHECK_KIND))).scalars().all()
        assert [(t.state, t.due_at) for t in armed] == [("pending", at(2026, 11, 20, 9, 0))]
