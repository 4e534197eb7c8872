"""`ticketbot import technicians FILE`: the JSON report, the exit status and what lands in the database."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import select

from bot.cli.root import main
from core.dispatch.store import TechnicianEntry
from storage.database import create_engine, session_factory
from storage.tables import AuditEventRow, IdentityRow, PersonRow
from storage.unit_of_work import SqlUnitOfWork

HEADER = "工号,姓名,电话,资质,门店,纬度,经度,最大负载,企业微信,钉钉,飞书,主管,在岗"
ROWS = [
    "T001,周师傅,13800000001,OBD认证、空调R134a操作证,S01,31.2304,121.4737,6,wx-zhou,ding-zhou,ou_zhou,sup-li,是",
    "tech-wang,王师傅,13800000002,OBD认证、空调R134a操作证,S01,,,,wx-wang,,,sup-li,",  # existing: updated
    "T003,赵师傅,,,S01,121.47,31.23,,,,,,",  # latitude and longitude swapped
    "T004,钱师傅,,,BJ99,,,,,,,,",  # unknown store
    "admin,管理员,,,,,,,,,,,",  # the id belongs to the admin
    "T006,孙师傅,,,S02,,,,,,,M99,",  # unknown supervisor
    "T007,李师傅,,,S02,,,,wx-zhou,,,,",  # WeCom id of row 2
    "T001,重复,,,S01,,,,,,,,",  # duplicate id in the file
]


@pytest.fixture
def env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)  # no stray .env
    assert main(["demo"]) == 0
    return database_url


def run(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["import", "technicians", str(path)])
    return code, json.loads(capsys.readouterr().out)


async def _read(url: str) -> tuple[dict[str, TechnicianEntry], dict[str, list[tuple[str, str]]], list[dict]]:
    engine = create_engine(url)
    try:
        sessions = session_factory(engine)
        async with SqlUnitOfWork(sessions) as uow:
            entries = {e.person_id: e for e in await uow.dispatch_store().entries(identities=True)}
        async with sessions() as session:
            idents: dict[str, list[tuple[str, str]]] = {}
            for row in (await session.execute(select(IdentityRow))).scalars():
                idents.setdefault(row.person_id, []).append((row.platform, row.external_id))
            audits = [r.payload for r in (await session.execute(
                select(AuditEventRow).where(AuditEventRow.kind == "technicians_imported"))).scalars()]
            assert (await session.get(PersonRow, "admin")).role == "admin"  # type: ignore[union-attr]
        return entries, {k: sorted(v) for k, v in idents.items()}, audits
    finally:
        await engine.dispose()


def test_import_saves_good_rows_and_reports_each_bad_one(env: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "roster.csv"
    path.write_bytes(("\n".join([HEADER, *ROWS]) + "\n").encode("utf-8-sig"))
    code, body = run(capsys, path)
    assert code == 1
    assert body["ok"] is False and body["rows_read"] == 8
    # The import contract: counts of created and updated records, failed rows (issue 20).
    assert (body["imported"], body["updated"], body["failed"]) == (1, 1, 6)
    assert body["created"] == ["T001"] and body["updated_ids"] == ["tech-wang"]
    by_row: dict[int, list[str]] = {}
    for error in body["errors"]:
        by_row.setdefault(error["row"], []).append(f'{error["column"]}:{error["message"]}')
    assert sorted(by_row) == [4, 5, 6, 7, 8, 9]
    assert any("纬度超出范围" in e and "经纬度填反" in e for e in by_row[4])
    assert any("门店“BJ99”不存在" in e for e in by_row[5])
    assert any("已被管理员" in e for e in by_row[6])
    assert any("主管「M99」不存在" in e for e in by_row[7])
    assert any("wx-zhou 已属于 T001" in e for e in by_row[8])
    assert any("工号 T001 重复" in e for e in by_row[9])
    assert body["rejected_rows"] == 6 and [r["person_id"] for r in body["records"]] == ["T001", "tech-wang"]

    entries, idents, audits = asyncio.run(_read(env))
    zhou = entries["T001"]
    assert (zhou.name, zhou.store_id, zhou.supervisor_id, zhou.max_load, zhou.phone, zhou.on_duty) == (
        "周师傅", "S01", "sup-li", 6, "13800000001", True)
    assert zhou.certifications == {"OBD认证", "空调R134a操作证"} and zhou.last_position is not None
    assert idents["T001"] == [("dingtalk", "ding-zhou"), ("feishu", "ou_zhou"), ("local", "T001"),
                              ("wecom", "wx-zhou")]
    wang = entries["tech-wang"]
    assert wang.certifications == {"OBD认证", "空调R134a操作证"} and wang.phone == "13800000002"
    assert wang.skills == {"电控类", "机械类"}  # no 技能 column: kept
    assert ("wecom", "wx-wang") in idents["tech-wang"]
    for rejected in ("T003", "T004", "T006", "T007"):
        assert rejected not in entries
    assert audits == [{"person_ids": ["T001", "tech-wang"], "created": ["T001"], "updated": ["tech-wang"],
                       "rejected_rows": [6, 7, 8]}]  # rows the directory checks refused
    # Imported platform ids are where they are reached until they write to the bot themselves.
    assert asyncio.run(_channels(env, ["T001", "tech-wang", "tech-zhang"])) == ["wecom", "wecom", "local"]


async def _channels(url: str, person_ids: list[str]) -> list[str]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            return [(await session.get(PersonRow, pid)).preferred_channel for pid in person_ids]  # type: ignore[union-attr]
    finally:
        await engine.dispose()


def test_a_clean_excel_file_exits_zero_and_reimport_updates(env: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["工号", "姓名", "资质", "技能", "门店", "最大负载"])
    sheet.append(["T101", "吴师傅", "OBD认证", "电控类", "S03", 4])
    sheet.append([1102.0, "郑师傅", "", "机械类", "S02", None])  # Excel's numeric id
    path = tmp_path / "roster.xlsx"
    workbook.save(path)
    code, body = run(capsys, path)
    assert code == 0 and body["ok"] and body["created"] == ["T101", "1102"] and body["errors"] == []
    code, body = run(capsys, path)  # the same file again: every row is an update
    assert code == 0 and body["created"] == [] and body["updated_ids"] == ["T101", "1102"]
    assert (body["imported"], body["updated"], body["failed"]) == (0, 2, 0)
    entries, _, _ = asyncio.run(_read(env))
    assert entries["1102"].skills == {"机械类"} and entries["1102"].max_load == 5
    assert entries["T101"].store_position is not None  # 杭州滨江店's coordinates: the home position


def test_an_unreadable_file_exits_two(env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old_excel = tmp_path / "old.xls"
    old_excel.write_bytes(b"\xd0\xcf\x11\xe0" + b"\x00" * 64)
    code, body = run(capsys, old_excel)
    assert code == 2 and body["ok"] is False and "xlsx" in body["error"]
    code, body = run(capsys, tmp_path / "missing.csv")
    assert code == 2 and "无法读取文件" in body["error"]
    headerless = tmp_path / "bad.csv"
    headerless.write_text("姓名\n张三\n", encoding="utf-8")
    code, body = run(capsys, headerless)
    assert code == 1 and body["errors"] == [{"row": 1, "field": "person_id", "column": "工号",
                                             "message": "缺少必需的列：工号/id"}]
    entries, _, _ = asyncio.run(_read(env))
    assert sorted(entries) == ["tech-huang", "tech-liu", "tech-wang", "tech-xu", "tech-zhang"]
