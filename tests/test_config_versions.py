"""Config versions (rules, SLA, dispatch policy, SOP, template) never lose a concurrent change.

Each admin command reads the current version, derives the next one and appends it. On
PostgreSQL (READ COMMITTED) another admin's version can land between that read and the insert;
saving then would silently drop their change. `save_config(based_on=...)` refuses with StaleRead
and `TicketService.handle` runs the command again on the data as it is now. (SQLite takes the
write lock at BEGIN, so there the race cannot happen; the refusal is still checked on both.)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from bot.rules.rulebook import RuleBook
from core.clock import FixedClock
from core.errors import StaleRead
from core.model import Person, Role
from core.service import Context, ServiceConfig, TicketService, handles
from storage.database import create_engine, session_factory
from storage.migrate import upgrade
from storage.unit_of_work import SqlUnitOfWork

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
KIND = "test_counter"
TAGS_KIND = "test_tags"
ADMIN = Person(id="admin", name="管理员", role=Role.ADMIN)


async def _save(sessions: object, payload: dict[str, int], based_on: int | None) -> int:
    async with SqlUnitOfWork(sessions) as uow:  # type: ignore[arg-type]
        version = await uow.save_config(KIND, payload, actor_id="admin", note="t", at=NOW, based_on=based_on)
        await uow.commit()
    return version


async def test_a_save_based_on_an_old_version_is_refused_and_writes_nothing(database_url: str) -> None:
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        assert await _save(sessions, {"n": 1}, based_on=0) == 1
        with pytest.raises(StaleRead) as refused:
            await _save(sessions, {"n": 99}, based_on=0)  # read before v1 landed
        assert refused.value.data == {"kind": KIND, "based_on": 0, "latest": 1}
        assert "其他管理员" in refused.value.user_message
        assert await _save(sessions, {"n": 2}, based_on=1) == 2
        assert await _save(sessions, {"note": 0}, based_on=None) == 3  # append-only kinds need no base
        async with SqlUnitOfWork(sessions) as uow:
            assert [r["version"] for r in await uow.config_history(KIND)] == [3, 2, 1]
            assert await uow.config_version(KIND, 2) == {"n": 2}
    finally:
        await engine.dispose()


async def test_two_uncommitted_saves_of_the_same_version_one_is_refused(postgres_database: str) -> None:
    """Both read max = 0; the second insert waits on the unique index, then collides."""
    engine = create_engine(postgres_database)
    sessions = session_factory(engine)
    kind = f"{KIND}_pg"
    try:
        async with SqlUnitOfWork(sessions) as first, SqlUnitOfWork(sessions) as second:
            assert await first.save_config(kind, {"who": 1}, actor_id="a", note="", at=NOW, based_on=0) == 1
            collided = asyncio.create_task(
                second.save_config(kind, {"who": 2}, actor_id="b", note="", at=NOW, based_on=0))
            await asyncio.sleep(0.2)
            assert not collided.done()  # blocked behind the first writer's row
            await first.commit()
            with pytest.raises(StaleRead):
                await collided
        async with SqlUnitOfWork(sessions) as uow:
            assert await uow.config_version(kind, 1) == {"who": 1}
            assert await uow.config_version(kind, 2) is None
    finally:
        await engine.dispose()


@dataclass(frozen=True, slots=True)
class AppendTag:
    """Test-only command: append a tag to the tag list, the way admin commands edit config."""

    tag: str


ATTEMPTS: list[str] = []
INTERLOPER: list[object] = []  # a sessionmaker: commit a competing version during the first attempt


@handles(AppendTag)
async def _append_tag(ctx: Context, cmd: AppendTag) -> int:
    ATTEMPTS.append(cmd.tag)
    latest = await ctx.uow.latest_config(TAGS_KIND)
    version, tags = (latest[0], list(latest[1]["tags"])) if latest else (0, [])
    if INTERLOPER:
        async with SqlUnitOfWork(INTERLOPER.pop()) as other:  # type: ignore[arg-type]
            await other.save_config(TAGS_KIND, {"tags": [*tags, "别人的修改"]}, actor_id="admin-2", note="",
                                    at=ctx.now, based_on=version)
            await other.commit()
    return await ctx.uow.save_config(TAGS_KIND, {"tags": [*tags, cmd.tag]}, actor_id=ctx.actor.id, note=cmd.tag,
                                     at=ctx.now, based_on=version)


async def test_a_command_that_read_stale_config_runs_again_and_keeps_both_changes(postgres_database: str) -> None:
    engine = create_engine(postgres_database)
    sessions = session_factory(engine)
    service = TicketService(lambda: SqlUnitOfWork(sessions), FixedClock(NOW), RuleBook(), ServiceConfig())
    ATTEMPTS.clear()
    try:
        async with SqlUnitOfWork(sessions) as uow:
            start = (await uow.latest_config(TAGS_KIND) or (0, {}))[0]
        INTERLOPER.append(sessions)
        assert await service.handle(AppendTag("我的修改"), ADMIN) == start + 2
        assert ATTEMPTS == ["我的修改", "我的修改"]  # refused once, then run on the new version
        async with SqlUnitOfWork(sessions) as uow:
            latest = await uow.latest_config(TAGS_KIND)
        assert latest is not None and latest[1]["tags"][-2:] == ["别人的修改", "我的修改"]
    finally:
        INTERLOPER.clear()
        await engine.dispose()
