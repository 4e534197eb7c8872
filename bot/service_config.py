"""Settings → the core's ServiceConfig, shared by the web Runtime, the arq worker and the CLI,
so that every process computes the same deadlines.

The SLA settings are read with defaults when absent from Settings (names, env spelling):
  BUSINESS_HOURS="08:00-18:00"   LUNCH_BREAK=""  (e.g. "12:00-13:00")
  SLA_REMINDER_LEAD_MINUTES=15   SLA_SECOND_LEVEL_MINUTES=60   SLA_ROOT_CAUSE_REMIND_MINUTES=240
  SLA_DIGEST_SECONDS=60          SLA_PAUSE_STATES="waiting_parts,waiting_customer_plan"
  SLA_DAILY_CHECK_HOUR=9         TIMER_SWEEP_SECONDS=5 (arq worker sweep period)
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from bot.settings import Settings
from core.service import ServiceConfig
from core.settings import SlaSettings

SLA_SETTING_DEFAULTS: dict[str, Any] = {
    "business_hours": "08:00-18:00",
    "lunch_break": "",
    "sla_reminder_lead_minutes": 15.0,
    "sla_second_level_minutes": 60.0,
    "sla_root_cause_remind_minutes": 240.0,
    "sla_digest_seconds": 60.0,
    "sla_pause_states": "waiting_parts,waiting_customer_plan",
    "sla_daily_check_hour": 9,
    "timer_sweep_seconds": 5.0,
}


def setting(settings: Settings, name: str) -> Any:
    value = getattr(settings, name, None)
    return SLA_SETTING_DEFAULTS[name] if value is None else value


def sla_settings_from(settings: Settings) -> SlaSettings:
    return SlaSettings.from_values(
        business_hours=str(setting(settings, "business_hours")),
        lunch_break=str(setting(settings, "lunch_break")) or None,
        reminder_lead_minutes=float(setting(settings, "sla_reminder_lead_minutes")),
        second_level_minutes=float(setting(settings, "sla_second_level_minutes")),
        root_cause_remind_minutes=float(setting(settings, "sla_root_cause_remind_minutes")),
        digest_seconds=float(setting(settings, "sla_digest_seconds")),
        pause_states=str(setting(settings, "sla_pause_states")),
        daily_check_hour=int(setting(settings, "sla_daily_check_hour")),
    )


def service_config(settings: Settings) -> ServiceConfig:
    return ServiceConfig(timezone=ZoneInfo(settings.timezone), sla=sla_settings_from(settings))
