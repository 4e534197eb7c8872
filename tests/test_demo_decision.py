"""Whether `ticketbot serve` loads the demo directory: an empty organisation, whatever else is set up
before the first start (an API client: `ticketbot api-client add`), gets it; a real one never does."""

from __future__ import annotations

from pathlib import Path

from bot.cli.api_clients import add
from bot.runtime import Runtime
from core.masterdata.model import StoreRecord
from core.model import Person, Role
from tests.conftest import make_settings


async def _people_after_start(runtime: Runtime) -> set[str]:
    await runtime.prepare_database(bind="127.0.0.1")
    async with runtime.uow() as uow:
        return {p.id for role in Role for p in await uow.list_people(role)}


async def test_an_api_client_added_before_the_first_start_does_not_stop_the_demo(sqlite_url: str,
                                                                                  tmp_path: Path) -> None:
    settings = make_settings(sqlite_url, tmp_path, load_demo="auto")
    added = await add(settings, "erp", ["tickets:read"])
    assert added["token"]
    runtime = Runtime(settings)
    try:
        people = await _people_after_start(runtime)
    finally:
        await runtime.engine.dispose()
    assert {"admin", "sup-li", "tech-wang"} <= people and "api:erp" in people


async def test_a_real_organisation_is_never_given_the_demo(sqlite_url: str, tmp_path: Path) -> None:
    # Only a store (no people yet): not empty, no demo.
    other = make_settings(sqlite_url, tmp_path, load_demo="auto")
    runtime = Runtime(other)
    try:
        await runtime.prepare_database(bind=None)
        async with runtime.uow() as uow:
            await uow.masterdata().upsert_store(StoreRecord("Z01", "自有门店", "杭州市", 30.2, 120.2))
            await uow.commit()
        assert await _people_after_start(runtime) == set()
    finally:
        await runtime.engine.dispose()

    # Only one real person (e.g. the first admin, synced or imported): not empty, no demo.
    third = make_settings(f"sqlite:///{tmp_path / 'person-only.db'}", tmp_path, load_demo="auto")
    runtime = Runtime(third)
    try:
        await runtime.prepare_database(bind=None)
        async with runtime.uow() as uow:
            await uow.add_person(Person(id="boss", name="老板", role=Role.ADMIN), {"wecom": "boss"})
            await uow.commit()
        assert await _people_after_start(runtime) == {"boss"}
    finally:
        await runtime.engine.dispose()
