"""Directory sync against the fake WeCom server (real wire format, the token required, many pages):
people and departments created and updated, a member who left deactivated with their accepted job
back in dispatch (audited), a page failing midway changing nothing, a second run changing nothing,
the mass-departure guard, and the daily timer. Feishu and DingTalk: tests/test_directory_sync_platforms.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.jobs.directory_job import sync_directories
from bot.runtime import Runtime
from core.clock import FixedClock
from core.masterdata.directory import SYNC_TIMER
from core.model import Person, Role, TicketStatus
from storage.tables import AuditEventRow, PersonRow, TimerRowTable
from tests.fakes.directory import WeComDirectoryServer
from tests.fakes.wecom_server import SAMPLE_AES_KEY, SAMPLE_TOKEN, FakeWeCom
from tests.playground_client import PlaygroundUser
from tests.sla_support import fixed_clock_app, runtime
from tests.test_dispatch_support import START, report, ticket

ROLE_MAP = "主管=supervisor,维修=technician,客服=front_desk"


def wecom_directory() -> WeComDirectoryServer:
    directory = WeComDirectoryServer(page_size=2)
    directory.departments = [
        {"id": 1, "name": "示例汽车维修有限公司", "parentid": 0, "order": 1, "department_leader": []},
        {"id": 2, "name": "维修部", "parentid": 1, "order": 2, "department_leader": ["boss-li"]},
        {"id": 3, "name": "客服部", "parentid": 1, "order": 3, "department_leader": []},
        {"id": 4, "name": "维修一组", "parentid": 2, "order": 4, "department_leader": []},
    ]
    directory.users = [
        _user("wangshifu", "王师傅", [2], "维修技师"),
        _user("boss-li", "李强", [2], "维修主管"),
        _user("zhangsan", "张三", [4, 2], "技工", main=4, leader="boss-li"),
        _user("lisi", "李四", [3], "客服专员"),
        _user("wangwu", "王五", [1], "行政"),
        _user("zhaoliu", "赵六", [3], "客服专员", status=2),  # disabled in WeCom, never known here
    ]
    return directory


def _user(userid: str, name: str, departments: list[int], position: str, *, main: int | None = None,
          leader: str | None = None, status: int = 1) -> dict[str, Any]:
    # What an app created after 2022-06-20 receives: no mobile, email or avatar.
    return {"userid": userid, "name": name, "department": departments, "main_department": main or departments[0],
            "order": [0] * len(departments), "position": position, "status": status,
            "is_leader_in_dept": [0] * len(departments), "direct_leader": [leader] if leader else []}


@asynccontextmanager
async def wecom_app(database_url: str, tmp_path: Path, at: datetime = START, **settings: Any) -> AsyncIterator[
        tuple[Any, Runtime, FixedClock, FakeWeCom, WeComDirectoryServer]]:
    fake = FakeWeCom()
    directory = wecom_directory().attach(fake)
    await fake.start()
    clock = FixedClock(at)
    values: dict[str, Any] = {
        "wecom_corp_id": fake.corp_id, "wecom_agent_id": str(fake.agent_id), "wecom_secret": fake.secret,
        "wecom_token": SAMPLE_TOKEN, "wecom_encoding_aes_key": SAMPLE_AES_KEY, "wecom_api_base": fake.base_url,
        "directory_role_map": ROLE_MAP, **settings}
    try:
        async with fixed_clock_app(database_url, tmp_path, clock, **values) as client:
            rt = runtime(client)
            async with rt.uow() as uow:  # known before the first sync: two demo staff linked to WeCom
                await uow.link_identity("tech-wang", "wecom", "wangshifu")
                await uow.link_identity("sup-li", "wecom", "boss-li")
                await uow.commit()
            yield client, rt, clock, fake, directory
    finally:
        await fake.close()


async def sync(rt: Runtime, **kwargs: Any) -> dict[str, Any]:
    (body,) = await sync_directories(rt.service, rt.settings, rt.tokens, **kwargs)
    return body


async def people(rt: Runtime) -> dict[str, tuple[str, str, bool, str | None, str | None, str | None]]:
    async with rt.sessions() as session:
        rows = (await session.execute(select(PersonRow))).scalars().all()
        return {r.id: (r.name, r.role, r.active, r.phone, r.team_id, r.supervisor_id) for r in rows}


async def audit_kinds(rt: Runtime, kind: str) -> list[dict[str, Any]]:
    async with rt.sessions() as session:
        rows = (await session.execute(select(AuditEventRow).where(AuditEventRow.kind == kind)
                                      .order_by(AuditEventRow.seq))).scalars().all()
        return [{"actor": r.actor_id, **r.payload} for r in rows]


async def get(rt: Runtime, person_id: str) -> Person:
    async with rt.uow() as uow:
        found = await uow.get_person(person_id)
    assert found is not None, person_id
    return found


async def test_wecom_sync_creates_updates_deactivates_and_is_idempotent(database_url: str, tmp_path: Path) -> None:
    async with wecom_app(database_url, tmp_path) as (client, rt, _clock, fake, directory):
        first = await sync(rt)
        assert first["ok"], first
        assert sorted(first["people"]["created"]) == ["wx-lisi", "wx-wangwu", "wx-zhangsan"]
        assert sorted(first["people"]["updated"]) == ["sup-li", "tech-wang"]
        assert (first["deactivated"], first["unchanged"], first["errors"]) == (0, 1, [])  # 赵六: disabled, skipped
        assert first["teams"] == {"created": 3, "updated": 1, "deactivated": 0, "unchanged": 0}  # +leader of wx-2
        # 5 requests: department/list and user/list of each of the 4 departments, all with the token.
        paths = [r.path for r in fake.requests if "department/list" in r.path or "user/list" in r.path]
        assert len(paths) == 5
        assert all(r.query.get("access_token") in fake.tokens for r in fake.requests if "user/list" in r.path)

        after = await people(rt)
        # Roles of new people come from the mapping (title, then department names); unmapped: customer.
        assert after["wx-zhangsan"][:3] == ("张三", "technician", True)
        assert after["wx-lisi"][:2] == ("李四", "front_desk")
        assert after["wx-wangwu"][:2] == ("王五", "customer")  # the company's name (…维修…) is no match
        assert not any(name == "赵六" for name, *_ in after.values())
        # Existing people keep their role; the platform's name and main department (team) apply.
        assert after["tech-wang"][:3] == ("王师傅", "technician", True) and after["tech-wang"][4] == "wx-2"
        assert after["sup-li"][:2] == ("李强", "supervisor")
        assert after["wx-zhangsan"][4] == "wx-4" and after["wx-zhangsan"][5] == "sup-li"  # direct_leader: a supervisor
        assert after["wx-wangwu"][4] is None  # the company root is no team
        async with rt.uow() as uow:
            team = await uow.masterdata().get_team("wx-2")
            assert team is not None and (team.name, team.leader_id, team.active) == ("维修部", "sup-li", True)
            assert await uow.person_by_identity("wecom", "zhangsan") is not None
            # A synced technician is a dispatch candidate like an imported one.
            (entry,) = await uow.dispatch_store().entries(["wx-zhangsan"])
            assert entry.active and entry.name == "张三"
        synced = await audit_kinds(rt, "directory_synced")
        assert synced[-1]["actor"] == "system" and synced[-1]["counts"] == {"created": 3, "updated": 2,
                                                                            "deactivated": 0}

        # tech-wang accepts a job.
        number, _ = await report(client, "cust-dir", "中控黑屏")
        admin, wang = PlaygroundUser(client, "admin"), PlaygroundUser(client, "tech-wang")
        await admin.say(f"转派 {number} tech-wang")
        await wang.say(f"接单 {number}")
        assert (await ticket(rt, number)).status is TicketStatus.ACCEPTED

        # He leaves the company and 李四 is renamed; the sync breaks on the 3rd request: nothing changes.
        directory.remove("wangshifu")
        directory.user("lisi")["name"] = "李思思"
        before = await people(rt)
        seq_before = len(await audit_kinds(rt, "directory_synced"))
        directory.fail_request(3)
        broken = await sync(rt)
        assert not broken["ok"] and "本次没有做任何修改" in broken["errors"][0]["message"], broken
        assert await people(rt) == before
        assert (await ticket(rt, number)).assignee_id == "tech-wang"
        assert len(await audit_kinds(rt, "directory_synced")) == seq_before

        # The next run applies it: deactivated (never deleted), his accepted job back to dispatch.
        second = await sync(rt)
        assert second["ok"], second
        assert second["people"] == {"created": [], "updated": ["wx-lisi"], "deactivated": ["tech-wang"]}
        assert second["tickets_released"] == [number]
        wang_now = await get(rt, "tech-wang")
        assert not wang_now.active and wang_now.role is Role.TECHNICIAN
        moved = await ticket(rt, number)
        assert moved.status is TicketStatus.DISPATCHED and moved.assignee_id not in (None, "tech-wang")
        released = await audit_kinds(rt, "technician_jobs_released")
        assert released[-1]["person_id"] == "tech-wang" and released[-1]["tickets"] == [number]
        last = (await audit_kinds(rt, "directory_synced"))[-1]
        assert last["deactivated"] == ["tech-wang"] and last["tickets_released"] == [number]
        assert (await get(rt, "wx-lisi")).name == "李思思"

        # Idempotent: the same directory again changes nothing and audits nothing.
        third = await sync(rt)
        assert (third["created"], third["updated"], third["deactivated"]) == (0, 0, 0), third
        assert third["unchanged"] == 5 and third["teams"]["unchanged"] == 3
        assert len(await audit_kinds(rt, "directory_synced")) == seq_before + 1
        # Back in WeCom, he stays deactivated: re-enabling is an admin's decision.
        directory.users.append(_user("wangshifu", "王师傅", [2], "维修技师"))
        await sync(rt)
        assert not (await get(rt, "tech-wang")).active


async def test_a_member_disabled_in_wecom_is_deactivated_and_a_gone_department_ends_its_team(
        sqlite_url: str, tmp_path: Path) -> None:
    async with wecom_app(sqlite_url, tmp_path) as (_client, rt, _clock, fake, directory):
        assert (await sync(rt))["ok"]
        directory.user("lisi")["status"] = 5  # left the company
        fake.expire_tokens_next = True  # WeCom answers 42001 once: a new token, the same sync
        tokens_before = fake.gettoken_calls
        directory.departments = [d for d in directory.departments if d["id"] != 4]
        for user in directory.users:
            if 4 in user["department"]:
                user["department"] = [2]
                user["main_department"] = 2
        body = await sync(rt)
        assert body["people"]["deactivated"] == ["wx-lisi"] and body["teams"]["deactivated"] == 1
        assert fake.gettoken_calls == tokens_before + 1
        assert not (await get(rt, "wx-lisi")).active
        async with rt.uow() as uow:
            team = await uow.masterdata().get_team("wx-4")
            assert team is not None and not team.active  # deactivated, never deleted
            assert await uow.masterdata().person_team("wx-zhangsan") == "wx-2"


async def test_a_mass_departure_is_refused_unless_forced(sqlite_url: str, tmp_path: Path) -> None:
    async with wecom_app(sqlite_url, tmp_path) as (_client, rt, _clock, _fake, directory):
        assert (await sync(rt))["ok"]
        before = await people(rt)
        directory.users = [u for u in directory.users if u["userid"] == "wangwu"]  # the app now sees one person
        refused = await sync(rt)
        assert not refused["ok"] and "--force" in refused["errors"][0]["message"]
        assert await people(rt) == before
        forced = await sync(rt, force=True)
        assert forced["ok"] and forced["deactivated"] == 4


async def test_the_daily_timer_runs_the_sync_once_and_rearms(sqlite_url: str, tmp_path: Path) -> None:
    async with wecom_app(sqlite_url, tmp_path, directory_sync_at="03:00") as (client, rt, clock, _fake, directory):
        async with rt.sessions() as session:
            (timer,) = (await session.execute(select(TimerRowTable).where(TimerRowTable.kind == SYNC_TIMER))
                        ).scalars().all()
        # START is 10:00 in Shanghai: the next 03:00 local is 19:00 UTC the same day.
        assert timer.state == "pending" and timer.due_at.replace(tzinfo=START.tzinfo) == START + timedelta(hours=17)
        assert timer.payload == {"at": "03:00"}
        clock.advance(timedelta(hours=17, seconds=1))
        assert await rt.timer_engine.fire_due() == 1
        job = rt.directory_job
        assert job is not None and job.task is not None
        (result,) = await job.task
        assert result["ok"] and result["created"] == 3
        assert (await get(rt, "tech-wang")).name == "王师傅"
        async with rt.sessions() as session:
            (again,) = (await session.execute(select(TimerRowTable).where(TimerRowTable.kind == SYNC_TIMER))
                        ).scalars().all()
        assert again.state == "pending" and again.due_at.replace(tzinfo=START.tzinfo) == START + timedelta(hours=41)
        # A quiet day tells nobody; the next day someone left: the admins hear it (nothing else would).
        admin = PlaygroundUser(client, "admin")
        assert not any("通讯录同步" in t for t in await admin.texts())
        directory.remove("wangshifu")
        clock.advance(timedelta(days=1))
        assert await rt.timer_engine.fire_due() == 1
        assert job.task is not None
        (result,) = await job.task
        assert result["people"]["deactivated"] == ["tech-wang"]
        notice = [t for t in await admin.texts() if "通讯录同步" in t]
        assert len(notice) == 1 and "停用 1 人：王师傅（tech-wang）" in notice[0]
        # A process that fires no timers (`ticketbot dingtalk`) started without the setting changes nothing;
        # switched off where timers fire, the pending timer is cancelled at the next start.
        rt.settings.directory_sync_at = ""
        from bot.jobs.directory_job import install_directory_job

        await install_directory_job(rt.service, rt.settings, rt.tokens, arm=False)
        async with rt.sessions() as session:
            (kept,) = (await session.execute(select(TimerRowTable).where(TimerRowTable.kind == SYNC_TIMER))
                       ).scalars().all()
        assert kept.state == "pending"
        await install_directory_job(rt.service, rt.settings, rt.tokens)
        async with rt.sessions() as session:
            (off,) = (await session.execute(select(TimerRowTable).where(TimerRowTable.kind == SYNC_TIMER))
                      ).scalars().all()
        assert off.state == "cancelled"


@pytest.mark.parametrize("value", ["3点", "25:00", "03:60"])
async def test_a_malformed_sync_time_is_refused_at_start(sqlite_url: str, tmp_path: Path, value: str) -> None:
    from bot.jobs.directory_job import DirectorySettingsError

    with pytest.raises(DirectorySettingsError, match="HH:MM"):
        async with wecom_app(sqlite_url, tmp_path, directory_sync_at=value):
            pass


async def test_staff_imported_with_a_mobile_is_linked_customers_never_are(sqlite_url: str, tmp_path: Path) -> None:
    async with wecom_app(sqlite_url, tmp_path) as (_client, rt, _clock, _fake, directory):
        async with rt.uow() as uow:  # imported before the sync: phones, no WeCom id
            huang = await uow.get_person("tech-huang")
            assert huang is not None
            huang.phone = "13800001111"
            await uow.save_person(huang)
            await uow.add_person(Person(id="c-known", name="老客户", role=Role.CUSTOMER, phone="13800002222"))
            await uow.commit()
        # An app created before 2022-06-20 still receives mobiles (+86 and spaces as WeCom may show them).
        directory.users.append({**_user("huangshifu", "黄师傅", [2], "维修技师"), "mobile": "+86 138 0000 1111"})
        directory.users.append({**_user("kehu", "客户本人", [1], "行政"), "mobile": "13800002222"})
        body = await sync(rt)
        assert "tech-huang" in body["people"]["updated"] and "wx-huangshifu" not in body["people"]["created"]
        assert "wx-kehu" in body["people"]["created"]  # a customer's phone never links a colleague to them
        async with rt.uow() as uow:
            linked = await uow.person_by_identity("wecom", "huangshifu")
            assert linked is not None and linked.id == "tech-huang" and linked.role is Role.TECHNICIAN
            assert linked.name == "黄师傅" and linked.phone == "13800001111"
            kehu = await uow.person_by_identity("wecom", "kehu")
            assert kehu is not None and kehu.id == "wx-kehu" and kehu.phone == "13800002222"


async def test_with_redis_the_worker_fires_the_daily_sync(database_url: str, tmp_path: Path, redis_url: str) -> None:
    from bot.worker import build_worker

    now = datetime.now(UTC)
    async with wecom_app(database_url, tmp_path, now, directory_sync_at="03:00", redis_url=redis_url) as (
            _client, rt, _clock, _fake, _directory):
        assert rt.settings.redis_url and (await get(rt, "tech-wang")).name == "技师 王师傅"
        async with rt.uow() as uow:  # as if 03:00 were now
            await uow.schedule_timer(kind=SYNC_TIMER, ticket_number=None, due_at=now + timedelta(milliseconds=200),
                                     payload={"at": "03:00"})
            await uow.commit()
        await asyncio.sleep(0.3)
        # The worker's sweep finds the timer due and fires it once; the worker runs the sync (the token
        # shared through Redis). Not a burst worker: the next 03:00's alarm stays queued.
        worker = build_worker(rt.settings, handle_signals=False, poll_delay_s=0.05)
        running = asyncio.create_task(worker.async_run())
        try:
            for _ in range(300):
                if await audit_kinds(rt, "directory_synced"):
                    break
                await asyncio.sleep(0.1)
        finally:
            await worker.close()
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        assert (await get(rt, "tech-wang")).name == "王师傅"
        assert len(await audit_kinds(rt, "directory_synced")) == 1
        async with rt.sessions() as session:
            (timer,) = (await session.execute(select(TimerRowTable).where(TimerRowTable.kind == SYNC_TIMER))
                        ).scalars().all()
        assert timer.state == "pending" and timer.due_at.replace(tzinfo=UTC) > now  # the next 03:00


def test_role_mapping_and_sync_time_parsing() -> None:
    from core.errors import InvalidInput
    from core.masterdata.directory import RoleMapping, parse_sync_at

    mapping = RoleMapping.parse("主管=supervisor；维修=技师\n客服=front_desk", "前台")
    assert mapping.role_for("维修主管", ["维修部"]) is Role.SUPERVISOR  # the first matching rule wins
    assert mapping.role_for("技工", ["维修一组"]) is Role.TECHNICIAN  # Chinese labels work too
    assert mapping.role_for("", ["行政部"]) is Role.FRONT_DESK  # the default
    assert RoleMapping.parse("").role_for("维修技师", ["维修部"]) is Role.CUSTOMER  # no rules: never a technician
    for bad in ("维修", "=technician", "维修=boss"):
        with pytest.raises(InvalidInput):
            RoleMapping.parse(bad)
    assert parse_sync_at("3:05") is not None and parse_sync_at(" ") is None
    with pytest.raises(InvalidInput, match="HH:MM"):
        parse_sync_at("24:00")


async def test_bad_records_are_reported_and_skipped_the_rest_applies(sqlite_url: str, tmp_path: Path) -> None:
    from core.masterdata.directory import DirectoryDepartment, DirectoryPerson, DirectorySnapshot, SyncDirectory
    from core.service import SYSTEM_ACTOR

    async with wecom_app(sqlite_url, tmp_path) as (_client, rt, _clock, _fake, _directory):
        snapshot = DirectorySnapshot("wecom", (DirectoryDepartment("wecom", "7", "维修七组", "1"),), (
            DirectoryPerson("wecom", "", "无账号"),
            DirectoryPerson("wecom", "x" * 129, "太长"),
            DirectoryPerson("feishu", "ou_x", "别的平台"),
            DirectoryPerson("wecom", "twice", "两个部门", departments=("7",)),
            DirectoryPerson("wecom", "twice", "两个部门", departments=("1",)),
            DirectoryPerson("wecom", "wangshifu", "", departments=("7",)),  # the name withheld: kept
            DirectoryPerson("wecom", "boss-li", "李强"),
        ), root_ids=frozenset({"1"}))
        report = await rt.service.handle(SyncDirectory(snapshot), SYSTEM_ACTOR)
        assert len(report.errors) == 3 and report.created == ["wx-twice"]
        assert (await get(rt, "tech-wang")).name == "技师 王师傅"
        async with rt.uow() as uow:
            assert await uow.masterdata().person_team("wx-twice") == "wx-7"  # its departments merged, main first
