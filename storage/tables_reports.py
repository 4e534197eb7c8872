"""Tables of report aggregates (issues 22, 24): 报表 and the dashboards at a million tickets.

Imported by storage/tables.py so that they are on SQLModel.metadata; the migration 0013 creates them.
Kept by a background fold (bot/jobs/report_aggregates.py, storage/report_aggregates.py), never in the
ticket's transaction: intake writes nothing more than before.

* `report_ticket_facts`: one narrow row per ticket (core/reports/facts.py): what the reports count
  about it. The figures that are not sums (percentiles of waits, the longest stays, open breaches) are
  read from these rows by index.
* `report_day_counts`: sums of the facts per local day × store × category × priority — counts by the
  day the ticket was reported (first response, SLA outcomes) and by the day it closed (first-time
  fix, traceability, closure time, ratings). A 30-day question reads ≤ 30 × stores × categories ×
  priorities small rows.
* `report_day_waits`, `report_day_top_stays`: per day and state, the completed waits' total and the
  ten longest (the blocked-duration TOP10 is the top ten of the days' top tens).
* `report_fold_state`: how far the fold got (the audit chain's seq; the backfill's next ticket id).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer
from sqlmodel import Field, SQLModel

from storage.types import UtcDateTime

_BigId = BigInteger().with_variant(Integer(), "sqlite")

# The counters of a report_day_counts row, in order. By reported day: tickets reported, waits counted
# (first response / acceptance) and within 90 s, skipped (none yet), SLA tracks settled met/breached.
# By closed day: tickets closed (not cancelled), not fixed the first time, reworked, traceable,
# checked in, with ≥ 3 photos, signed, photos, ratings, seconds from report to close.
REPORTED_COUNTERS = ("reported", "fr_n", "fr_within", "fr_skipped", "acc_n", "acc_within", "acc_skipped",
                     "resp_met", "resp_breached", "res_met", "res_breached")
CLOSED_COUNTERS = ("closed", "ftf_failed", "reworked", "traceable", "checked_in", "photo3", "signed",
                   "photos_sum", "rating_sum", "rating_n", "closure_s")
DAY_COUNTERS = REPORTED_COUNTERS + CLOSED_COUNTERS


def _dt(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(UtcDateTime(), nullable=nullable))


def _count() -> Any:
    return Field(default=0, sa_column=Column(BigInteger(), nullable=False, server_default="0"))


class ReportTicketFactRow(SQLModel, table=True):
    __tablename__ = "report_ticket_facts"
    __table_args__ = (
        Index("ix_report_facts_created", "created_day", "store_id", "category"),
        Index("ix_report_facts_waits", "created_day", "first_response_s", "accept_s"),
        # covering the dashboards' per-technician and photos-vs-rating groups of a period's closed tickets
        Index("ix_report_facts_closed", "closed_day", "store_id", "category", "assignee_id", "rating", "photos"),
        Index("ix_report_facts_open", "is_open", "created_day"),
        Index("ix_report_facts_running", "running", "created_day"),
        Index("ix_report_facts_assignee", "assignee_id", "created_day"),
        Index("ix_report_facts_asset", "asset_key", "category", "created_at"),
        Index("ix_report_facts_rca", "rca_pending", "is_open"),
    )
    number: str = Field(primary_key=True, max_length=32)
    version: int = 0
    created_at: datetime = _dt(nullable=False)
    created_day: date
    closed_at: datetime | None = _dt()
    closed_day: date | None = None
    store_id: str = Field(default="", max_length=64)
    category: str = Field(default="", max_length=64)
    priority: str = Field(default="", max_length=16)
    assignee_id: str = Field(default="", max_length=64)
    status: str = Field(max_length=32)
    is_open: bool = False
    running: bool = False  # an SLA track still to be decided by its deadline
    first_response_s: int | None = None
    accept_s: int | None = None
    resp_present: bool = False
    resp_due: datetime | None = _dt()
    resp_met: bool | None = None
    resp_met_at: bool = False
    resp_breached: bool = False
    resp_ack: str | None = Field(default=None, max_length=64)
    res_present: bool = False
    res_due: datetime | None = _dt()
    res_met: bool | None = None
    res_met_at: bool = False
    res_breached: bool = False
    res_ack: str | None = Field(default=None, max_length=64)
    res_paused: bool = False
    photos: int = 0
    checked_in: bool = False
    signed: bool = False
    confirmed: bool = False
    rating: int | None = None
    reworked: bool = False
    came_back: bool = False
    asset_key: str = Field(default="", max_length=200)
    ongoing_state: str | None = Field(default=None, max_length=32)
    ongoing_since: datetime | None = _dt()
    stays: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    root_causes: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    rca_pending: bool = False  # root_causes is not empty


class ReportDayCountRow(SQLModel, table=True):
    __tablename__ = "report_day_counts"
    day: date = Field(primary_key=True)
    store_id: str = Field(primary_key=True, max_length=64)
    category: str = Field(primary_key=True, max_length=64)
    priority: str = Field(primary_key=True, max_length=16)
    reported: int = _count()
    fr_n: int = _count()
    fr_within: int = _count()
    fr_skipped: int = _count()
    acc_n: int = _count()
    acc_within: int = _count()
    acc_skipped: int = _count()
    resp_met: int = _count()
    resp_breached: int = _count()
    res_met: int = _count()
    res_breached: int = _count()
    closed: int = _count()
    ftf_failed: int = _count()
    reworked: int = _count()
    traceable: int = _count()
    checked_in: int = _count()
    photo3: int = _count()
    signed: int = _count()
    photos_sum: int = _count()
    rating_sum: int = _count()
    rating_n: int = _count()
    closure_s: int = _count()


class ReportDayWaitRow(SQLModel, table=True):
    __tablename__ = "report_day_waits"
    day: date = Field(primary_key=True)
    state: str = Field(primary_key=True, max_length=32)
    stays: int = _count()
    micros: int = _count()


class ReportDayTopStayRow(SQLModel, table=True):
    __tablename__ = "report_day_top_stays"
    day: date = Field(primary_key=True)
    state: str = Field(primary_key=True, max_length=32)
    number: str = Field(primary_key=True, max_length=32)
    entered_at: datetime = Field(sa_column=Column(UtcDateTime(), primary_key=True))
    micros: int = Field(sa_column=Column(BigInteger(), nullable=False))


class ReportFoldStateRow(SQLModel, table=True):
    __tablename__ = "report_fold_state"
    id: int = Field(primary_key=True)
    seq: int = Field(default=0, sa_column=Column(BigInteger(), nullable=False))  # audit events folded up to
    backfill_next_id: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))
    backfill_until_id: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))
    steps: int = Field(default=0, sa_column=Column(BigInteger(), nullable=False))  # writes so far: the CAS
    zone: str = Field(default="", max_length=64)  # the days are this zone's: another zone rebuilds
    folded_at: datetime | None = _dt()
