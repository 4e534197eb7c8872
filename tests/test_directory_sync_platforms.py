"""Directory sync from Feishu (contact v3, page_token) and DingTalk (topapi v2, cursor) against the fake
servers, through `ticketbot directory sync` (its async body and the real command line): every list
spans at least 3 pages; a failing page changes nothing; a removed member is deactivated, a renamed
one updated; a second run changes nothing."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.cli.directory import run_sync
from bot.cli.root import main
from bot.settings import Settings
from storage.database import create_engine, session_factory
from storage.tables import AuditEventRow, IdentityRow, PersonRow
from tests.conftest import make_settings
from tests.fakes.dingtalk_gateway import FakeDingTalkGateway
from tests.fakes.directory import DingTalkDirectoryServer, FeishuDirectoryServer
from tests.fakes.feishu_server import APP_ID, APP_SECRET, FakeFeishu


def feishu_directory() -> FeishuDirectoryServer:
    directory = FeishuDirectoryServer(page_size=2)
    directory.departments = [
        {"name": "售后服务部", "department_id": "d1", "open_department_id": "od-service", "parent_department_id": "0",
         "leader_user_id": "ou_boss", "status": {"is_deleted": False}},
        {"name": "维修班", "department_id": "d2", "open_department_id": "od-repair",
         "parent_department_id": "od-service", "status": {"is_deleted": False}},
        {"name": "客服组", "department_id": "d3", "open_department_id": "od-desk", "parent_department_id": "od-service",
         "status": {"is_deleted": False}},
    ]
    directory.users = [_fs("ou_boss", "周主管", ["od-service"], "售后主管", mobile="+86 13900000001")]
    directory.users += [_fs(f"ou_tech{i}", f"技师{i}", ["od-repair"], "维修工") for i in range(1, 6)]
    directory.users += [_fs("ou_desk", "前台小王", ["od-desk"], "客服"),
                        _fs("ou_gone", "已离职", ["od-desk"], "客服", resigned=True)]
    return directory


def _fs(open_id: str, name: str, departments: list[str], title: str, *, mobile: str | None = None,
        resigned: bool = False) -> dict[str, Any]:
    user: dict[str, Any] = {"open_id": open_id, "union_id": "on_" + open_id, "name": name,
                            "department_ids": departments, "job_title": title,
                            "status": {"is_frozen": False, "is_resigned": resigned, "is_activated": True,
                                       "is_exited": False, "is_unjoin": False}}
    if mobile:
        user["mobile"] = mobile
    return user


def dingtalk_directory() -> DingTalkDirectoryServer:
    directory = DingTalkDirectoryServer(page_size=2)
    directory.departments = [{"dept_id": 10, "name": "维修中心", "parent_id": 1},
                             {"dept_id": 11, "name": "维修一班", "parent_id": 10},
                             {"dept_id": 20, "name": "客服中心", "parent_id": 1}]
    directory.users = [_dd(f"dd{i}", f"员工{i}", [1], "职员") for i in range(1, 6)]  # 3 pages of the root
    directory.users += [_dd("fixer", "钉钉技师", [11], "维修技师", leader=True),
                        _dd("desk", "钉钉客服", [20], "客服专员", mobile="13700000002")]
    return directory


def _dd(userid: str, name: str, departments: list[int], title: str, *, leader: bool = False,
        mobile: str | None = None) -> dict[str, Any]:
    user: dict[str, Any] = {"userid": userid, "unionid": "u" + userid, "name": name, "title": title,
                            "dept_id_list": departments, "leader": leader, "active": False, "admin": False}
    if mobile:
        user["mobile"] = mobile
    return user


async def read_people(url: str) -> tuple[dict[str, tuple[str, str, bool, str | None, str | None]], list[str]]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            people = {r.id: (r.name, r.role, r.active, r.phone, r.team_id)
                      for r in (await session.execute(select(PersonRow))).scalars()}
            kinds = [r.kind for r in (await session.execute(select(AuditEventRow))).scalars()]
        return people, kinds
    finally:
        await engine.dispose()


async def test_feishu_sync_pages_fails_cleanly_and_applies(database_url: str, tmp_path: Path) -> None:
    fake = FakeFeishu()
    directory = feishu_directory().attach(fake)
    await fake.start()
    settings = make_settings(database_url, tmp_path, feishu_app_id=APP_ID, feishu_app_secret=APP_SECRET,
                             feishu_domain=fake.url,
                             directory_role_map="主管=supervisor,维修=technician,客服=front_desk")
    try:
        first = await run_sync(settings, None, force=False)
        assert first["ok"], first
        (body,) = first["platforms"]
        assert body["created"] == 7 and body["unchanged"] == 1 and body["teams"]["created"] == 3  # 已离职 skipped
        people, _ = await read_people(database_url)
        assert people["fs-ou_boss"][:4] == ("周主管", "supervisor", True, "13900000001")  # +86 dropped
        assert people["fs-ou_tech1"][1] == "technician" and people["fs-ou_tech1"][4] == "fs-od-repair"
        assert people["fs-ou_desk"][1] == "front_desk"
        calls = fake.calls("GET", "/contact/v3/users/find_by_department")
        repair_pages = [c for c in calls if c.query["department_id"] == "od-repair"]
        assert len(repair_pages) == 3 and [c.query.get("page_token") for c in repair_pages] == [None, "2", "4"]
        assert all(c.headers["Authorization"].startswith("Bearer t-") for c in calls)
        assert all(c.query["user_id_type"] == "open_id" for c in calls)

        directory.remove("ou_tech5")
        directory.user("ou_tech1")["name"] = "技师一号"
        before = await read_people(database_url)
        directory.fail_request(4)  # 售后服务部's members, after the departments (2 pages) and the root
        broken = await run_sync(settings, None, force=False)
        assert not broken["ok"] and "本次没有做任何修改" in broken["platforms"][0]["errors"][0]["message"]
        assert await read_people(database_url) == before

        second = (await run_sync(settings, None, force=False))["platforms"][0]
        assert second["people"] == {"created": [], "updated": ["fs-ou_tech1"], "deactivated": ["fs-ou_tech5"]}
        people, kinds = await read_people(database_url)
        assert people["fs-ou_tech5"][2] is False and people["fs-ou_tech1"][0] == "技师一号"
        assert kinds.count("directory_synced") == 2

        third = (await run_sync(settings, ["feishu"], force=False))["platforms"][0]
        assert (third["created"], third["updated"], third["deactivated"], third["unchanged"]) == (0, 0, 0, 7)
        assert (await read_people(database_url))[1].count("directory_synced") == 2
    finally:
        await fake.close()


async def test_dingtalk_sync_pages_fails_cleanly_and_applies(database_url: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = FakeDingTalkGateway()
    directory = dingtalk_directory().attach(gateway)
    await gateway.start()
    monkeypatch.setenv("DINGTALK_OPENAPI_ENDPOINT", gateway.base_url)  # the token endpoint (the SDK's variable)
    settings = make_settings(database_url, tmp_path, dingtalk_client_id="ding-app", dingtalk_client_secret="s3cret",
                             dingtalk_oapi_base=gateway.base_url, directory_role_map="维修=technician,客服=front_desk")
    try:
        body = (await run_sync(settings, ["dingtalk"], force=False))["platforms"][0]
        assert body["ok"] and body["created"] == 7, body
        root_pages = [c.body for c in gateway.calls("/topapi/v2/user/list") if c.body["dept_id"] == 1]
        assert [p["cursor"] for p in root_pages] == [0, 2, 4]
        people, _ = await read_people(database_url)
        assert people["dd-fixer"][1] == "technician" and people["dd-fixer"][4] == "dd-11"
        assert people["dd-desk"][1:4] == ("front_desk", True, "13700000002")
        assert people["dd-dd1"][1] == "customer"  # no rule matches 职员 / the root
        engine = create_engine(database_url)
        try:
            async with session_factory(engine)() as session:
                team = (await session.execute(select(IdentityRow).where(IdentityRow.platform == "dingtalk"))
                        ).scalars().all()
                assert len(team) == 7
        finally:
            await engine.dispose()

        directory.remove("dd3")
        directory.user("dd1")["name"] = "员工一"
        before = await read_people(database_url)
        gateway.revoke_tokens()  # the cached token is refused once (errcode 40014): fetched again
        directory.fail_request(5)
        broken = (await run_sync(settings, ["dingtalk"], force=False))["platforms"][0]
        assert not broken["ok"] and "系统繁忙" in broken["errors"][0]["message"]
        assert await read_people(database_url) == before

        second = (await run_sync(settings, ["dingtalk"], force=False))["platforms"][0]
        assert second["people"] == {"created": [], "updated": ["dd-dd1"], "deactivated": ["dd-dd3"]}
        third = (await run_sync(settings, ["dingtalk"], force=False))["platforms"][0]
        assert (third["created"], third["updated"], third["deactivated"], third["unchanged"]) == (0, 0, 0, 6)
    finally:
        await gateway.close()


async def test_role_mapping_errors_and_unconfigured_platforms_are_reported(sqlite_url: str, tmp_path: Path) -> None:
    from bot.jobs.directory_job import DirectorySettingsError

    bad = make_settings(sqlite_url, tmp_path, feishu_app_id=APP_ID, feishu_app_secret=APP_SECRET,
                        directory_role_map="维修=师傅")
    with pytest.raises(DirectorySettingsError, match="未知的角色「师傅」"):
        await run_sync(bad, None, force=False)
    with pytest.raises(DirectorySettingsError, match="关键词=角色"):
        await run_sync(make_settings(sqlite_url, tmp_path, feishu_app_id=APP_ID, feishu_app_secret=APP_SECRET,
                                     directory_role_map="维修"), None, force=False)
    nothing = await run_sync(make_settings(sqlite_url, tmp_path), None, force=False)
    assert not nothing["ok"] and "没有配置任何平台" in nothing["error"]
    only = await run_sync(make_settings(sqlite_url, tmp_path, feishu_app_id=APP_ID, feishu_app_secret=APP_SECRET),
                          ["wecom"], force=False)
    assert not only["ok"] and "没有配置企业微信的凭据" in only["platforms"][0]["errors"][0]["message"]


@pytest.fixture
def feishu_in_thread() -> Iterator[tuple[FakeFeishu, FeishuDirectoryServer]]:
    """The fake Feishu on its own loop: the command line runs asyncio.run itself."""
    loop = asyncio.new_event_loop()
    fake = FakeFeishu()
    directory = feishu_directory().attach(fake)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(10)
    try:
        yield fake, directory
    finally:
        asyncio.run_coroutine_threadsafe(fake.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_the_command_line_prints_json_and_exits_1_on_failure(
        sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        feishu_in_thread: tuple[FakeFeishu, FeishuDirectoryServer]) -> None:
    fake, directory = feishu_in_thread
    for name, value in {"DATABASE_URL": sqlite_url, "DATA_DIR": str(tmp_path / "data"), "FEISHU_APP_ID": APP_ID,
                        "FEISHU_APP_SECRET": APP_SECRET, "FEISHU_DOMAIN": fake.url}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no stray .env
    assert Settings().feishu_enabled
    capsys.readouterr()
    assert main(["directory", "sync"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["platforms"][0]["created"] == 7
    directory.fail_request(1)
    assert main(["directory", "sync", "--platform", "feishu"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert not out["ok"] and out["platforms"][0]["platform"] == "feishu"
    monkeypatch.setenv("DIRECTORY_SYNC_AT", "3点")
    assert main(["directory", "sync"]) == 1
    assert "HH:MM" in json.loads(capsys.readouterr().out)["error"]
