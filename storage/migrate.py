"""Alembic, driven from code: `ticketbot db upgrade` and the service's start-up call this."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(database_url: str) -> Config:
    # Alembic is imported only when a migration runs: it costs ~0.4 s of start-up otherwise.
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("version_locations", str(MIGRATIONS / "versions"))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Blocking: run it in a thread from async code (env.py runs its own event loop)."""
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def head_revision() -> str:
    """The newest revision id, read from the version files (cheaper than importing Alembic)."""
    revisions: dict[str, str | None] = {}
    for path in (MIGRATIONS / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        rev = re.search(r"^revision\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
        down = re.search(r"^down_revision\s*=\s*(?:['\"]([^'\"]+)['\"]|None)", text, re.M)
        if rev:
            revisions[rev.group(1)] = down.group(1) if down else None
    parents = {d for d in revisions.values() if d}
    heads = [r for r in revisions if r not in parents]
    if len(heads) != 1:
        raise RuntimeError(f"expected one migration head, found {heads}")
    return heads[0]


async def is_at_head(engine: AsyncEngine) -> bool:
    """True when the database is already migrated to the newest revision."""
    try:
        async with engine.connect() as conn:
            current = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one_or_none()
    except DBAPIError:
        return False  # no alembic_version table yet
    return current == head_revision()


async def create_fresh_schema(engine: AsyncEngine) -> bool:
    """On a database without any table: create the schema from the models and stamp it at head.

    This is Alembic's documented way to start a new database ("create_all, then stamp head")
    and saves importing and running Alembic (~1 s) on the first start. False when the
    database already has tables: those go through the migrations.
    """
    from sqlalchemy import inspect
    from sqlmodel import SQLModel

    import storage.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

    async with engine.begin() as conn:
        existing = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        if existing:
            return False
        await conn.run_sync(SQLModel.metadata.create_all)
        await conn.execute(text(
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL,"
            " CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"))
        await conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:rev)"), {"rev": head_revision()})
    return True
