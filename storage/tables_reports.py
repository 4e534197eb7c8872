"""Tables of report aggregates (issues 22, 24): 报表 and the dashboards at a million tickets.

Imported by storage/tables.py so that they are on SQLModel.metadata; the migration 0013 creates them (on a
SQLite file they are used in a file of their own instead, storage/report_store.py).
Kept by a background fold (bot/jobs/report_aggregates.py, storage/report_aggregates.py), never in the
ticket's transaction: intake writes nothing more than before.

* `report_ticket_facts`: one narrow row per ticket (core/reports/facts.py): what the reports count
  about it. The figures that are not sums (percentiles of waits, the longest stays, open breaches) are
  read from these rows by index.
* `report_day_counts`: sums of the facts per local day × store × category × priority — counts by the
  day the ticket was reported (first response, SLA outcomes) and by the day it closed (first-time
  fix, traceability, closure time, ratings). A 30-day question reads ≤ 30 × stores × categories ×
  priorities small rows.
* `report_day_rollups`: the same sums at the grains the questions ask most — every store together
  (`dim` "all"), one store ("store") or one category ("category"), per local day × priority. A 30-day
  question over everything reads 90 rows instead of up to 30 × stores × categories × priorities.
* `report_day_values`, `report_day_technicians`: per day, the histograms (waits in whole seconds,
  photos × rating) and the technicians' closed tickets and ratings, for the unfiltered questions.
* `report_day_waits`, `report_day_top_stays`: per day and state, the completed waits' total and the
  ten longest (the blocked-duration TOP10 is the top ten of the days' top tens).
* `report_fold_state`: how far the fold got (the audit chain's seq; the backfill's next ticket id).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, text
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


OPEN_COLUMNS = ("is_open", "created_day", "store_id", "category", "assignee_id", "status", "created_at", "number",
                "ongoing_state", "ongoing_since", "ongoing_since_us", "resp_present", "resp_met_at", "resp_due",
                "resp_breached", "resp_ack",
                "res_present", "res_met_at", "res_due", "res_breached", "res_ack", "res_paused")


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
        # the open tickets (a bounded set: the backlog, not the history) with every column their reads use
        # (backlog, open breaches, ongoing stays, technicians' open load): no lookup of the wide rows
        Index("ix_report_facts_open", *OPEN_COLUMNS, sqlite_where=text("is_open IS 1"),
              postgresql_where=text("is_open IS true")),
        # a period's waits and longest stays for one store / one category (the dashboards' filters)
        Index("ix_report_facts_store_waits", "store_id", "created_day", "first_response_s", "accept_s",
              "longest_stay"),
        Index("ix_report_facts_category_waits", "category", "created_day", "first_response_s", "accept_s",
              "longest_stay"),
        Index("ix_report_facts_store_closed", "store_id", "closed_day", "category", "assignee_id", "rating",
              "photos"),
        Index("ix_report_facts_category_closed", "category", "closed_day", "store_id", "assignee_id", "rating",
              "photos"),
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
    # micros of the longest of `stays` (0: none): a filter's TOP10 reads the stays of ≤ 10 tickets' rows
    longest_stay: int = Field(default=0, sa_column=Column(BigInteger(), nullable=False, server_default="0"))
    # ongoing_since in microseconds since 1970: the ongoing stays' total summed in SQL, exactly
    ongoing_since_us: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))


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


ROLLUP_DIMS = ("all", "store", "category")  # report_day_rollups.dim: the value is "", the store, the category


class ReportDayRollupRow(SQLModel, table=True):
    """report_day_counts summed over all but one dimension (key: dim, day first, so a period is one range)."""

    __tablename__ = "report_day_rollups"
    dim: str = Field(primary_key=True, max_length=16)
    day: date = Field(primary_key=True)
    value: str = Field(primary_key=True, max_length=64)
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


class ReportDayValueRow(SQLModel, table=True):
    """Per local day, how many tickets have a value (every store together: the unfiltered questions).
    kind "fr" / "acc": reported that day, x = whole seconds to the first response / acceptance (NONE_X:
    none yet); "frb" / "accb": the same in buckets (x = report_aggregates.wait_bucket); kind "photo":
    closed that day with a rating, x = work photos, y = the rating."""

    __tablename__ = "report_day_values"
    kind: str = Field(primary_key=True, max_length=8)
    day: date = Field(primary_key=True)
    x: int = Field(primary_key=True)
    y: int = Field(primary_key=True)
    n: int = _count()


class ReportDayTechnicianRow(SQLModel, table=True):
    """Per local day and assignee: the tickets closed that day, their ratings' sum and count."""

    __tablename__ = "report_day_technicians"
    day: date = Field(primary_key=True)
    assignee_id: str = Field(primary_key=True, max_length=64)
    closed: int = _count()
    rating_sum: int = _count()
    rating_n: int = _count()


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
    # When the fold last looked for first responses (set on the ticket row without an audit event): the next
    # look reads only those set since (minus a margin); None: the full 3-day check (migration 0015).
    responses_checked_at: datetime | None = _dt()
    # The audit event's hash at `seq` when it was folded: aggregates of another chain are told apart (migration 0016).
    seq_hash: str | None = Field(default=None, max_length=64)


# Every report table (storage/report_store.py creates them in a SQLite file of their own).
REPORT_TABLES: list[Any] = [model.__table__ for model in (  # type: ignore[union-attr]
    ReportTicketFactRow, ReportDayCountRow, ReportDayRollupRow, ReportDayValueRow, ReportDayTechnicianRow,
    ReportDayWaitRow, ReportDayTopStayRow, ReportFoldStateRow)]
