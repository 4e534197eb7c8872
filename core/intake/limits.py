"""How much intake accepts from one customer: the per-sender limit and the follow-up window.

Plain values the composition root sets from the settings (REPORT_LIMIT_PER_SENDER,
REPORT_LIMIT_WINDOW_MINUTES, FOLLOW_UP_WINDOW_HOURS, LOCATION_WINDOW_MINUTES) for each service; a
service nobody configured uses the defaults. Why these defaults is written down in docs/user-guide.md (Intake).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import timedelta

from core.service import TicketService


@dataclass(frozen=True, slots=True)
class IntakeLimits:
    per_sender: int = 5  # new tickets one customer may open per window; 0: no limit
    window: timedelta = timedelta(minutes=10)
    follow_up_window: timedelta = timedelta(hours=24)  # a repeat of an open ticket this young is a follow-up
    # A location (or 设备编号) sent this shortly before a report belongs to it (core/intake/details.py).
    location_window: timedelta = timedelta(minutes=30)

    @classmethod
    def from_values(cls, per_sender: int, window_minutes: float, follow_up_hours: float,
                    location_minutes: float = 30.0) -> IntakeLimits:
        return cls(per_sender=max(0, per_sender), window=timedelta(minutes=max(0.0, window_minutes)),
                   follow_up_window=timedelta(hours=max(0.0, follow_up_hours)),
                   location_window=timedelta(minutes=max(0.0, location_minutes)))

    @property
    def window_minutes(self) -> int:
        return max(1, round(self.window.total_seconds() / 60))


DEFAULT_LIMITS = IntakeLimits()
_CONFIGURED: weakref.WeakKeyDictionary[TicketService, IntakeLimits] = weakref.WeakKeyDictionary()


def configure_intake(service: TicketService, limits: IntakeLimits) -> None:
    _CONFIGURED[service] = limits


def intake_limits(service: TicketService) -> IntakeLimits:
    return _CONFIGURED.get(service, DEFAULT_LIMITS)
