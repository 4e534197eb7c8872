"""`报表`: first response, SLA compliance per priority, open breaches, blocked-duration TOP10."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.clock import FixedClock
from core.model import Ticket, TicketStatus
from core.reports.metrics import blocked_top, blocked_totals, first_response_stats, percentile
from tests.playground_client import PlaygroundUser
from tests.sla_support import advance_to, assign_and_accept, at, fixed_clock_app, force, move, report, runtime

T0 = datetime(2026, 11, 18, 1, 0, tzinfo=UTC)


def ticket_with(seconds: float | None, number: str = "GD-1") -> Ticket:
    return Ticket(number=number, customer_id="c", description="x", status=TicketStatus.CLOSED, created_at=T0,
                  updated_at=T0, first_response_at=None if seconds is None else T0 + timedelta(seconds=seconds))


def test_first_response_median_p90_and_share_within_90_seconds() -> None:
    stats = first_response_stats([ticket_with(s) for s in (30, 60, 80, 100, 200)] + [ticket_with(None)])
    assert stats.count == 5 and stats.skipped == 1
    assert stats.median == timedelta(seconds=80)
    assert stats.p90 == timedelta(seconds=200)  # nearest rank: the 5th of 5
    assert stats.share_within_target == pytest.approx(0.6)
    assert first_response_stats([ticket_with(None)]).median is None
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9) == 9


def test_blocked_top_and_totals_by_state() -> None:
    history = {
        "A": [(T0, TicketStatus.PENDING_DISPATCH), (T0 + timedelta(hours=1), TicketStatus.WAITING_PARTS),
              (T0 + timedelta(hours=49), TicketStatus.IN_PROGRESS), (T0 + timedelta(hours=50), TicketStatus.CLOSED)],
        "B": [(T0, TicketStatus.TRIAGE)],
    }
    now = T0 + timedelta(hours=72)
    top = blocked_top(history, now)
    assert [(s.number, s.state, s.duration) for s in top[:2]] == [
        ("B", TicketStatus.TRIAGE, timedelta(hours=72)), ("A", TicketStatus.WAITING_PARTS, timedelta(hours=48))]
    assert top[0].ongoing and not top[1].ongoing
    assert all(s.state is not TicketStatus.CLOSED for s in top)
    only = blocked_top(history, now, state=TicketStatus.WAITING_PARTS)
    assert [s.number for s in only] == ["A"]
    totals = {state: total for state, total, _ in blocked_totals(history, now)}
    assert totals[TicketStatus.WAITING_PARTS] == timedelta(hours=48)


async def test_report_in_chat(database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(at(2026, 11, 18, 9, 0))
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        fast = await report(client, "cust-rep-1", "中控黑屏")
        await force(rt, fast, first_response_at=clock.now() + timedelta(seconds=40))
        await assign_and_accept(rt, fast, "tech-wang")  # response met at 09:00
        slow = await report(client, "cust-rep-2", "中控黑屏")
        await force(rt, slow, first_response_at=clock.now() + timedelta(seconds=150))
        await report(client, "cust-rep-3", "机器坏了")  # no dispatch offer: skipped in first response
        await force(rt, fast, status=TicketStatus.IN_PROGRESS)
        await move(rt, fast, "wait_parts", "tech-wang")
        # Thursday 10:00: the two unaccepted tickets breached their response at 13:00 on Wednesday.
        await advance_to(rt, clock, at(2026, 11, 19, 10, 0))

        sup = PlaygroundUser(client, "sup-li")
        await sup.say("报表 7天")
        text = await sup.last_text()
        assert "【工单报表】近7天" in text and "报修 3 张" in text
        assert "中位数 95秒｜P90 150秒｜≤90秒占比 50.0%（2 张，1 张尚未送达派单未计入）" in text
        assert "常规：响应 33.3%（达成 1/超时 2）｜解决 —（达成 0/超时 0/进行中 3）" in text
        assert "紧急：无工单" in text
        assert "三、未关闭的超时 2 项" in text and slow in text
        assert "待填写超时根因分析 2 项" in text
        assert f"{fast}｜等待备件｜" in text
        assert "五、一次修复率" in text

        await sup.say("报表 2026-11-18 2026-11-19 等待备件")
        filtered = await sup.last_text()
        assert "阻塞时长 TOP10（等待备件）" in filtered and f"{fast}｜等待备件｜25小时（仍在此状态）" in filtered
        assert f"{slow}｜" not in filtered.split("四、")[1]

        await sup.say("报表 2026-11-01 2026-11-10")
        assert "报修 0 张" in await sup.last_text()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("报表 0天", "天数必须在"),
        ("报表 2026-11-21 2026-11-01", "早于开始日期"),
        ("报表 2025-01-01 2026-11-21", "最长 366 天"),
        ("报表 2026-13-01 2026-11-21", "无法识别的日期"),
        ("报表 昨天吧", "看不懂报表的时间段"),
    ],
)
async def test_bad_report_periods(database_url: str, tmp_path: Path, text: str, expected: str) -> None:
    clock = FixedClock(at(2026, 11, 18, 9, 0))
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        admin = PlaygroundUser(client, "admin")
        await admin.say(text)
        assert expected in await admin.last_text()
