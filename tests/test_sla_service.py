"""SLA on real tickets through the playground: deadlines, timers, the intake guard, pauses, stops."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from core.clock import FixedClock
from core.model import TicketStatus
from tests.playground_client import PlaygroundUser
from tests.sla_support import (
    advance_to,
    assign_and_accept,
    at,
    fixed_clock_app,
    force,
    move,
    report,
    runtime,
    ticket,
    timers,
)
from tests.test_lifecycle_support import photo

WED_0900 = at(2026, 11, 18, 9, 0)  # a Wednesday, working time


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(WED_0900)


async def test_a_report_gets_deadlines_and_durable_timers(database_url: str, tmp_path: Path,
                                                          clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-sla-1", "中控黑屏")
        t = await ticket(rt, number)
        # 常规 × 单用户 × 工作时间, business clock: 4 h response, 24 business hours resolution.
        assert (t.priority, t.impact) == ("常规", "单用户")
        assert t.response_due == at(2026, 11, 18, 13, 0)
        assert t.resolution_due == at(2026, 11, 20, 13, 0)  # Wed 9 h + Thu 10 h + Fri 5 h
        sla = t.data["sla"]
        assert (sla["cell"], sla["clock"]) == ("常规×单用户×工作时间", "business")
        assert await timers(rt, number) == {
            "sla.response.reminder": at(2026, 11, 18, 12, 45),
            "sla.response.breach": at(2026, 11, 18, 13, 0),
            "sla.resolution.reminder": at(2026, 11, 20, 12, 45),
            "sla.resolution.breach": at(2026, 11, 20, 13, 0),
        }
        detail = await (await client.get(f"/api/tickets/{number}")).json()
        assert datetime.fromisoformat(detail["response_due"]) == at(2026, 11, 18, 13, 0)
        assert any(e["kind"] == "sla_started" for e in detail["audit"])


async def test_friday_evening_urgent_line_down_runs_on_the_wall_clock(database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(at(2026, 11, 20, 17, 50))
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-sla-2", "紧急！产线停机了，中控黑屏")
        t = await ticket(rt, number)
        assert (t.priority, t.impact) == ("紧急", "全厂")
        assert t.response_due == at(2026, 11, 20, 18, 5)
        assert t.resolution_due == at(2026, 11, 20, 19, 50)
        # The 15-minute response leaves no room for a reminder; the breach is armed.
        pending = await timers(rt, number)
        assert "sla.response.reminder" not in pending
        assert pending["sla.response.breach"] == at(2026, 11, 20, 18, 5)


async def test_accepting_the_job_meets_the_response_sla(database_url: str, tmp_path: Path, clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-sla-3", "中控黑屏")
        clock.advance(timedelta(minutes=30))
        await assign_and_accept(rt, number, "tech-wang")
        t = await ticket(rt, number)
        assert t.data["sla"]["response"]["met"] is True
        assert datetime.fromisoformat(t.data["sla"]["response"]["met_at"]) == at(2026, 11, 18, 9, 30)
        pending = await timers(rt, number)
        assert "sla.response.breach" not in pending and "sla.response.reminder" not in pending
        assert pending["sla.resolution.breach"] == at(2026, 11, 20, 13, 0)
        # Nothing escalates when the old response deadline passes.
        await advance_to(rt, clock, at(2026, 11, 18, 13, 30))
        assert await PlaygroundUser(client, "sup-li").cards("escalation") == []


async def test_pause_across_a_night_moves_the_resolution_deadline(database_url: str, tmp_path: Path,
                                                                  clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-sla-4", "中控黑屏")
        await assign_and_accept(rt, number, "tech-wang")
        await force(rt, number, status=TicketStatus.IN_PROGRESS)  # check-in and start are another feature
        # Thursday 17:00: 18 of the 24 business hours are used; waiting for parts stops the clock.
        await advance_to(rt, clock, at(2026, 11, 19, 17, 0))
        await move(rt, number, "wait_parts", "tech-wang")
        pending = await timers(rt, number)
        assert "sla.resolution.breach" not in pending and "sla.resolution.reminder" not in pending
        # The original deadline (Friday 13:00) passes during the pause: no reminder, no escalation.
        await advance_to(rt, clock, at(2026, 11, 20, 14, 0))
        assert await PlaygroundUser(client, "sup-li").cards("escalation") == []
        assert await PlaygroundUser(client, "tech-wang").cards("reminder") == []
        await move(rt, number, "parts_ready", "wh-zhao")
        t = await ticket(rt, number)
        # 6 business hours remain from Friday 14:00: 4 h on Friday, 2 h on Monday.
        assert t.resolution_due == at(2026, 11, 23, 10, 0)
        assert t.data["sla"]["pauses"][0]["state"] == "waiting_parts"
        pending = await timers(rt, number)
        assert pending["sla.resolution.breach"] == at(2026, 11, 23, 10, 0)
        assert pending["sla.resolution.reminder"] == at(2026, 11, 23, 9, 45)


async def test_a_wall_clock_pause_counts_every_minute(database_url: str, tmp_path: Path) -> None:
    clock = FixedClock(at(2026, 11, 20, 17, 50))
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-sla-5", "产线停机，紧急，中控黑屏")
        await assign_and_accept(rt, number, "tech-wang")
        await force(rt, number, status=TicketStatus.IN_PROGRESS)
        await advance_to(rt, clock, at(2026, 11, 20, 18, 50))
        await move(rt, number, "wait_parts", "tech-wang")
        await advance_to(rt, clock, at(2026, 11, 21, 8, 50))  # 14 h overnight pause
        await move(rt, number, "parts_ready", "tech-wang")
        assert (await ticket(rt, number)).resolution_due == at(2026, 11, 21, 9, 50)


async def test_completion_meets_resolution_and_closing_cancels_timers(database_url: str, tmp_path: Path,
                                                                      clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-sla-6", "中控黑屏")
        await assign_and_accept(rt, number, "tech-wang")
        await force(rt, number, status=TicketStatus.PENDING_QC)
        clock.advance(timedelta(hours=3))
        await move(rt, number, "qc_pass", "qa-sun")
        t = await ticket(rt, number)
        assert t.status is TicketStatus.PENDING_SIGNOFF
        assert t.data["sla"]["resolution"]["met"] is True
        assert await timers(rt, number) == {}
        # The customer says it is still broken: the resolution clock resumes, shifted by the wait.
        clock.advance(timedelta(hours=1))
        await move(rt, number, "still_broken", "cust-sla-6")
        t = await ticket(rt, number)
        assert t.data["sla"]["resolution"]["met_at"] is None
        assert t.resolution_due == at(2026, 11, 20, 14, 0)
        assert (await timers(rt, number))["sla.resolution.breach"] == at(2026, 11, 20, 14, 0)


async def test_cancelling_cancels_every_sla_timer(database_url: str, tmp_path: Path, clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-sla-7", "中控黑屏")
        await move(rt, number, "cancel", "cust-sla-7")
        assert await timers(rt, number) == {}
        await advance_to(rt, clock, at(2026, 11, 23, 9, 0))
        assert await PlaygroundUser(client, "sup-li").cards("escalation") == []


# --- the intake guard (seed 2) ---


async def test_urgent_without_production_impact_asks_for_evidence(database_url: str, tmp_path: Path,
                                                                  clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        customer = PlaygroundUser(client, "cust-urgent-1")
        number = await report(client, "cust-urgent-1", "紧急！中控黑屏")
        t = await ticket(rt, number)
        assert t.priority == "常规" and t.data["urgent"]["status"] == "pending"
        assert any("照片" in text and "设备编号 xxx" in text for text in await customer.texts())
        clock.advance(timedelta(minutes=5))
        await customer.say("设备编号 A-1024")
        t = await ticket(rt, number)
        assert (t.priority, t.subject) == ("紧急", "A-1024")
        # 紧急 × 单用户 × 工作时间: 60 min on the wall clock from the acceptance.
        assert t.response_due == at(2026, 11, 18, 10, 5)
        assert (await timers(rt, number))["sla.response.reminder"] == at(2026, 11, 18, 9, 50)
        assert any("已按紧急处理" in text for text in await customer.texts())


async def test_urgent_with_a_device_number_in_the_report_is_accepted(database_url: str, tmp_path: Path,
                                                                    clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-urgent-2", "很急，设备编号：KF-35 中控黑屏")
        t = await ticket(rt, number)
        assert (t.priority, t.subject, t.data["urgent"]["basis"]) == ("紧急", "KF-35", "device")


async def test_a_photo_confirms_an_urgent_report(database_url: str, tmp_path: Path, clock: FixedClock) -> None:
    import base64

    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-urgent-3", "加急 中控黑屏")
        assert (await ticket(rt, number)).priority == "常规"
        png = base64.b64encode(photo("urgent-evidence")).decode()  # a real image: the photo store decodes it
        resp = await client.post("/playground/api/messages", json={"user": "cust-urgent-3", "image": png})
        assert resp.status == 200
        t = await ticket(rt, number)
        assert (t.priority, t.data["urgent"]["basis"]) == ("紧急", "photo")


async def test_negated_production_impact_does_not_count(database_url: str, tmp_path: Path, clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-urgent-4", "不影响生产，但很急，中控黑屏")
        t = await ticket(rt, number)
        assert (t.priority, t.impact) == ("常规", "单用户")


async def test_device_number_without_a_pending_request_is_a_report(database_url: str, tmp_path: Path,
                                                                   clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        rt = runtime(client)
        number = await report(client, "cust-urgent-5", "设备编号 B-7 中控黑屏")
        assert (await ticket(rt, number)).subject == "B-7"


async def test_evidence_from_staff_is_refused(database_url: str, tmp_path: Path, clock: FixedClock) -> None:
    async with fixed_clock_app(database_url, tmp_path, clock) as client:
        tech = PlaygroundUser(client, "tech-wang")
        await tech.say("设备编号 A-1")
        assert "只有报修客户" in await tech.last_text()
        customer = PlaygroundUser(client, "cust-urgent-6")
        await customer.say("设备编号")
        assert "请在「设备编号」后写上编号" in await customer.last_text()
