"""Tables of SMS and the store report page (issue 21): phone codes, the SMS log (the per-phone limit
counts it) and the report page's per-IP counter.

Imported by storage/tables.py so that they are on SQLModel.metadata; the migration 0010 creates them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, Integer
from sqlmodel import Field, SQLModel

from storage.types import UtcDateTime

_BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


class SmsCodeRow(SQLModel, table=True):
    """The one live confirmation code of a phone: only its keyed hash (HMAC with the audit key), so
    a copy of the database does not give the codes away (six digits are a million guesses offline)."""

    __tablename__ = "sms_codes"
    phone: str = Field(primary_key=True, max_length=20)
    code_mac: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    attempts: int = 0  # wrong guesses so far; at the limit the code is dead


class SmsSendRow(SQLModel, table=True):
    """One SMS to one phone (a code or a ticket notice): the per-phone hourly limit counts these rows,
    and a notice remembers the ticket status it told (one SMS per state change, not per message)."""

    __tablename__ = "sms_sends"
    __table_args__ = (Index("ix_sms_sends_phone_at", "phone", "at"),)
    id: int | None = Field(default=None, sa_column=Column(_BIG_ID, primary_key=True, autoincrement=True))
    phone: str = Field(max_length=20)
    at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    kind: str = Field(max_length=16)  # code | notice
    state: str = Field(default="reserved", max_length=16)  # reserved (being sent) | sent
    ticket_number: str | None = Field(default=None, max_length=32)
    ticket_status: str | None = Field(default=None, max_length=32)
    provider: str = Field(default="", max_length=16)
    message_id: str | None = Field(default=None, max_length=128)


class ReportPageHitRow(SQLModel, table=True):
    """One counted request of the store report page from one client address (a report, a code)."""

    __tablename__ = "report_page_hits"
    __table_args__ = (Index("ix_report_page_hits_ip_kind_at", "ip", "kind", "at"),)
    id: int | None = Field(default=None, sa_column=Column(_BIG_ID, primary_key=True, autoincrement=True))
    ip: str = Field(max_length=64)
    kind: str = Field(max_length=16)  # report | code
    at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
