"""The Alembic migrations and the models describe the same schema."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from sqlalchemy import text

from storage.database import create_engine
from storage.migrate import create_fresh_schema, head_revision, is_at_head, upgrade


def sqlite_schema(path: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name <> 'alembic_version'")
        return sorted((name, " ".join(sql.split())) for name, sql in rows)
    finally:
        db.close()


async def test_fresh_schema_equals_the_migrated_schema(tmp_path: Path) -> None:
    fresh, migrated = tmp_path / "fresh.db", tmp_path / "migrated.db"
    engine = create_engine(f"sqlite:///{fresh}")
    try:
        assert await create_fresh_schema(engine) is True
        assert await is_at_head(engine) is True
        assert await create_fresh_schema(engine) is False  # never on a database with tables
    finally:
        await engine.dispose()
    await asyncio.to_thread(upgrade, f"sqlite:///{migrated}")  # env.py runs its own event loop
    assert sqlite_schema(fresh) == sqlite_schema(migrated), "models and migrations differ: add a migration"


async def test_migrated_database_is_at_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    try:
        assert await is_at_head(engine)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one() == head_revision()
    finally:
        await engine.dispose()
