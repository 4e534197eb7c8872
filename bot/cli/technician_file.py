"""Parse a technician file (CSV or .xlsx) into records plus a per-row error report.

`ticketbot import technicians FILE` calls `parse_technician_file`; persisting the good
records is the caller's job (no database access here). A row with any error is left out
whole, and every problem in it is reported, so one pass over the report fixes the file.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from core.errors import InvalidInput

# Canonical field -> accepted headers (compared after strip + lower-case).
COLUMNS: dict[str, tuple[str, ...]] = {
    "person_id": ("工号", "id", "person_id", "员工编号", "编号"),
    "name": ("姓名", "name"),
    "phone": ("电话", "手机", "手机号", "phone", "mobile"),
    "certifications": ("资质", "资质证书", "认证", "certifications", "certs"),
    "skills": ("技能", "技能类别", "类别", "skills", "categories"),
    "store": ("门店", "常驻门店", "store"),
    "lat": ("纬度", "lat", "latitude"),
    "lng": ("经度", "lng", "lon", "longitude"),
    "max_load": ("最大负载", "max_load"),
    "wecom_id": ("企业微信", "企业微信id", "wecom_id", "wecom"),
    "dingtalk_id": ("钉钉", "钉钉id", "dingtalk_id", "dingtalk"),
    "feishu_id": ("飞书", "飞书id", "feishu_id", "feishu"),
    "supervisor": ("主管", "直属主管", "supervisor"),
    "on_duty": ("在岗", "在岗状态", "on_duty"),
    "excluded_categories": ("不接类别", "排除类别", "excluded_categories"),
}
COLUMN_LABELS = {key: aliases[0] for key, aliases in COLUMNS.items()}
REQUIRED_COLUMNS = ("person_id", "name")
LIST_SEPARATORS = "、,，;；|"
TRUE_WORDS = frozenset({"是", "在岗", "y", "yes", "true", "1", "on", "√"})
FALSE_WORDS = frozenset({"否", "离岗", "不在岗", "n", "no", "false", "0", "off", "×"})
DEFAULT_MAX_LOAD = 5

_ALIAS_TO_FIELD = {alias.lower(): key for key, aliases in COLUMNS.items() for alias in aliases}


class TechnicianFileError(InvalidInput):
    """The file as a whole cannot be read (format, encoding). Row problems are in the report instead."""


@dataclass(frozen=True, slots=True)
class TechnicianRecord:
    row: int  # 1-based row in the file (the header is row 1)
    person_id: str
    name: str
    phone: str | None = None
    certifications: frozenset[str] = frozenset()
    skills: frozenset[str] = frozenset()
    store: str | None = None
    lat: float | None = None
    lng: float | None = None
    max_load: int = DEFAULT_MAX_LOAD
    wecom_id: str | None = None
    dingtalk_id: str | None = None
    feishu_id: str | None = None
    supervisor: str | None = None
    on_duty: bool | None = None  # None: not given, keep the current status
    excluded_categories: frozenset[str] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("certifications", "skills", "excluded_categories"):
            data[key] = sorted(data[key])
        return data


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    column: str | None  # the header as written in the file (or the canonical Chinese name)
    message: str  # Chinese

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "message": self.message}


@dataclass(slots=True)
class ImportReport:
    records: list[TechnicianRecord] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    rows_read: int = 0  # data rows, blank ones excluded
    encoding: str | None = None  # CSV only
    ignored_columns: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # canonical fields present in the header, in file order

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def rejected_rows(self) -> int:
        return len({e.row for e in self.errors if e.row > 1})

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows_read": self.rows_read,
            "imported": len(self.records),
            "rejected_rows": self.rejected_rows,
            "encoding": self.encoding,
            "ignored_columns": self.ignored_columns,
            "columns": self.columns,
            "records": [r.to_dict() for r in self.records],
            "errors": [e.to_dict() for e in self.errors],
        }


def parse_technician_file(path: str | Path, known_stores: Collection[str] | None = None) -> ImportReport:
    """CSV (UTF-8 with/without BOM, UTF-16, else GBK/GB18030) or .xlsx, chosen by content.

    `known_stores`: store codes that exist; None skips the check.
    """
    data = Path(path).read_bytes()
    if data.startswith(b"PK\x03\x04"):
        return parse_technician_xlsx(data, known_stores)
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise TechnicianFileError("不支持旧版 .xls 文件，请在 Excel 中另存为 .xlsx 或 CSV", path=str(path))
    return parse_technician_csv(data, known_stores)


def parse_technician_csv(data: bytes, known_stores: Collection[str] | None = None) -> ImportReport:
    text, encoding = _decode(data)
    first_line = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first_line and "," not in first_line else ","
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    report = parse_rows(rows, known_stores)
    report.encoding = encoding
    return report


def parse_technician_xlsx(data: bytes, known_stores: Collection[str] | None = None) -> ImportReport:
    import openpyxl  # lazy: only the import command needs it

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many unrelated types for a broken file
        raise TechnicianFileError(f"无法读取 Excel 文件：{exc}") from exc
    try:
        sheet = workbook.worksheets[0]
        rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    finally:
        workbook.close()
    return parse_rows(rows, known_stores)


def parse_rows(rows: Sequence[Sequence[Any]], known_stores: Collection[str] | None = None) -> ImportReport:
    """Rows as read from the file, the first being the header."""
    report = ImportReport()
    if not rows:
        report.errors.append(RowError(1, None, "文件为空，缺少表头"))
        return report
    columns = _map_header(rows[0], report)
    if report.errors:
        return report
    report.columns = sorted(columns, key=columns.__getitem__)
    header = {key: str(rows[0][i]).strip() for key, i in columns.items()}
    stores = None if known_stores is None else set(known_stores)
    first_row_of: dict[str, int] = {}
    for offset, raw in enumerate(rows[1:], start=2):
        cells = {key: _cell_text(raw[i]) if i < len(raw) else "" for key, i in columns.items()}
        if not any(cells.values()):
            continue  # blank line (Excel leaves many)
        report.rows_read += 1
        record, errors = _parse_row(offset, cells, header, stores, first_row_of)
        if record is not None:
            report.records.append(record)
            first_row_of[record.person_id] = offset
        report.errors.extend(errors)
    return report


def _decode(data: bytes) -> tuple[str, str]:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "utf-16"  # Excel's "Unicode text" export
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        # GB18030 is a superset of GBK/GB2312: what Chinese Excel writes for "CSV".
        return data.decode("gb18030"), "gbk"
    except UnicodeDecodeError as exc:
        raise TechnicianFileError("无法识别文件编码，请保存为 UTF-8 或 GBK 编码的 CSV") from exc


def _map_header(header: Sequence[Any], report: ImportReport) -> dict[str, int]:
    columns: dict[str, int] = {}
    for i, title in enumerate(header):
        text = "" if title is None else str(title).strip().lstrip("\ufeff")
        if not text:
            continue
        key = _ALIAS_TO_FIELD.get(text.lower())
        if key is None:
            report.ignored_columns.append(text)
        elif key in columns:
            message = f"列重复：“{text}”与第 {columns[key] + 1} 列都是{COLUMN_LABELS[key]}"
            report.errors.append(RowError(1, text, message))
        else:
            columns[key] = i
    for key in REQUIRED_COLUMNS:
        if key not in columns:
            aliases = "/".join(COLUMNS[key][:2])
            report.errors.append(RowError(1, COLUMN_LABELS[key], f"缺少必需的列：{aliases}"))
    return columns


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Excel stores 工号 1001 and phone numbers as 1001.0
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value).strip()


def _split(text: str) -> frozenset[str]:
    for sep in LIST_SEPARATORS[1:]:
        text = text.replace(sep, LIST_SEPARATORS[0])
    return frozenset(part.strip() for part in text.split(LIST_SEPARATORS[0]) if part.strip())


def _parse_row(
    row: int,
    cells: dict[str, str],
    header: dict[str, str],
    stores: set[str] | None,
    first_row_of: dict[str, int],
) -> tuple[TechnicianRecord | None, list[RowError]]:
    errors: list[RowError] = []

    def fail(key: str, message: str) -> None:
        errors.append(RowError(row, header.get(key, COLUMN_LABELS[key]), message))

    person_id = cells.get("person_id", "")
    name = cells.get("name", "")
    if not person_id:
        fail("person_id", "工号不能为空")
    elif person_id in first_row_of:
        fail("person_id", f"工号 {person_id} 重复（第 {first_row_of[person_id]} 行已有）")
    if not name:
        fail("name", "姓名不能为空")

    store = cells.get("store") or None
    if store is not None and stores is not None and store not in stores:
        fail("store", f"门店“{store}”不存在")

    lat_text, lng_text = cells.get("lat", ""), cells.get("lng", "")
    lat = _coordinate(lat_text, "lat", 90.0, fail)
    lng = _coordinate(lng_text, "lng", 180.0, fail)
    if bool(lat_text) != bool(lng_text):
        fail("lng" if lat_text else "lat", "经纬度必须同时填写或同时留空")

    max_load = DEFAULT_MAX_LOAD
    if cells.get("max_load"):
        try:
            max_load = int(float(cells["max_load"]))
            if max_load < 1 or max_load != float(cells["max_load"]):
                raise ValueError
        except ValueError:
            fail("max_load", f"最大负载必须是正整数：{cells['max_load']}")

    on_duty: bool | None = None
    duty_text = cells.get("on_duty", "").lower()
    if duty_text:
        if duty_text in TRUE_WORDS:
            on_duty = True
        elif duty_text in FALSE_WORDS:
            on_duty = False
        else:
            fail("on_duty", f"在岗只能填 是/否：{cells['on_duty']}")

    if errors:
        return None, errors
    record = TechnicianRecord(
        row=row,
        person_id=person_id,
        name=name,
        phone=cells.get("phone") or None,
        certifications=_split(cells.get("certifications", "")),
        skills=_split(cells.get("skills", "")),
        store=store,
        lat=lat,
        lng=lng,
        max_load=max_load,
        wecom_id=cells.get("wecom_id") or None,
        dingtalk_id=cells.get("dingtalk_id") or None,
        feishu_id=cells.get("feishu_id") or None,
        supervisor=cells.get("supervisor") or None,
        on_duty=on_duty,
        excluded_categories=_split(cells.get("excluded_categories", "")),
    )
    return record, errors


def _coordinate(text: str, key: str, limit: float, fail: Callable[[str, str], None]) -> float | None:
    if not text:
        return None
    label = "纬度" if key == "lat" else "经度"
    try:
        value = float(text)
    except ValueError:
        fail(key, f"{label}不是数字：{text}")
        return None
    if not math.isfinite(value) or abs(value) > limit:
        hint = "（疑似经纬度填反）" if key == "lat" and math.isfinite(value) and abs(value) <= 180.0 else ""
        fail(key, f"{label}超出范围（±{limit:g}）：{text}{hint}")
        return None
    return value
