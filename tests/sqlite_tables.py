"""Two small tables for the SQLite driver and session tests, and an engine that has them (or others)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, String, Table
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.database import create_engine

metadata = MetaData()
items = Table("items", metadata, Column("id", Integer, primary_key=True), Column("name", String, unique=True))


class Base(DeclarativeBase):
    metadata = metadata


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str]


@asynccontextmanager
async def engine_with_tables(path: Path, tables: MetaData = metadata) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite:///{path}")
    async with engine.begin() as conn:
        await conn.run_sync(tables.create_all)
    try:
        yield engine
    finally:
        await engine.dispose()
