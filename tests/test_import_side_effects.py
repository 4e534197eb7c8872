"""What an import changes beyond its rows: a technician deactivated by `ticketbot import people`
loses their open jobs to dispatch (as with `人员 停用`), and an asset or contract import that moves a
warranty end or a validity tells the store's supervisors (the change-linkage rules)."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient

from bot.cli.imports import run_masterdata_import
from bot.runtime import Runtime
from bot.settings import Settings
from core.model import TicketStatus
from tests.playground_client import PlaygroundUser
from tests.test_dispatch_service import _set_store
from tests.test_dispatch_support import clocked, person, report, the_offer, ticket


def settings_for(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, data_dir=tmp_path / "data")


async def accepted_job_and_a_file_deactivating_its_holder(client: TestClient, rt: Runtime,
                                                          tmp_path: Path) -> tuple[str, str, Path]:
    """A ticket its technician accepted, and a people file that deactivates that technician."""
    await PlaygroundUser(client, "cust-s01").say("你好")
    await _set_store(rt, "cust-s01", "S01")
    number, _ = await report(client, "cust-s01", "刹车异响，踩下去有怪声")
    holder, card = await the_offer(client, number)
    await PlaygroundUser(client, holder).press(card["id"], "accept")
    assert (await ticket(rt, number)).status is TicketStatus.ACCEPTED
    holder_row = await person(rt, holder)
    file = tmp_path / "people.csv"
    file.write_text(f"工号,姓名,角色,门店,在职\n{holder},{holder_row.name},技师,{holder_row.store_id},否\n",
                    encoding="utf-8")
    return number, holder, file


async def test_a_technician_deactivated_by_import_loses_open_jobs_to_dispatch(database_url: str,
                                                                              tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        number, holder, file = await accepted_job_and_a_file_deactivating_its_holder(client, rt, tmp_path)
        report_json = await run_masterdata_import(settings_for(database_url, tmp_path), "people", file)
        assert report_json["failed"] == 0 and report_json["updated"] == 1, report_json

        assert not (await person(rt, holder)).active
        after = await ticket(rt, number)
        assert after.assignee_id != holder
        assert after.status in {TicketStatus.DISPATCHED, TicketStatus.PENDING_DISPATCH}


async def test_a_dry_run_deactivation_releases_nothing(database_url: str, tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, rt, _clock):
        number, holder, file = await accepted_job_and_a_file_deactivating_its_holder(client, rt, tmp_path)
        await run_masterdata_import(settings_for(database_url, tmp_path), "people", file, dry_run=True)
        assert (await person(rt, holder)).active
        assert (await ticket(rt, number)).assignee_id == holder


async def test_an_asset_import_that_moves_the_warranty_end_tells_the_stores_supervisor(database_url: str,
                                                                                       tmp_path: Path) -> None:
    async with clocked(database_url, tmp_path) as (client, _rt, _clock):
        settings = settings_for(database_url, tmp_path)
        file = tmp_path / "assets.csv"
        file.write_text("资产编号,序列号,品牌,型号,门店,保修截止\nAC-9,KFR-35GW/N8HR3,格力,KFR-35GW,S01,2028-04-30\n",
                        encoding="utf-8")
        first = await run_masterdata_import(settings, "assets", file)
        assert first["imported"] == 1, first
        supervisor = PlaygroundUser(client, "sup-li")  # S01's supervisor in the demo directory
        seen = len(await supervisor.messages())
        file.write_text("资产编号,序列号,品牌,型号,门店,保修截止\nAC-9,KFR-35GW/N8HR3,格力,KFR-35GW,S01,2025-01-31\n",
                        encoding="utf-8")
        second = await run_masterdata_import(settings, "assets", file)
        assert second["updated"] == 1, second
        new = (await supervisor.messages())[seen:]
        told = " ".join(str(m) for m in new)
        assert "KFR-35GW/N8HR3" in told, new  # the SN as written
        assert "2028-04-30" in told and "2025-01-31" in told, new
        other = PlaygroundUser(client, "sup-chen")  # S03's supervisor is not told
        assert "2025-01-31" not in " ".join(str(m) for m in await other.messages())
