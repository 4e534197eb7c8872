"""Technician import from CSV (UTF-8, BOM, GBK) and .xlsx files written here, good and bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import openpyxl
import pytest

from bot.cli.technician_file import TechnicianFileError, parse_technician_file

STORES = {"SH01", "HZ02"}
HEADER = [
    "工号",
    "姓名",
    "电话",
    "资质",
    "技能",
    "门店",
    "纬度",
    "经度",
    "最大负载",
    "企业微信",
    "钉钉",
    "飞书",
    "主管",
    "在岗",
]
GOOD = [
    [
        "T001",
        "王师傅",
        "13800000001",
        "OBD认证、空调R134a操作证",
        "电控类,机械类",
        "SH01",
        "31.2304",
        "121.4737",
        "6",
        "wang",
        "ding-wang",
        "ou_wang",
        "M01",
        "是",
    ],
    [
        "T002",
        "李师傅",
        "13800000002",
        "OBD认证；高压电工证",
        "电控类",
        "HZ02",
        "30.2741",
        "120.1551",
        "",
        "",
        "",
        "",
        "M01",
        "否",
    ],
]
BAD = [
    ["T003", "赵师傅", "", "", "机械类", "SH01", "121.47", "31.23", "", "", "", "", "", ""],  # swapped
    ["T004", "", "", "", "机械类", "BJ99", "abc", "120.1", "", "", "", "", "", "在"],  # several problems
    ["T001", "重复", "", "", "机械类", "SH01", "", "", "", "", "", "", "", ""],  # duplicate id
    ["", "无工号", "", "", "", "", "", "", "0", "", "", "", "", ""],
    ["T007", "孙师傅", "", "", "", "", "30.1", "", "", "", "", "", "", ""],  # lat without lng
]


def _csv_text(rows: list[list[str]]) -> str:
    return "\n".join(",".join(f'"{c}"' if "," in c else c for c in row) for row in rows) + "\n"


def _check_report(report) -> None:  # type: ignore[no-untyped-def]
    by_id = {r.person_id: r for r in report.records}
    assert sorted(by_id) == ["T001", "T002"]
    wang = by_id["T001"]
    assert wang.row == 2 and wang.name == "王师傅" and wang.phone == "13800000001"
    assert wang.certifications == frozenset({"OBD认证", "空调R134a操作证"})
    assert wang.skills == frozenset({"电控类", "机械类"})
    assert (wang.lat, wang.lng, wang.max_load) == (31.2304, 121.4737, 6)
    assert (wang.wecom_id, wang.dingtalk_id, wang.feishu_id, wang.supervisor) == ("wang", "ding-wang", "ou_wang", "M01")
    assert wang.on_duty is True
    li = by_id["T002"]
    assert li.certifications == frozenset({"OBD认证", "高压电工证"}) and li.max_load == 5 and li.on_duty is False
    assert li.wecom_id is None

    errors = {(e.row, e.column): e.message for e in report.errors}
    assert "疑似经纬度填反" in errors[(4, "纬度")]
    assert "不是数字" in errors[(5, "纬度")]
    assert "姓名不能为空" in errors[(5, "姓名")]
    assert "门店“BJ99”不存在" in errors[(5, "门店")]
    assert "在岗" in errors[(5, "在岗")]
    assert "重复" in errors[(6, "工号")] and "第 2 行" in errors[(6, "工号")]
    assert "工号不能为空" in errors[(7, "工号")]
    assert "最大负载" in errors[(7, "最大负载")]
    assert "同时填写" in errors[(8, "经度")]
    assert report.rows_read == 7 and report.rejected_rows == 5 and not report.ok

    payload = json.loads(json.dumps(report.to_dict(), ensure_ascii=False))
    assert payload["imported"] == 2 and payload["rejected_rows"] == 5
    assert {"row": 4, "column": "纬度"}.items() <= payload["errors"][0].items()
    assert payload["records"][0]["certifications"] == ["OBD认证", "空调R134a操作证"]


@pytest.mark.parametrize(("encoding", "label"), [("utf-8", "utf-8"), ("utf-8-sig", "utf-8"), ("gbk", "gbk")])
def test_csv_in_every_encoding_chinese_excel_writes(tmp_path: Path, encoding: str, label: str) -> None:
    path = tmp_path / "techs.csv"
    path.write_bytes(_csv_text([HEADER, *GOOD, *BAD]).encode(encoding))
    report = parse_technician_file(path, STORES)
    assert report.encoding == label
    _check_report(report)


def test_xlsx_with_numbers_as_excel_stores_them(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(HEADER)
    for row in [*GOOD, *BAD]:
        # Excel gives numbers back as numbers: coordinates, loads and phone numbers.
        ws.append([_excel_value(c) for c in row])
    ws.append([None] * len(HEADER))  # trailing blank row
    path = tmp_path / "techs.xlsx"
    wb.save(path)
    report = parse_technician_file(path, STORES)
    assert report.encoding is None
    _check_report(report)


def _excel_value(text: str) -> object:
    try:
        return int(text) if text.isdigit() else float(text)
    except ValueError:
        return text or None


def test_english_headers_tabs_and_unknown_columns(tmp_path: Path) -> None:
    path = tmp_path / "techs.txt"
    rows = [
        ["id", "name", "certifications", "skills", "lat", "lng", "on_duty", "备注"],
        ["1001", "Wang", "OBD认证|高压电工证", "电控类", "31.2", "121.4", "yes", "夜班"],
    ]
    path.write_text("\n".join("\t".join(r) for r in rows), encoding="utf-16")
    report = parse_technician_file(path)  # no store list: store not checked
    assert report.ok and report.encoding == "utf-16"
    assert report.ignored_columns == ["备注"]
    [rec] = report.records
    assert rec.person_id == "1001" and rec.certifications == frozenset({"OBD认证", "高压电工证"}) and rec.on_duty


def test_missing_required_columns_reports_the_header(tmp_path: Path) -> None:
    path = tmp_path / "techs.csv"
    path.write_text("姓名,电话\n王师傅,138\n", encoding="utf-8")
    report = parse_technician_file(path, STORES)
    assert report.records == []
    assert [(e.row, e.column) for e in report.errors] == [(1, "工号")]


def test_unknown_store_rejected_only_when_a_store_list_is_given(tmp_path: Path) -> None:
    path = tmp_path / "techs.csv"
    path.write_text("工号,姓名,门店\nT1,王,XX9\n", encoding="utf-8")
    assert parse_technician_file(path).ok
    report = parse_technician_file(path, STORES)
    assert report.records == [] and report.errors[0].column == "门店"


def test_old_xls_and_undecodable_files_are_refused(tmp_path: Path) -> None:
    xls = tmp_path / "old.xls"
    xls.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64)
    with pytest.raises(TechnicianFileError, match="xlsx"):
        parse_technician_file(xls)
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"PK\x03\x04not really a zip")
    with pytest.raises(TechnicianFileError):
        parse_technician_file(broken)
