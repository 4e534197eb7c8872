"""Tables of staff console (issue 22): sign-in links, sessions, saved views.

Imported by storage/tables.py so that they are on SQLModel.metadata; the migration 0012 creates them.
Links and sessions are kept only as the SHA-256 of their token (256 random bits each: a plain hash
suffices): a copy of the database signs nobody in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Index, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.types import UtcDateTime

_BigId = BigInteger().with_variant(Integer(), "sqlite")


def _dt(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(UtcDateTime(), nullable=nullable))


class ConsoleLinkRow(SQLModel, table=True):
    """A one-time sign-in link sent by `后台`: works once, until `expires_at`, for `person_id` only."""

    __tablename__ = "console_links"
    token_hash: str = Field(primary_key=True, max_length=64)
    person_id: str = Field(index=True, max_length=64)
    created_at: datetime = _dt(nullable=False)
    expires_at: datetime = _dt(nullable=False)
    used_at: datetime | None = _dt()


class ConsoleSessionRow(SQLModel, table=True):
    """A signed-in browser. Ends at `expires_at` (absolute), after the idle time since `last_seen_at`,
    or when revoked (`后台 退出全部`, 退出)."""

    __tablename__ = "console_sessions"
    token_hash: str = Field(primary_key=True, max_length=64)
    person_id: str = Field(index=True, max_length=64)
    created_at: datetime = _dt(nullable=False)
    last_seen_at: datetime = _dt(nullable=False)
    expires_at: datetime = _dt(nullable=False)
    revoked_at: datetime | None = _dt()


class ConsoleSavedViewRow(SQLModel, table=True):
    """A person's named queue filter (the query string of /console/)."""

    __tablename__ = "console_saved_views"
    __table_args__ = (UniqueConstraint("person_id", "name", name="uq_console_saved_views_person_name"),
                      Index("ix_console_saved_views_person", "person_id"))
    id: int | None = Field(default=None, sa_column=Column(_BigId, primary_key=True, autoincrement=True))
    person_id: str = Field(max_length=64)
    name: str = Field(max_length=64)
    query: str = Field(max_length=2000)
    created_at: datetime = _dt(nullable=False)
