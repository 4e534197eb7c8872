"""Several kinds of versioned configuration read in one statement (`latest_configs`): each kind's
newest version, as `latest_config` reads it one kind at a time; a new ticket needs the SLA matrix
and the calendar, one round trip for both."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from storage.database import Sessions
from storage.unit_of_work import SqlUnitOfWork
from tests.statements import statements_sent

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


@pytest.fixture
def sessions(db_sessions: Sessions) -> Sessions:
    return db_sessions


async def test_each_kinds_newest_version_in_one_statement(sessions: Sessions) -> None:
    async with SqlUnitOfWork(sessions) as uow:
        for kind, payloads in (("t_sla", [{"v": 1}, {"v": 2}, {"v": 3}]), ("t_calendar", [{"假日": ["2026-10-01"]}]),
                               ("t_other", [{"v": "x"}, {"v": "y"}])):
            for payload in payloads:
                await uow.save_config(kind, payload, actor_id="admin", note="", at=NOW)
        await uow.commit()
    async with statements_sent(sessions.kw["bind"]) as sent, SqlUnitOfWork(sessions) as uow:
        found = await uow.latest_configs(["t_sla", "t_calendar", "t_never", "t_sla"])
        assert len(sent) == 1
        assert found == {"t_sla": (3, {"v": 3}), "t_calendar": (1, {"假日": ["2026-10-01"]}), "t_never": None}
        for kind in ("t_sla", "t_calendar", "t_never", "t_other"):
            assert (await uow.latest_configs([kind]))[kind] == await uow.latest_config(kind)
        assert await uow.latest_configs([]) == {}
