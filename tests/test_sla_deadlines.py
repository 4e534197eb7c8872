"""Deadlines from the matrix and the calendar: edge cases, pauses, reminders, `sla explain`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.errors import InvalidInput
from core.sla.calendar import BusinessCalendar, WorkingHours
from core.sla.matrix import (
    ClockMode,
    Impact,
    Pause,
    Priority,
    SlaMatrix,
    TimeBand,
    deadline_for,
    due_with_pauses,
    explain,
    explain_text,
    pauses_from_states,
    reminder_at,
    resolution_due_with_pauses,
    running_time,
)

SH = ZoneInfo("Asia/Shanghai")
MATRIX = SlaMatrix.default()


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)


@pytest.fixture
def cal() -> BusinessCalendar:
    return BusinessCalendar()


# --- the edge cases ---


def test_friday_1750_urgent_runs_on_the_wall_clock(cal: BusinessCalendar) -> None:
    d = deadline_for(Priority.URGENT, Impact.PLANT, at(2026, 11, 20, 17, 50), cal, MATRIX)
    assert (d.band, d.clock) == (TimeBand.WORKING, ClockMode.WALL)
    assert d.response_due == at(2026, 11, 20, 18, 5)
    assert d.resolution_due == at(2026, 11, 20, 19, 50)
    assert d.response_due.tzinfo is UTC


def test_friday_1750_normal_continues_on_monday(cal: BusinessCalendar) -> None:
    d = deadline_for("常规", "单用户", at(2026, 11, 20, 17, 50), cal, MATRIX)
    assert d.clock is ClockMode.BUSINESS
    assert d.response_due == at(2026, 11, 23, 11, 50)  # 10 min Friday + 3h50 Monday
    assert d.resolution_due == at(2026, 11, 25, 11, 50)  # 24 business hours


def test_friday_1750_normal_with_a_lunch_break() -> None:
    cal = BusinessCalendar(hours=WorkingHours.parse("08:00-18:00", lunch="12:00-13:00"))
    d = deadline_for("常规", "单用户", at(2026, 11, 20, 17, 50), cal, MATRIX)
    assert d.response_due == at(2026, 11, 23, 11, 50)
    # 10 min Fri, 9h Mon, 9h Tue, then 4h + 1h50 on Wednesday around lunch.
    assert d.resolution_due == at(2026, 11, 25, 14, 50)


def test_after_hours_report_picks_the_off_hours_cell(cal: BusinessCalendar) -> None:
    d = deadline_for("常规", "全厂", at(2026, 11, 20, 18, 30), cal, MATRIX)
    assert (d.band, d.clock) == (TimeBand.OFF_HOURS, ClockMode.WALL)
    assert d.response_due == at(2026, 11, 20, 20, 30)


def test_national_day_week(cal: BusinessCalendar) -> None:
    d = deadline_for("常规", "部门", at(2026, 10, 1, 10), cal, MATRIX)
    assert (d.band, d.clock) == (TimeBand.HOLIDAY, ClockMode.BUSINESS)
    assert d.clock_starts_at == at(2026, 10, 8, 8)
    assert d.response_due == at(2026, 10, 8, 10)
    assert d.resolution_due == at(2026, 10, 9, 14)  # 16h: 10h on the 8th, 6h on the 9th
    urgent = deadline_for("紧急", "部门", at(2026, 10, 3, 9), cal, MATRIX)
    assert urgent.band is TimeBand.HOLIDAY
    assert (urgent.response_due, urgent.resolution_due) == (at(2026, 10, 3, 10), at(2026, 10, 3, 17))


def test_makeup_saturday_counts_as_working_time(cal: BusinessCalendar) -> None:
    d = deadline_for("常规", "单用户", at(2026, 10, 10, 9), cal, MATRIX)
    assert d.band is TimeBand.WORKING
    assert d.response_due == at(2026, 10, 10, 13)
    # The following Sunday is a normal weekend again.
    assert deadline_for("常规", "单用户", at(2026, 10, 10, 17), cal, MATRIX).response_due == at(2026, 10, 12, 11)


def test_year_boundary(cal: BusinessCalendar) -> None:
    d = deadline_for("常规", "部门", at(2026, 12, 31, 17), cal, MATRIX)
    assert d.response_due == at(2027, 1, 4, 9)  # New Year's Day and the weekend are skipped


def test_naive_reported_at_is_rejected(cal: BusinessCalendar) -> None:
    with pytest.raises(InvalidInput, match="时区"):
        deadline_for("紧急", "全厂", datetime(2026, 11, 20, 17, 50), cal, MATRIX)
    with pytest.raises(InvalidInput, match="时区"):
        explain("紧急", "全厂", datetime(2026, 11, 20, 17, 50), cal, MATRIX)


def test_a_changed_cell_changes_the_deadline(cal: BusinessCalendar) -> None:
    m = MATRIX.with_cell("常规", "单用户", "工作时间", response=timedelta(minutes=30), clock=ClockMode.WALL)
    assert deadline_for("常规", "单用户", at(2026, 11, 20, 17, 50), cal, m).response_due == at(2026, 11, 20, 18, 20)


# --- pauses ---

MONDAY_0900 = at(2026, 11, 16, 9)
NIGHT_PAUSE = Pause(at(2026, 11, 16, 16), at(2026, 11, 17, 10), "等待备件")


def test_business_pause_across_a_night(cal: BusinessCalendar) -> None:
    d = deadline_for("常规", "单用户", MONDAY_0900, cal, MATRIX)
    assert d.resolution_due == at(2026, 11, 18, 13)
    # Paused 16:00 Mon → 10:00 Tue: only 2h + 2h of business time stood still, not 18 hours.
    assert resolution_due_with_pauses(d, [NIGHT_PAUSE], cal) == at(2026, 11, 18, 17)


def test_wall_pause_across_a_night(cal: BusinessCalendar) -> None:
    d = deadline_for("紧急", "单用户", MONDAY_0900, cal, MATRIX)
    assert d.resolution_due == at(2026, 11, 16, 17)
    assert resolution_due_with_pauses(d, [NIGHT_PAUSE], cal) == at(2026, 11, 17, 11)  # shifted by 18h


def test_business_pause_after_a_weekend(cal: BusinessCalendar) -> None:
    # Friday 17:00, paused Monday 09:00-11:00: the weekend before the pause used no business time.
    d = deadline_for("常规", "单用户", at(2026, 11, 20, 17), cal, MATRIX)
    assert d.resolution_due == at(2026, 11, 25, 11)
    pause = Pause(at(2026, 11, 23, 9), at(2026, 11, 23, 11), "等待客户确认")
    assert resolution_due_with_pauses(d, [pause], cal) == at(2026, 11, 25, 13)


def test_open_pause_stops_the_clock_and_irrelevant_pauses_do_not(cal: BusinessCalendar) -> None:
    d = deadline_for("常规", "单用户", MONDAY_0900, cal, MATRIX)
    assert resolution_due_with_pauses(d, [Pause(at(2026, 11, 16, 16))], cal) is None
    before = Pause(at(2026, 11, 13, 9), at(2026, 11, 16, 8))
    after = Pause(at(2026, 11, 19, 9), None)
    assert resolution_due_with_pauses(d, [before, after], cal) == d.resolution_due


def test_overlapping_pauses_count_once(cal: BusinessCalendar) -> None:
    start, target = MONDAY_0900, timedelta(hours=8)
    pauses = [Pause(at(2026, 11, 16, 10), at(2026, 11, 16, 12)), Pause(at(2026, 11, 16, 11), at(2026, 11, 16, 13))]
    assert due_with_pauses(start, target, ClockMode.WALL, cal, pauses) == at(2026, 11, 16, 20)
    assert due_with_pauses(start, target, ClockMode.BUSINESS, cal, pauses) == at(2026, 11, 17, 10)  # 1h + 5h + 2h


def test_pauses_from_state_history() -> None:
    history = [
        (at(2026, 11, 16, 9), "in_progress"),
        (at(2026, 11, 16, 16), "waiting_parts"),
        (at(2026, 11, 17, 10), "in_progress"),
        (at(2026, 11, 17, 15), "等待客户确认"),
    ]
    assert pauses_from_states(history) == [
        Pause(at(2026, 11, 16, 16), at(2026, 11, 17, 10), "waiting_parts"),
        Pause(at(2026, 11, 17, 15), None, "等待客户确认"),
    ]
    # Configurable: a tenant that does not pause for parts.
    only_customer = pauses_from_states(history, pausing_states={"等待客户确认"})
    assert only_customer == [Pause(at(2026, 11, 17, 15), None, "等待客户确认")]


def test_running_time_excludes_pauses(cal: BusinessCalendar) -> None:
    until = at(2026, 11, 17, 12)
    assert running_time(MONDAY_0900, until, ClockMode.BUSINESS, cal, [NIGHT_PAUSE]) == timedelta(hours=9)
    assert running_time(MONDAY_0900, until, ClockMode.WALL, cal, [NIGHT_PAUSE]) == timedelta(hours=9)
    assert running_time(MONDAY_0900, until, ClockMode.WALL, cal) == timedelta(hours=27)
    still_paused = [Pause(at(2026, 11, 16, 16))]
    assert running_time(MONDAY_0900, until, ClockMode.BUSINESS, cal, still_paused) == timedelta(hours=7)


# --- reminders ---


def test_reminder_is_fifteen_wall_minutes_before(cal: BusinessCalendar) -> None:
    assert reminder_at(at(2026, 11, 20, 18, 5)) == at(2026, 11, 20, 17, 50)
    # A business-time deadline at Monday 08:05 is reminded at 07:50 Monday, not Friday 17:50.
    d = deadline_for("常规", "全厂", at(2026, 11, 20, 17, 5), cal, MATRIX)
    assert d.response_due == at(2026, 11, 23, 8, 5)
    assert reminder_at(d.response_due) == at(2026, 11, 23, 7, 50)
    assert reminder_at(d.response_due, timedelta(minutes=5)) == at(2026, 11, 23, 8)
    # Never before the ticket existed.
    reported = at(2026, 11, 20, 10)
    assert reminder_at(reported + timedelta(minutes=10), not_before=reported) == reported


# --- `ticketbot sla explain` ---


def test_explain_payload(cal: BusinessCalendar) -> None:
    payload = explain("urgent", "全厂·产线停机", datetime(2026, 11, 20, 9, 50, tzinfo=UTC), cal, MATRIX)
    assert {"cell", "clock", "response_due", "resolution_due"} <= payload.keys()
    assert payload["cell"] == "紧急×全厂×工作时间"
    assert payload["clock"] == "wall"
    assert payload["response_due"] == "2026-11-20T18:05:00+08:00"
    assert payload["resolution_due"] == "2026-11-20T19:50:00+08:00"
    assert payload["at"] == "2026-11-20T17:50:00+08:00"
    assert payload["band"] == "工作时间"
    assert payload["response_target_minutes"] == 15
    assert payload["response_reminder_at"] == "2026-11-20T17:50:00+08:00"
    assert json.loads(json.dumps(payload, ensure_ascii=False)) == payload


def test_explain_business_cell_matches_deadline_for(cal: BusinessCalendar) -> None:
    payload = explain("normal", "department", at(2026, 10, 1, 10), cal, MATRIX)
    d = deadline_for("常规", "部门", at(2026, 10, 1, 10), cal, MATRIX)
    assert payload["clock"] == "business"
    assert datetime.fromisoformat(payload["response_due"]) == d.response_due
    assert datetime.fromisoformat(payload["resolution_due"]) == d.resolution_due
    assert payload["clock_starts_at"] == "2026-10-08T08:00:00+08:00"
    text = explain_text(payload)
    assert "SLA 单元格：常规 × 部门 × 节假日（工作时间计时）" in text
    assert "计时从 2026-10-08 08:00（周四） 开始" in text
    assert "截止 2026-10-08 10:00（周四）" in text
    assert "2小时（工作时间）" in text


def test_explain_warns_when_the_deadline_year_is_unknown() -> None:
    cal = BusinessCalendar(confirmed_years=[2039])
    payload = explain("咨询", "单用户", datetime(2039, 12, 30, 10, tzinfo=SH), cal, MATRIX)
    assert payload["resolution_due"].startswith("2040-")
    assert len(payload["warnings"]) == 1 and "2040年" in payload["warnings"][0]
    assert "注意：2040年" in explain_text(payload)
    assert explain("紧急", "全厂", datetime(2039, 12, 30, 10, tzinfo=SH), cal, MATRIX)["warnings"] == []
