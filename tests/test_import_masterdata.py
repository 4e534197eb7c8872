"""`ticketbot import stores|teams|people|customers|assets|contracts FILE [--dry-run]` and `--template`:
the JSON report (imported, updated, failed, errors), the exit status, what lands in the database, on
SQLite and PostgreSQL, from real files (UTF-8 with and without BOM, GBK, .xlsx)."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import func, select
from sqlmodel import col

from bot.cli import imports
from bot.cli.root import main
from core.masterdata.model import Address, AssetRecord, ContractRecord, CustomerRecord, StoreRecord, TeamRecord
from core.model import Role
from storage.database import create_engine, session_factory
from storage.migrate import upgrade
from storage.tables import AssetRow, AuditEventRow, PersonRow, StoreRow, TechnicianRow
from storage.unit_of_work import SqlUnitOfWork

STORES = """门店编号,门店名称,地址,纬度,经度,营业时间,电话,启用
S01,浦东张江店,上海市浦东新区张江路1号,31.2035,121.5903,周一至周日 9:00-18:00,021-50801234,是
S02,徐汇店,上海市徐汇区漕溪北路1号,31.19,121.43,,,否
"""
TEAMS = """code,name,store,leader,active
T01,电工一班,S01,,yes
T02,水暖班,S02,,
"""
PEOPLE = """工号,姓名,角色,电话,门店,班组,直属主管,职务,企业微信,钉钉,飞书,在职
M01,陈经理,管理员,13900000000,S01,,,,chenjl,,,是
P01,李主管,主管,13800000001,S01,T01,M01,电工班长,lizhuguan,,,是
P02,周师傅,技师,138-0000-0002,S01,T01,P01,,zhoushifu,ding-zhou,,是
P03,吴专家,专家,,S02,T02,P01,,,,ou_wu,是
P04,郑前台,前台,,S02,,P01,,,,,否
"""
CUSTOMERS = """客户编号,客户名称,电话,地址,纬度,经度,公司,服务等级,门店
C001,王先生,13812345678、021-64581234,上海市浦东新区碧云路2号,31.233,121.59,碧云物业,金卡,S01
C002,刘女士,+86 139 0000 1111,,,,,,
"""
ASSETS = """资产编号,序列号,VIN,车牌,品牌,型号,门店,客户编号,安装日期,购买日期,保修截止,技术参数
AC-1,KFR-35GW/N8HR3,,,格力,KFR-35GW,S01,C001,2024-05-01,2024/04/20,2027年4月30日,匹数=1.5；冷媒=R32
,KFR26GW-N8HR3,,,格力,KFR-26GW,S01,C001,,,2026-12-31,
CAR-1,,LSGPC52U6AF102554,沪A·12345,大众,帕萨特,S02,C002,,,20261231,"{""排量"": ""2.0T""}"
"""
ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = """合同编号,客户编号,设备,服务等级,生效日期,到期日期
HT-001,C001,AC-1、kfr26gw n8hr3,金牌,2026-01-01,2026-12-31
HT-002,C002,沪A12345,银牌,2026-03-01,2027-02-28
"""


@pytest.fixture
def env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)  # no stray .env
    upgrade(database_url)  # the import migrates only when it has rows to write; the checks read the tables
    return database_url


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["import", *args])
    return code, json.loads(capsys.readouterr().out)


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


async def _query(url: str, fn: Any) -> Any:
    engine = create_engine(url)
    try:
        async with SqlUnitOfWork(session_factory(engine)) as uow:
            return await fn(uow)
    finally:
        await engine.dispose()


def query(url: str, fn: Any) -> Any:
    return asyncio.run(_query(url, fn))


async def _count(url: str, table: Any, **where: Any) -> int:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            stmt = select(func.count()).select_from(table)
            for key, value in where.items():
                stmt = stmt.where(getattr(table, key) == value)
            return int((await session.execute(stmt)).scalar_one())
    finally:
        await engine.dispose()


def count(url: str, table: Any, **where: Any) -> int:
    return asyncio.run(_count(url, table, **where))


async def _audits(url: str) -> list[tuple[str, dict[str, Any]]]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            rows = (await session.execute(select(AuditEventRow).where(col(AuditEventRow.kind).like("%_imported"))
                                          .order_by(col(AuditEventRow.seq)))).scalars()
            return [(r.kind, r.payload) for r in rows]
    finally:
        await engine.dispose()


def import_all(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> list[tuple[int, dict[str, Any]]]:
    files = [("stores", write(tmp_path, "stores.csv", STORES, "utf-8-sig")),
             ("teams", write(tmp_path, "teams.csv", TEAMS)),
             ("people", write(tmp_path, "people.csv", PEOPLE)),
             ("customers", write(tmp_path, "customers.csv", CUSTOMERS, "gbk")),
             ("assets", write(tmp_path, "assets.csv", ASSETS)),
             ("contracts", write(tmp_path, "contracts.csv", CONTRACTS, "gb18030"))]
    return [run(capsys, kind, str(path)) for kind, path in files]


def test_every_kind_imports_and_a_second_import_only_updates(env: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    first = import_all(capsys, tmp_path)
    expected = [2, 2, 5, 2, 3, 2]
    for (code, body), n in zip(first, expected, strict=True):
        assert code == 0, body
        assert (body["imported"], body["updated"], body["failed"], body["errors"]) == (n, 0, 0, [])
    assert first[3][1]["encoding"] == "gbk" and first[0][1]["encoding"] == "utf-8"
    again = import_all(capsys, tmp_path)
    for (code, body), n in zip(again, expected, strict=True):
        assert code == 0 and (body["imported"], body["updated"], body["failed"]) == (0, n, 0), body

    async def read(uow: SqlUnitOfWork) -> None:
        md = uow.masterdata()
        assert await md.get_store("S01") == StoreRecord(
            "S01", "浦东张江店", address="上海市浦东新区张江路1号", lat=31.2035, lng=121.5903,
            opening_hours="周一至周日 9:00-18:00", phone="021-50801234")
        store = await md.get_store("S02")
        assert store is not None and store.active is False
        assert await md.get_team("T01") == TeamRecord("T01", "电工一班", store_code="S01")
        zhou = await uow.get_person("P02")
        assert zhou is not None and (zhou.role, zhou.phone, zhou.store_id, zhou.supervisor_id) == (
            Role.TECHNICIAN, "13800000002", "S01", "P01")
        assert await md.person_team("P02") == "T01"
        expert, front = await uow.get_person("P03"), await uow.get_person("P04")
        assert expert is not None and expert.role == Role.EXPERT
        assert front is not None and front.role == Role.FRONT_DESK and front.active is False
        found = await uow.person_by_identity("dingtalk", "ding-zhou")
        assert found is not None and found.id == "P02"
        assert await md.get_customer("C001") == CustomerRecord(
            "C001", "王先生", phones=("13812345678", "02164581234"),
            addresses=(Address("地址", "上海市浦东新区碧云路2号", 31.233, 121.59),), company="碧云物业",
            service_level="金卡", store_code="S01")
        assert [c.id for c in await md.customers_by_phone("13900001111")] == ["C002"]
        assert await md.get_asset("AC-1") == AssetRecord(
            "AC-1", sn="KFR35GWN8HR3", brand="格力", model="KFR-35GW", store_code="S01", customer_id="C001",
            installed_on=date(2024, 5, 1), purchased_on=date(2024, 4, 20), warranty_end=date(2027, 4, 30),
            params={"匹数": 1.5, "冷媒": "R32"}, display_id="KFR-35GW/N8HR3")
        generated = await md.find_asset("sn", "KFR26GWN8HR3")
        assert generated is not None and generated.id == "A-KFR26GWN8HR3"  # no asset code: named after its SN
        car = await md.find_asset("plate", "沪A12345")
        assert car is not None and (car.id, car.vin, car.params) == ("CAR-1", "LSGPC52U6AF102554", {"排量": "2.0T"})
        assert await md.get_contract("HT-001") == ContractRecord(
            "HT-001", "C001", ("A-KFR26GWN8HR3", "AC-1"), "金牌", date(2026, 1, 1), date(2026, 12, 31))
        contract = await md.get_contract("HT-002")
        assert contract is not None and contract.asset_ids == ("CAR-1",)  # named by its plate

    query(env, read)
    assert count(env, TechnicianRow, person_id="P02") == 1  # dispatch sees the new technician
    assert count(env, AssetRow) == 3 and count(env, StoreRow) == 2
    audits = asyncio.run(_audits(env))
    assert [k for k, _ in audits] == ["stores_imported", "teams_imported", "people_imported", "customers_imported",
                                      "assets_imported", "contracts_imported"] * 2
    people = dict(audits[2][1])
    assert people["created"] == ["M01", "P01", "P02", "P03", "P04"] and people["person_ids"] == people["created"]
    assert "王先生" not in json.dumps(audits, ensure_ascii=False)  # no personal data in the audit trail
    assert "13812345678" not in json.dumps(audits)


def test_bad_rows_are_reported_and_nothing_of_them_is_written(env: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import_all(capsys, tmp_path)
    stores = write(tmp_path, "bad_stores.csv", STORES.splitlines()[0] + "\n" + "\n".join([
        "S03,闵行店,,31.1,121.38,,,",  # good
        "S04,坏坐标,,131.1,121.38,,,",  # latitude out of range
        "S05,坏经度,,31.1,200,,,",
        "S03,重复,,31.1,121.38,,,",  # duplicate key in the file
        "S06,,,31.1,121.38,,,",  # no name
        "S07,无坐标,,,,,,",
        "S08,坏电话,,31.1,121.38,,12,",
    ]) + "\n")
    code, body = run(capsys, "stores", str(stores))
    assert code == 1 and (body["imported"], body["updated"], body["failed"]) == (1, 0, 6)
    assert [(e["row"], e["field"]) for e in body["errors"]] == [
        (3, "lat"), (4, "lng"), (5, "code"), (6, "name"), (7, "lat"), (7, "lng"), (8, "phone")]
    assert "疑似经纬度填反" in body["errors"][0]["message"]
    assert body["errors"][2]["message"] == "门店编号「S03」在文件中重复（第 2 行已有）"
    assert all(set(e) >= {"row", "field", "message"} for e in body["errors"])
    assert count(env, StoreRow) == 3

    people = write(tmp_path, "bad_people.csv", PEOPLE.splitlines()[0] + "\n" + "\n".join([
        "P10,孙师傅,技师,,S09,,,,,,,",  # unknown store
        "P11,钱师傅,技师,,S01,T09,,,,,,",  # unknown team
        "P12,赵师傅,技师,,S01,,M99,,,,,",  # unknown supervisor
        "P13,冯师傅,厨师,,S01,,,,,,,",  # unknown role
        "P14,褚师傅,技师,,S01,,,,zhoushifu,,,",  # WeCom id of P02
        "C001,王先生,技师,,S01,,,,,,,",  # a customer's id
        "P15,卫师傅,技师,123,S01,,,,,,,",  # bad phone
        "P16,蒋师傅,技师,,S01,,P16,,,,,",  # their own supervisor
        "P17,沈师傅,技师,,S01,T01,P01,,,,,",  # good
    ]) + "\n")
    code, body = run(capsys, "people", str(people))
    assert code == 1 and (body["imported"], body["failed"]) == (1, 8), body
    messages = {e["row"]: (e["field"], e["message"]) for e in body["errors"]}
    assert messages[2] == ("store", "门店「S09」不存在，请先导入门店")
    assert messages[3] == ("team", "班组「T09」不存在，请先导入班组")
    assert messages[4] == ("supervisor", "直属主管「M99」不存在")
    assert messages[5][0] == "role" and "厨师" in messages[5][1]
    assert messages[6] == ("wecom_id", "企业微信账号「zhoushifu」已属于技师「周师傅」（P02）")
    assert messages[7][0] == "id" and "属于客户" in messages[7][1]
    assert messages[8][0] == "phone" and messages[9][0] == "supervisor"
    assert count(env, PersonRow, id="P10") == 0 and count(env, PersonRow, id="P17") == 1
    customer = query(env, lambda uow: uow.get_person("C001"))
    assert customer.role == Role.CUSTOMER and customer.name == "王先生"  # untouched

    assets = write(tmp_path, "bad_assets.csv", ASSETS.splitlines()[0] + "\n" + "\n".join([
        "AC-9,KFR-50LW,,,,,S09,,,,,",  # unknown store
        "AC-10,KFR-51LW,,,,,S01,C404,,,,",  # unknown customer
        "CAR-2,,LSGPC52U7AF102554,,,,,,,,,",  # VIN check digit
        "CAR-3,,,沪I12345,,,,,,,,",  # not a plate
        "AC-11,KFR-52LW,,,,,,,2024-13-01,,,",  # bad date
        "AC-12,kfr-35gw/n8hr3,,,,,,,,,,",  # AC-1's SN
        "AC-13,KFR-53LW,,,,,,,,,,",  # good
        "AC-14,kfr53lw,,,,,,,,,,",  # the same SN as the row before, written differently
        ",,,,格力,,,,,,,",  # no identifier at all
        "AC-15,KFR-54LW,,,,,,,,,,功率",  # params without a value
    ]) + "\n")
    code, body = run(capsys, "assets", str(assets))
    assert code == 1 and (body["imported"], body["failed"]) == (1, 9), body
    by_row = {e["row"]: (e["field"], e["message"]) for e in body["errors"]}
    assert by_row[2][0] == "store" and by_row[3] == ("customer", "客户「C404」不存在，请先导入客户")
    assert by_row[4] == ("vin", "VIN「LSGPC52U7AF102554」：VIN 校验位不正确（第 9 位应为 6）")
    assert by_row[5][0] == "plate" and by_row[6][0] == "installed_on" and "2024-13-01" in by_row[6][1]
    assert by_row[7] == ("sn", "「KFR35GWN8HR3」已登记在设备「AC-1」上")
    assert by_row[9][0] == "sn" and "重复" in by_row[9][1]
    assert by_row[10][0] == "id" and by_row[11][0] == "params"
    assert count(env, AssetRow) == 4

    contracts = write(tmp_path, "bad_contracts.csv", CONTRACTS.splitlines()[0] + "\n" + "\n".join([
        "HT-9,C404,,金牌,2026-01-01,2026-12-31",  # unknown customer
        "HT-10,C001,AC-404,金牌,2026-01-01,2026-12-31",  # unknown asset
        "HT-11,C001,AC-1,金牌,2026-12-31,2026-01-01",  # ends before it starts
        "HT-12,C001,AC-1,金牌,明天,2026-01-01",  # not a date
        "HT-13,C001,AC-1,金牌,,2026-01-01",  # no start
    ]) + "\n")
    code, body = run(capsys, "contracts", str(contracts))
    assert code == 1 and (body["imported"], body["updated"], body["failed"]) == (0, 0, 5)
    by_row = {e["row"]: (e["field"], e["message"]) for e in body["errors"]}
    assert by_row[2][0] == "customer" and by_row[3] == ("assets", "设备「AC-404」不存在，请先导入设备")
    assert by_row[4][0] == "valid_to" and by_row[5][0] == "valid_from" and by_row[6][0] == "valid_from"
    assert query(env, lambda uow: uow.masterdata().get_contract("HT-10")) is None


def test_missing_columns_are_one_error_for_the_file(env: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "stores.csv", "门店编号,地址\nS01,某地\nS02,某地\n")
    code, body = run(capsys, "stores", str(path))
    assert code == 1 and (body["imported"], body["updated"], body["failed"]) == (0, 0, 2)
    assert body["errors"] == [{"row": 1, "field": "name,lat,lng", "column": None,
                               "message": "缺少必需的列：门店名称（name）、纬度（lat）、经度（lng）"}]
    path = write(tmp_path, "assets.csv", "品牌,型号\n格力,KFR\n")
    code, body = run(capsys, "assets", str(path))
    assert code == 1 and body["failed"] == 1 and "至少需要以下一列" in body["errors"][0]["message"]
    path = write(tmp_path, "people.csv", "工号,姓名,角色,id\nP1,甲,技师,P1\n")
    code, body = run(capsys, "people", str(path))
    assert code == 1 and body["errors"][0]["message"].startswith("列重复")
    assert count(env, PersonRow) == 0


def test_english_headers_xlsx_and_excel_cells(env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "stores", str(write(tmp_path, "stores.csv", STORES)))
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["id", "name", "phones", "store", "Remark"])
    sheet.append([1001, "王先生", 13812345678, "S01", "VIP"])  # Excel stores numbers as numbers
    path = tmp_path / "customers.xlsx"
    workbook.save(path)
    code, body = run(capsys, "customers", str(path))
    assert code == 0 and body["imported"] == 1 and body["ignored_columns"] == ["Remark"], body
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["sn", "customer", "warranty_end", "installed_on"])
    sheet.append(["ＫＦＲ－３５ＧＷ", 1001, datetime(2027, 4, 30), date(2024, 5, 1)])  # full-width, date cells
    sheet.append([None, None, None, None])  # Excel's blank rows are skipped
    path = tmp_path / "assets.xlsx"
    workbook.save(path)
    code, body = run(capsys, "assets", str(path))
    assert code == 0 and (body["imported"], body["rows_read"]) == (1, 1), body
    asset = query(env, lambda uow: uow.masterdata().find_asset("any", "KFR35GW"))
    assert (asset.id, asset.customer_id, asset.warranty_end, asset.installed_on) == (
        "A-KFR35GW", "1001", date(2027, 4, 30), date(2024, 5, 1))


def test_dry_run_checks_against_the_database_and_writes_nothing(env: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    stores = write(tmp_path, "stores.csv", STORES)
    code, body = run(capsys, "stores", str(stores), "--dry-run")
    assert code == 0 and body["dry_run"] is True and (body["imported"], body["updated"]) == (2, 0)
    assert count(env, StoreRow) == 0 and asyncio.run(_audits(env)) == []
    # Rows checked against the database: the stores do not exist, so the customers are refused.
    customers = write(tmp_path, "customers.csv", CUSTOMERS)
    code, body = run(capsys, "customers", str(customers), "--dry-run")
    assert code == 1 and body["failed"] == 1 and body["errors"][0]["field"] == "store"
    run(capsys, "stores", str(stores))
    code, body = run(capsys, "customers", str(customers), "--dry-run")
    assert code == 0 and (body["imported"], body["failed"]) == (2, 0)
    code, body = run(capsys, "stores", str(stores), "--dry-run")
    assert (body["imported"], body["updated"]) == (0, 2)
    assert count(env, PersonRow) == 0 and [k for k, _ in asyncio.run(_audits(env))] == ["stores_imported"]


def test_malformed_files(env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    undecodable = tmp_path / "x.csv"
    undecodable.write_bytes("门店编号,门店名称\n".encode() + b"\xff\xfe\xfa\x80\x81" * 3)
    code, body = run(capsys, "stores", str(undecodable))
    assert code == 1 and body["failed"] == 1 and body["imported"] == 0 and "编码" in body["errors"][0]["message"]
    old_excel = tmp_path / "old.xls"
    old_excel.write_bytes(b"\xd0\xcf\x11\xe0" + b"\x00" * 64)
    code, body = run(capsys, "assets", str(old_excel))
    assert code == 1 and "xlsx" in body["errors"][0]["message"]
    code, body = run(capsys, "assets", str(tmp_path / "missing.csv"))
    assert code == 2 and "无法读取文件" in body["error"] and body["failed"] == 1
    code, body = run(capsys, "contracts", str(write(tmp_path, "empty.csv", "")))
    assert code == 1 and body["errors"][0]["message"] == "文件为空，缺少表头"


@pytest.mark.parametrize("kind", ["stores", "teams", "people", "customers", "assets", "contracts", "technicians"])
def test_templates_are_a_header_and_an_example_row_the_import_reads(kind: str, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["import", kind, "--template"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all("\u4e00" <= ch <= "\u9fff" or ch.isascii() for ch in lines[0])
    if kind == "technicians":
        return
    from bot.cli.masterdata_files import KINDS, parse_rows, template

    parsed = parse_rows(kind, list(csv.reader(template(kind).splitlines())))
    assert parsed.errors == [] and len(parsed.items) == 1 and parsed.ignored_columns == []
    english = [[c.key for c in KINDS[kind].columns]]  # the English names are accepted too
    assert parse_rows(kind, english).errors == []


def test_technicians_dry_run_and_contract_keys(env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "stores", str(write(tmp_path, "stores.csv", STORES)))
    path = write(tmp_path, "tech.csv", "工号,姓名,门店\nT1,周师傅,S01\nT2,吴师傅,S99\n")
    code, body = run(capsys, "technicians", str(path), "--dry-run")
    assert code == 1 and (body["imported"], body["updated"], body["failed"]) == (1, 0, 1)
    assert body["errors"][0]["row"] == 3 and body["errors"][0]["field"] == "store" and body["dry_run"] is True
    assert count(env, PersonRow) == 0
    code, body = run(capsys, "technicians", str(path))
    assert (body["imported"], body["created"]) == (1, ["T1"]) and count(env, TechnicianRow) == 1


def test_two_admins_importing_at_once_lose_nothing(postgres_database: str, tmp_path: Path) -> None:
    """PostgreSQL: two `ticketbot import assets` processes with overlapping files run at once (two
    batches each); every row of both lands, the shared ones once (created by one, updated by the other)."""
    from tests.conftest import _truncate_postgres

    asyncio.run(_truncate_postgres(postgres_database))
    env = {**os.environ, "DATABASE_URL": postgres_database, "DATA_DIR": str(tmp_path / "data")}
    store_file = write(tmp_path, "s.csv", STORES)
    subprocess.run([sys.executable, "-m", "bot.cli", "import", "stores", str(store_file)], env=env, cwd=ROOT,
                   check=True, capture_output=True)
    header = ASSETS.splitlines()[0]
    total = imports.BATCH_ROWS * 2
    first = [f"X-{i},SN{i:05d}A,,,,,S01,,,,," for i in range(0, total)]
    second = [f"X-{i},SN{i:05d}A,,,,,S02,,,,," for i in range(total // 2, total // 2 + total)]
    files = [write(tmp_path, "a.csv", "\n".join([header, *first]) + "\n"),
             write(tmp_path, "b.csv", "\n".join([header, *second]) + "\n")]
    runs = [subprocess.Popen([sys.executable, "-m", "bot.cli", "import", "assets", str(f)], env=env, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for f in files]
    bodies = []
    for process in runs:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()[-2000:]
        bodies.append(json.loads(out))
    assert [b["failed"] for b in bodies] == [0, 0]
    everyone = total + total // 2
    assert sum(b["imported"] for b in bodies) == everyone
    assert sum(b["updated"] for b in bodies) == total // 2
    assert asyncio.run(_count(postgres_database, AssetRow)) == everyone
    audits = asyncio.run(_audits(postgres_database))
    created = [key for kind, payload in audits if kind == "assets_imported" for key in payload["created"]]
    assert sorted(created) == sorted(f"X-{i}" for i in range(everyone))
