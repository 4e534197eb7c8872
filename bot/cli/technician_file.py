"""Parse a technician file (CSV or .xlsx) into records plus a per-row error report.

`ticketbot import technicians FILE` calls `parse_technician_file`; persisting the good
records is the caller's job (no database access here). A row with any error is left out
whole, and every problem in it is reported, so one pass over the report fixes the file.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bot.cli.table_file import (
    TableFileError,
    cell_text,
    map_header,
    parse_coordinate,
    read_csv,
    read_table,
    read_xlsx,
)

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


# The file as a whole cannot be read (format, encoding); row problems are in the report instead.
TechnicianFileError = TableFileError


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
    """CSV (UTF-8 with/without BOM, UTF-16, else GBK/GB18030) or .xlsx, chosen by content
    (bot/cli/table_file.py). `known_stores`: store codes that exist; None skips the check."""
    table = read_table(path)
    report = parse_rows(table.rows, known_stores)
    report.encoding = table.encoding
    return report


def parse_technician_csv(data: bytes, known_stores: Collection[str] | None = None) -> ImportReport:
    table = read_csv(data)
    report = parse_rows(table.rows, known_stores)
    report.encoding = table.encoding
    return report


def parse_technician_xlsx(data: bytes, known_stores: Collection[str] | None = None) -> ImportReport:
    return parse_rows(read_xlsx(data), known_stores)


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
        cells = {key: cell_text(raw[i]) if i < len(raw) else "" for key, i in columns.items()}
        if not any(cells.values()):
            continue  # blank line (Excel leaves many)
        report.rows_read += 1
        record, errors = _parse_row(offset, cells, header, stores, first_row_of)
        if record is not None:
            report.records.append(record)
            first_row_of[record.person_id] = offset
        report.errors.extend(errors)
    return report


def _map_header(header: Sequence[Any], report: ImportReport) -> dict[str, int]:
    found = map_header(header, _ALIAS_TO_FIELD, COLUMN_LABELS)
    columns = found.columns
    report.ignored_columns.extend(found.ignored)
    report.errors.extend(RowError(1, text, message) for _, text, message in found.duplicates)
    for key in REQUIRED_COLUMNS:
        if key not in columns:
            aliases = "/".join(COLUMNS[key][:2])
            report.errors.append(RowError(1, COLUMN_LABELS[key], f"缺少必需的列：{aliases}"))
    return columns


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
    lat = _coordinate(lat_text, "lat", fail)
    lng = _coordinate(lng_text, "lng", fail)
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


def _coordinate(text: str, key: str, fail: Callable[[str, str], None]) -> float | None:
    if not text:
        return None
    value, problem = parse_coordinate(text, key)
    if problem is not None:
        fail(key, problem)
    return value
