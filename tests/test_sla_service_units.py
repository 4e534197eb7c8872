"""Pure pieces of the SLA service: urgency in a report's text, SLA settings, settings → config."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.service_config import service_config, sla_settings_from
from core.errors import InvalidInput
from core.intake.urgency import detect_urgency
from core.model import TicketStatus
from core.settings import SlaSettings, parse_pause_states
from tests.conftest import make_settings


@pytest.mark.parametrize(
    ("text", "urgent", "production", "device"),
    [
        ("紧急！中控黑屏", True, False, None),
        ("非常紧急，设备坏了", True, False, None),
        ("不紧急，有空来看看", False, False, None),
        ("产线停机了，加急", True, True, None),
        ("全厂停电，很急", True, True, None),
        ("没有影响生产，但是很急", True, False, None),
        ("不影响生产", False, False, None),
        ("设备编号：A-1024 报警", False, False, "A-1024"),
        ("很急 机台号 KF35 异响", True, False, "KF35"),
        ("URGENT: line down", True, True, None),
    ],
)
def test_detect_urgency(text: str, urgent: bool, production: bool, device: str | None) -> None:
    found = detect_urgency(text)
    assert (found.urgent, found.production, found.device_number) == (urgent, production, device)


def test_sla_settings_from_values() -> None:
    settings = SlaSettings.from_values(business_hours="09:00-17:30", lunch_break="12:00-13:00",
                                       reminder_lead_minutes=10, second_level_minutes=30, digest_seconds=0,
                                       pause_states="等待备件, waiting_customer_plan")
    assert settings.hours.describe() == "09:00-17:30（午休 12:00-13:00）"
    assert settings.reminder_lead == timedelta(minutes=10)
    assert settings.second_level_after == timedelta(minutes=30)
    assert settings.pause_states == {TicketStatus.WAITING_PARTS, TicketStatus.WAITING_CUSTOMER_PLAN}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"business_hours": "18:00-08:00"}, "必须早于"),
        ({"lunch_break": "07:00-08:30"}, "必须位于"),
        ({"second_level_minutes": 0}, "二级升级时间必须为正数"),
        ({"reminder_lead_minutes": -1}, "不能为负数"),
        ({"pause_states": "摸鱼中"}, "未知的工单状态"),
        ({"pause_states": "closed"}, "已结束"),
        ({"daily_check_hour": 25}, "0-23"),
    ],
)
def test_bad_sla_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput) as error:
        SlaSettings.from_values(**kwargs)  # type: ignore[arg-type]
    assert message in error.value.user_message


def test_pause_states_accept_labels_and_codes() -> None:
    assert parse_pause_states(["等待客户确认方案"]) == {TicketStatus.WAITING_CUSTOMER_PLAN}
    assert parse_pause_states("") == frozenset()


def test_settings_defaults_until_the_lead_adds_the_fields(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'x.db'}", tmp_path)
    sla = sla_settings_from(settings)
    assert sla.hours.describe() == "08:00-18:00" and sla.reminder_lead == timedelta(minutes=15)
    assert service_config(settings).timezone.key == "Asia/Shanghai"
