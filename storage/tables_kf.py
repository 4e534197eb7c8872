"""Tables of 微信客服 (issue 21): sync cursors, per-customer message budget, held notices, contact ways.

Imported by storage/tables.py so that they are on SQLModel.metadata; the migration 0009 creates them.
Messages themselves need no table: the inbox's (platform, event_key) uniqueness dedupes msgids.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Integer
from sqlmodel import Field, SQLModel

from storage.types import UtcDateTime

_BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


class KfCursorRow(SQLModel, table=True):
    """Where kf/sync_msg left off for one account. `version` moves with every saved cursor: a
    syncer saves only over the version it read (two syncers never move a cursor backwards)."""

    __tablename__ = "wecom_kf_cursors"
    open_kfid: str = Field(primary_key=True, max_length=64)
    cursor: str = Field(default="", max_length=512)
    version: int = 0
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class KfBudgetRow(SQLModel, table=True):
    """The 5-in-48-h budget of one WeChat customer ("<open_kfid>:<external_userid>")."""

    __tablename__ = "wecom_kf_budgets"
    external_id: str = Field(primary_key=True, max_length=160)
    window_start: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))  # their last message
    # send_time has whole seconds: two messages within one second are told apart by msgid (a re-pulled
    # message must not open a new window, a new one in the same second must).
    last_msgid: str = Field(default="", max_length=128)
    sent: int = 0  # messages sent since window_start


class KfHeldRow(SQLModel, table=True):
    """A notice that found the budget spent and no SMS: sent with the customer's next message."""

    __tablename__ = "wecom_kf_held"
    id: int | None = Field(default=None, sa_column=Column(_BIG_ID, primary_key=True, autoincrement=True))
    external_id: str = Field(max_length=160, index=True)
    text: str
    ticket_number: str | None = Field(default=None, max_length=32)
    held_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class KfContactWayRow(SQLModel, table=True):
    """kf/add_contact_way's URL for one store (scene = store code), asked once."""

    __tablename__ = "wecom_kf_contact_ways"
    store_code: str = Field(primary_key=True, max_length=64)
    open_kfid: str = Field(max_length=64)
    url: str = Field(max_length=2048)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class KfSeenRow(SQLModel, table=True):
    """msgids answered outside the inbox (voice/video/file get a polite reply once)."""

    __tablename__ = "wecom_kf_seen"
    msgid: str = Field(primary_key=True, max_length=128)
    seen_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    extra: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
